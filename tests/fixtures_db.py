"""Fixtures for the database tests (registered in conftest.py): the same tests on SQLite and on
a real PostgreSQL server.

``postgres`` is one throw-away server per test run (:class:`tests.postgres.TemporaryPostgres`);
``db_url`` is a fresh, empty database for each test, once per kind (``[sqlite]``: a file in the
test's folder; ``[postgresql]``: a new database on that server, dropped afterwards). Select one
kind with ``-k sqlite`` or ``-k postgresql``.
"""

from __future__ import annotations

import itertools

import pytest

_numbers = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    from tests.postgres import INSTALL_HINT, TemporaryPostgres

    try:
        server = TemporaryPostgres().start()
    except RuntimeError as error:
        # SQLite runs always; the PostgreSQL half says why it did not run
        pytest.skip(f"{error}" if INSTALL_HINT in str(error) else f"{error}. {INSTALL_HINT}")
    yield server
    server.stop()


def new_database_url(kind: str, tmp_path, request) -> tuple[str, object]:
    """A fresh database URL of ``kind`` and its clean-up (a callable)."""
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'data' / 'pulse.db'}", lambda: None
    server = request.getfixturevalue("postgres")
    name = f"test_{next(_numbers)}"
    return server.create_database(name), lambda: server.drop_database(name)


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request, tmp_path):
    """An empty database, SQLite then PostgreSQL."""
    url, clean_up = new_database_url(request.param, tmp_path, request)
    yield url
    clean_up()


@pytest.fixture
def pg_url(request, tmp_path):
    """An empty PostgreSQL database (for what only PostgreSQL does)."""
    url, clean_up = new_database_url("postgresql", tmp_path, request)
    yield url
    clean_up()
