"""A pytest plugin (``-p tests.doctest_examples`` in pyproject.toml) for the package's doctests."""


def pytest_collection_modifyitems(config, items):
    """Docstring examples that are all ``# doctest: +SKIP`` (they need a GPU, the network or a
    running server) document usage; they are not tests, so they are not collected as skips."""
    import doctest

    kept, shown_only = [], []
    for item in items:
        examples = getattr(getattr(item, "dtest", None), "examples", None)
        if examples and all(e.options.get(doctest.SKIP) for e in examples):
            shown_only.append(item)
        else:
            kept.append(item)
    if shown_only:
        config.hook.pytest_deselected(items=shown_only)
        items[:] = kept
