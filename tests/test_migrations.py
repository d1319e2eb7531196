"""Schema migrations (alembic) on SQLite and PostgreSQL: they build exactly the models' tables,
upgrade a database made before migrations (schema 1) without losing a session, refuse a
database from a newer app, run once when replicas start together, and have a command."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timezone

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

from pulse_app import migrations
from pulse_app.errors import PulseError
from pulse_app.store import SCHEMA_VERSION, Base, Store, make_engine
from tests.conftest import REPO


def test_head_is_the_newest_migration():
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations.HERE))
    assert ScriptDirectory.from_config(config).get_heads() == [migrations.HEAD]


def test_migrations_build_exactly_the_models_tables(db_url):
    store = Store(db_url)
    with store.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
        assert connection.execute(text("SELECT version_num FROM alembic_version")).scalar() \
            == migrations.HEAD
    assert store.schema_version() == SCHEMA_VERSION and store.app_value("cookie_id")
    store.close()


def schema_one_database(url: str) -> str:
    """A database as the app made it before migrations: schema-1 tables, ``schema_info`` = 1,
    no ``alembic_version``, one session with two turns."""
    engine = make_engine(url)
    migrations.upgrade(engine, migrations.BASELINE)
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    with engine.begin() as connection:
        connection.execute(text("DROP TABLE alembic_version"))
        connection.execute(text(
            "INSERT INTO sessions (id, owner, title, created_at, updated_at, model_id, "
            "model_revision, params, original_png, edited_png) VALUES ('s1', 'user:ana', "
            "'Old ECG', :now, :now, 'tiny', NULL, '{\"edit\": {}}', :png, :png)"),
            {"now": now, "png": b"\x89PNG old"})
        for index in (0, 1):
            connection.execute(text(
                'INSERT INTO turns (session_id, "index", question, answer, model_id, '
                "model_label, params, stopped, created_at) VALUES ('s1', :i, :q, 'Sinus.', "
                "'tiny', 'tiny', '{}', :stopped, :now)"),
                {"i": index, "q": f"question {index}", "stopped": False, "now": now})
    assert migrations.current_revision(engine) == migrations.BASELINE
    engine.dispose()
    return url


def test_a_schema_one_database_is_upgraded_with_its_sessions(db_url):
    store = Store(schema_one_database(db_url))
    assert store.schema_version() == SCHEMA_VERSION
    assert migrations.current_revision(store.engine) == migrations.HEAD
    (summary,) = store.list_sessions("user:ana")
    assert (summary.id, summary.title, summary.turn_count) == ("s1", "Old ECG", 2)
    old = store.get_session("user:ana", "s1")
    assert old.original_png == b"\x89PNG old" and old.params == {"edit": {}}
    assert [t.question for t in old.turns] == ["question 0", "question 1"]
    store.add_turn("user:ana", "s1", question="question 2", answer="Still sinus.",
                   model_id="tiny", model_label="tiny", params={})          # what 0002 added:
    assert store.claim_answer("user:ana", "s1", "holder", 60)
    export_id = store.add_export("user:ana", "s1", "report.pdf", b"%PDF-")
    assert store.take_export("user:ana", export_id, not_before=datetime(2026, 1, 1,
                                                                         tzinfo=timezone.utc))
    with store.engine.connect() as connection:
        columns = [c["column_names"] for c in inspect(connection).get_indexes("sessions")]
        assert ["owner", "updated_at", "id"] in columns
    store.close()


def test_a_database_from_a_newer_app_is_refused(db_url):
    Store(db_url).close()
    engine = make_engine(db_url)
    with engine.begin() as connection:
        connection.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(PulseError, match="newer version of this app"):
        Store(db_url)


def test_replicas_starting_together_migrate_once(pg_url):
    stores, errors = [], []

    def start():
        try:
            stores.append(Store(pg_url))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == [] and len(stores) == 4
    assert len({store.app_value("cookie_id") for store in stores}) == 1
    with stores[0].engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM alembic_version")).scalar() == 1
    for store in stores:
        store.close()


def test_the_migrate_command(db_url):
    schema_one_database(db_url)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, "-m", "pulse_app", "migrate", "--db-url", db_url],
                            cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"sessions database at revision {migrations.HEAD} " \
                                    f"(schema {SCHEMA_VERSION}); it was at {migrations.BASELINE}"


def test_a_wave_one_sqlite_file_is_upgraded_without_loss(tmp_path):
    """A file the wave-1 app wrote (tests/wave1_pulse_db.sql, its dump): every value of every
    session and turn is the same after the upgrade, and the app goes on with it."""
    path = tmp_path / "data" / "pulse.db"
    path.parent.mkdir()
    with sqlite3.connect(path) as connection:
        connection.executescript((REPO / "tests" / "wave1_pulse_db.sql").read_text("utf-8"))
    before = _rows(path)
    assert len(before["sessions"]) == 2 and len(before["turns"]) == 2

    store = Store(f"sqlite:///{path}")
    assert migrations.current_revision(store.engine) == migrations.HEAD
    with store.engine.connect() as connection:
        assert compare_metadata(MigrationContext.configure(connection), Base.metadata) == []
        assert inspect(connection).has_table("readings")
    store.close()
    after = _rows(path)
    for table in ("sessions", "turns"):
        assert [{k: row[k] for k in old} for row, old in zip(after[table], before[table])] \
            == before[table], table

    store = Store(f"sqlite:///{path}")                          # opened again: nothing to do
    ana = "browser:wave1-ana"
    (summary,) = store.list_sessions(ana)
    session = store.get_session(ana, summary.id)
    assert [(t.question, t.answer, t.stopped) for t in session.turns] == [
        ("What is the rhythm?", "Sinus rhythm, 72 bpm.", False),
        ("Any ST elevation? Ünïcode ♥", "No.", True)]
    assert session.original_png.startswith(b"\x89PNG") and session.model_revision == "abc123"
    assert session.created_at.tzinfo is not None
    store.add_turn(ana, summary.id, question="And now?", answer="Same.", model_id="tiny",
                   model_label="tiny", params={})
    assert [t.index for t in store.get_session(ana, summary.id).turns] == [0, 1, 2]
    assert [s.title for s in store.list_sessions("user:bob")] == ["Bob's scan"]
    assert store.get_reading(ana, summary.id) is None                   # what 0003 added:
    store.save_reading(ana, summary.id, summary={"layout": "3x4"}, overlay_png=b"\x89PNG ov")
    assert store.get_reading(ana, summary.id).summary == {"layout": "3x4"}
    store.close()


def _rows(path) -> dict[str, list[dict]]:
    with sqlite3.connect(path) as connection:
        connection.row_factory = sqlite3.Row
        return {table: [dict(row) for row in connection.execute(
                    f"SELECT * FROM {table} ORDER BY id")] for table in ("sessions", "turns")}


def test_a_schema_two_database_gains_readings_and_keeps_its_sessions(db_url):
    """0002 -> 0003: the sessions, turns and waiting exports stay; the readings table is added,
    holds a reading per session and loses it with its session."""
    engine = make_engine(db_url)
    migrations.upgrade(engine, "0002")
    now = datetime(2026, 11, 2, 3, 4, 5, tzinfo=timezone.utc)
    with engine.begin() as connection:
        assert not inspect(connection).has_table("readings")
        connection.execute(text(
            "INSERT INTO sessions (id, owner, title, created_at, updated_at, model_id, "
            "model_revision, params, original_png, edited_png) VALUES ('s2', 'user:ana', "
            "'Wave 2 ECG', :now, :now, 'tiny', NULL, '{}', :png, :png)"), {"now": now,
                                                                          "png": b"\x89PNG"})
        connection.execute(text(
            'INSERT INTO turns (session_id, "index", question, answer, model_id, model_label, '
            "params, stopped, created_at) VALUES ('s2', 0, 'Rate?', '70 bpm.', 'tiny', 'tiny', "
            "'{}', :stopped, :now)"), {"stopped": False, "now": now})
        connection.execute(text(
            "INSERT INTO exports (id, owner, session_id, filename, data, media_type, "
            "created_at) VALUES ('e1', 'user:ana', 's2', 'report.pdf', :pdf, "
            "'application/pdf', :now)"), {"pdf": b"%PDF-", "now": now})
    engine.dispose()

    store = Store(db_url)
    assert migrations.current_revision(store.engine) == migrations.HEAD == "0003"
    assert store.schema_version() == SCHEMA_VERSION == 3
    old = store.get_session("user:ana", "s2")
    assert (old.title, old.original_png, [t.answer for t in old.turns]) == \
        ("Wave 2 ECG", b"\x89PNG", ["70 bpm."])
    assert store.take_export("user:ana", "e1", not_before=now).data == b"%PDF-"
    assert store.get_reading("user:ana", "s2") is None
    store.save_reading("user:ana", "s2", summary={"measurements": {}}, overlay_png=b"ov")
    reading = store.get_reading("user:ana", "s2")
    assert (reading.summary, reading.overlay_png) == ({"measurements": {}}, b"ov")
    assert reading.created_at.tzinfo is not None
    store.delete("user:ana", "s2")
    with store.engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM readings")).scalar() == 0
    store.close()
