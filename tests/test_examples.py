"""The Examples tab and the docs gallery: the project's own simulated pages, reproducible from
one command, replaceable by a deployer's pictures (PULSE_EXAMPLES_DIR)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pulse_app.examples import EXAMPLES, GALLERY, gallery_markdown, write_pages
from pulse_app.settings import ASSETS_DIR, REPO_ROOT, Settings
from pulse_app.ui.handlers import example_paths


def pixels(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def assert_same_pages(committed: list, fresh: list) -> None:
    assert [p.name for p in committed] == [p.name for p in fresh]
    for old, new in zip(committed, fresh):
        a, b = pixels(old), pixels(new)
        assert a.shape == b.shape, old.name
        if old.suffix == ".png":
            assert np.array_equal(a, b), old.name
        else:                      # JPEG: another libjpeg may round differently
            assert np.abs(a - b).mean() < 1.0, old.name


def test_the_committed_examples_are_what_make_examples_writes(tmp_path):
    committed = sorted((ASSETS_DIR / "examples").iterdir())
    assert [p.stem for p in committed] == [e.name for e in EXAMPLES]
    fresh = sorted(write_pages(EXAMPLES, tmp_path, seed=0))
    assert_same_pages(committed, fresh)
    assert {p.suffix for p in committed} == {".png", ".jpg"}      # clean and photo-like
    assert Image.open(committed[0]).size == (1650, 1275)


def test_the_docs_gallery_is_what_make_gallery_writes(tmp_path):
    from pulse_app.examples import GALLERY_DPI

    committed = sorted((REPO_ROOT / "docs" / "gallery").iterdir())
    fresh = sorted(write_pages(GALLERY, tmp_path, seed=0, dpi=GALLERY_DPI))
    assert_same_pages(committed, fresh)
    text = (REPO_ROOT / "docs" / "gallery.md").read_text(encoding="utf-8")
    assert text == gallery_markdown(0)
    for page in committed:
        assert f"(gallery/{page.name})" in text


def test_the_examples_folder_is_a_setting(tmp_path, monkeypatch):
    assert Settings.load().examples_path == ASSETS_DIR / "examples"
    assert len(example_paths(Settings.load().examples_path)) == len(EXAMPLES)
    Image.new("RGB", (40, 30), "white").save(tmp_path / "licensed.png")
    (tmp_path / "LICENSE").write_text("the deployer's own")
    monkeypatch.setenv("PULSE_EXAMPLES_DIR", str(tmp_path))
    settings = Settings.load()
    assert settings.examples_path == tmp_path
    assert example_paths(settings.examples_path) == [str(tmp_path / "licensed.png")]
    monkeypatch.setenv("PULSE_EXAMPLES_DIR", str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="PULSE_EXAMPLES_DIR"):
        Settings.load()


@pytest.mark.browser
def test_a_visitor_opens_an_example_and_gets_an_answer(tmp_path_factory, ui_cache, browser):
    """Examples tab -> first simulated page -> it is the picture -> a question is answered."""
    from tests.fixtures_ui import make_ui_settings, start_server
    from tests.test_browser import page_ready, wait_for_picture_size

    server = start_server(make_ui_settings(tmp_path_factory.mktemp("examples-data"), ui_cache))
    context = browser.new_context(viewport={"width": 1500, "height": 1100})
    try:
        page = context.new_page()
        page.goto(server.url)
        page_ready(page)
        page.get_by_role("tab", name="Examples").click()
        thumbs = page.locator("#examples img")
        thumbs.first.wait_for()
        assert thumbs.count() == len(EXAMPLES)
        thumbs.first.click()
        wait_for_picture_size(page, 1650, 1275)
        page.locator("#question textarea").fill("What is the rhythm?")
        page.locator("#ask").click()
        page.locator("#chat").get_by_text("— tiny-untrained").wait_for(timeout=60_000)
    finally:
        context.close()
        server.close()
