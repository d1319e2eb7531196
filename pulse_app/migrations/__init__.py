"""Schema migrations of the sessions database (alembic), run when a :class:`~pulse_app.store.Store`
opens a database and by ``python -m pulse_app migrate``.

``versions/`` holds one file per schema change, oldest first: ``0001`` is the schema the app
created before migrations existed (such a database, with no ``alembic_version`` table, is
stamped ``0001`` and upgraded from there), ``0002`` what several replicas share, ``0003`` the
digitiser's readings. To change the tables: edit the models in :mod:`pulse_app.store`, add
``versions/000N_what.py`` (alembic's ``revision --autogenerate`` writes a draft: ``python -m
alembic -c <ini with script_location = pulse_app:migrations>``), bump ``store.SCHEMA_VERSION``
and :data:`HEAD`; the tests check that the migrations build exactly the models' tables on
SQLite and PostgreSQL.

>>> from sqlalchemy import create_engine
>>> engine = create_engine("sqlite://")
>>> upgrade(engine) == HEAD == current_revision(engine)
True
"""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

#: The newest revision in ``versions/`` (a test checks it is alembic's head).
HEAD = "0003"
#: The first revision: the tables as the app made them before migrations (schema 1).
BASELINE = "0001"
#: PostgreSQL advisory-lock key held while migrating ("PULSEDB" in ASCII).
LOCK_KEY = 0x50554C5345444200 >> 8
HERE = Path(__file__).resolve().parent


def _config(connection):
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def _revision(connection) -> str | None:
    names = set(inspect(connection).get_table_names())
    if "alembic_version" in names:
        return connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return BASELINE if "sessions" in names else None


def current_revision(engine: Engine) -> str | None:
    """The database's alembic revision; ``BASELINE`` for a schema-1 database made before
    migrations; None for an empty database."""
    with engine.connect() as connection:
        return _revision(connection)


def upgrade(engine: Engine, revision: str = "head") -> str:
    """Upgrade the database to ``revision`` (default: the newest) in one transaction; returns
    the revision it is at. A database already there costs one query. On PostgreSQL an advisory
    lock makes replicas that start together migrate one after the other. Raises
    ``alembic.util.CommandError`` for a revision this version of the app does not know (a newer
    app wrote the database)."""
    wanted = HEAD if revision == "head" else revision
    if current_revision(engine) == wanted:
        return wanted
    from alembic import command

    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            connection.exec_driver_sql(f"SELECT pg_advisory_xact_lock({LOCK_KEY})")
        current = _revision(connection)             # again, under the lock
        if current == wanted:
            return wanted
        config = _config(connection)
        if current == BASELINE and not inspect(connection).has_table("alembic_version"):
            command.stamp(config, BASELINE)          # made before migrations: schema 1
        command.upgrade(config, revision)
    return current_revision(engine)
