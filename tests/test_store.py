"""The sessions store on a real SQLite file: isolation, durability, search, 10k sessions."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from pulse_app.errors import PulseError, SessionNotFound
from pulse_app.store import SCHEMA_VERSION, Store

PNG_A, PNG_B = b"\x89PNG original", b"\x89PNG edited"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "pulse.db"


@pytest.fixture
def store(db_path):
    store = Store(f"sqlite:///{db_path}")
    yield store
    store.close()


def new_session(store, owner="user:ana", title="Chest pain, 54 y"):
    return store.create_session(owner, title=title, model_id="tiny-pulse", model_revision="abc123",
                                original_png=PNG_A, edited_png=PNG_B, params={"temperature": 0.2})


def add(store, owner, session_id, n):
    return store.add_turn(owner, session_id, question=f"question {n}", answer=f"answer {n}",
                          model_id="tiny-pulse", model_label="tiny (untrained)",
                          params={"temperature": 0.0, "max_new_tokens": 64},
                          model_revision="abc123")


def test_sqlite_file_is_wal_with_foreign_keys_and_a_schema_version(store, db_path):
    assert db_path.is_file()                                       # folder was created
    assert store.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {row[1] for row in raw.execute("PRAGMA index_list('sessions')")}
    assert "ix_sessions_owner_updated" in indexes
    columns = [row[2] for row in raw.execute("PRAGMA index_info('ix_sessions_owner_updated')")]
    assert columns == ["owner", "updated_at"]
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def test_a_newer_database_is_refused(db_path):
    Store(f"sqlite:///{db_path}").close()
    raw = sqlite3.connect(db_path)
    raw.execute("UPDATE schema_info SET version = ?", (SCHEMA_VERSION + 1,))
    raw.commit()
    with pytest.raises(PulseError, match="newer version"):
        Store(f"sqlite:///{db_path}")


def test_session_round_trip_with_turns_in_order(store):
    session = new_session(store)
    assert len(session.id) >= 22 and session.title == "Chest pain, 54 y"
    for n in range(3):
        add(store, "user:ana", session.id, n)
    store.add_turn("user:ana", session.id, question="stop me", answer="partial an",
                   model_id="tiny-pulse", model_label="tiny", params={}, stopped=True,
                   model_revision="abc123")
    loaded = store.get_session("user:ana", session.id)
    assert (loaded.original_png, loaded.edited_png) == (PNG_A, PNG_B)
    assert (loaded.model_id, loaded.model_revision, loaded.params) == \
        ("tiny-pulse", "abc123", {"temperature": 0.2})
    assert [t.index for t in loaded.turns] == [0, 1, 2, 3]
    assert [t.answer for t in loaded.turns][:3] == ["answer 0", "answer 1", "answer 2"]
    assert loaded.turns[1].model_label == "tiny (untrained)"
    assert loaded.turns[1].params == {"temperature": 0.0, "max_new_tokens": 64}
    assert [t.stopped for t in loaded.turns] == [False, False, False, True]
    assert loaded.updated_at >= loaded.created_at and loaded.updated_at.tzinfo is not None


def test_turns_survive_reopening_the_database(db_path):
    first = Store(f"sqlite:///{db_path}")
    session = new_session(first)
    add(first, "user:ana", session.id, 1)
    add(first, "user:ana", session.id, 2)
    # no close(): the process could die here; a new Store reads what was committed
    second = Store(f"sqlite:///{db_path}")
    assert [t.question for t in second.get_session("user:ana", session.id).turns] == \
        ["question 1", "question 2"]
    first.close()
    second.close()


def test_owners_are_isolated_even_by_id(store):
    ana = new_session(store, "user:ana", "Ana's ECG")
    bob = new_session(store, "user:bob", "Bob's ECG")
    add(store, "user:bob", bob.id, 1)
    assert [s.id for s in store.list_sessions("user:ana")] == [ana.id]
    assert [s.id for s in store.list_sessions("user:ana", search="ECG")] == [ana.id]
    attempts = [
        lambda: store.get_session("user:ana", bob.id),
        lambda: store.rename("user:ana", bob.id, "mine now"),
        lambda: store.delete("user:ana", bob.id),
        lambda: add(store, "user:ana", bob.id, 2),
        lambda: store.replace_last_turn("user:ana", bob.id, answer="x", model_id=None,
                                        model_label=None, params={}),
    ]
    messages = set()
    for attempt in attempts:
        with pytest.raises(SessionNotFound) as error:
            attempt()
        messages.add(str(error.value))
    with pytest.raises(SessionNotFound) as missing:
        store.get_session("user:ana", "no-such-id")
    assert messages == {str(missing.value)}                        # same words: no id oracle
    untouched = store.get_session("user:bob", bob.id)
    assert untouched.title == "Bob's ECG" and untouched.edited_png == PNG_B
    assert [t.answer for t in untouched.turns] == ["answer 1"]
    with pytest.raises(ValueError):
        store.list_sessions("")


def test_rename_delete_and_regenerate(store):
    session = new_session(store)
    store.rename("user:ana", session.id, "  Syncope,\n 70 y  ")
    add(store, "user:ana", session.id, 1)
    store.replace_last_turn("user:ana", session.id, answer="better answer", model_id="m2",
                            model_label="M2", params={"temperature": 0.7})
    loaded = store.get_session("user:ana", session.id)
    assert loaded.title == "Syncope, 70 y" and loaded.edited_png == PNG_B
    assert (loaded.model_id, loaded.model_revision) == ("m2", None)      # its latest model
    assert loaded.original_png == PNG_A
    assert [(t.question, t.answer, t.model_label) for t in loaded.turns] == \
        [("question 1", "better answer", "M2")]
    store.delete("user:ana", session.id)
    with pytest.raises(SessionNotFound):
        store.get_session("user:ana", session.id)
    with store.engine.connect() as connection:           # turns went with it
        assert connection.exec_driver_sql("SELECT count(*) FROM turns").scalar() == 0


def test_list_is_most_recent_first_with_search_and_pages(store):
    ids = [new_session(store, title=title).id
           for title in ("Inferior STEMI?", "AF 100% check", "routine", "stemi follow-up")]
    add(store, "user:ana", ids[0], 1)                     # used last -> listed first
    listed = store.list_sessions("user:ana")
    assert [s.id for s in listed] == [ids[0], ids[3], ids[2], ids[1]]
    assert listed[0].turn_count == 1 and listed[1].turn_count == 0
    assert {s.id for s in store.list_sessions("user:ana", search="stemi")} == {ids[0], ids[3]}
    assert [s.id for s in store.list_sessions("user:ana", search="100%")] == [ids[1]]
    assert store.list_sessions("user:ana", search="_") == []                 # escaped LIKE
    assert [s.id for s in store.list_sessions("user:ana", limit=2, offset=1)] == ids[3:1:-1]
    assert store.count_sessions("user:ana", search="STEMI") == 2


def test_concurrent_turns_on_many_sessions(store):
    sessions = [new_session(store, f"user:{n}") for n in range(8)]
    errors = []

    def chat(session):
        try:
            for n in range(5):
                add(store, session.owner, session.id, n)
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=chat, args=(s,)) for s in sessions for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    for session in sessions:
        turns = store.get_session(session.owner, session.id).turns
        assert [t.index for t in turns] == list(range(10))


def test_ten_thousand_sessions_list_uses_the_index_and_no_blobs(store):
    from sqlalchemy import insert

    from pulse_app.store import SessionRow, utc_now

    image = bytes(2_000)
    now = utc_now()
    rows = [dict(id=f"s{n:05d}", owner="user:ana" if n % 2 else f"user:{n}",
                 title=f"ECG {n}", created_at=now, updated_at=now, model_id="m", params={},
                 original_png=image, edited_png=image) for n in range(10_000)]
    with store.engine.begin() as connection:
        for start in range(0, len(rows), 1000):
            connection.execute(insert(SessionRow), rows[start:start + 1000])
    statements = []

    from sqlalchemy import event

    @event.listens_for(store.engine, "before_cursor_execute")
    def record(conn, cursor, statement, parameters, context, executemany):
        statements.append((statement, parameters))

    listed = store.list_sessions("user:ana", limit=50)
    found = store.list_sessions("user:ana", search="ECG 99", limit=100)
    event.remove(store.engine, "before_cursor_execute", record)
    assert len(listed) == 50 and {s.id for s in listed} <= {r["id"] for r in rows[1::2]}
    assert {s.title for s in found} == {f"ECG {n}" for n in range(1, 10_000, 2)
                                        if f"ECG {n}".startswith("ECG 99")}
    assert store.count_sessions("user:ana") == 5000
    list_sql, list_params = statements[0]
    assert "_png" not in list_sql                              # images are never loaded
    with store.engine.connect() as connection:                 # speed: bench/session_list.py
        plan = " ".join(str(row[-1]) for row in connection.exec_driver_sql(
            "EXPLAIN QUERY PLAN " + list_sql, tuple(list_params)))
    assert "ix_sessions_owner_updated" in plan and "SCAN sessions" not in plan, plan


def test_a_forked_child_writes_with_its_own_connections(store):
    import os

    session = new_session(store)
    add(store, "user:ana", session.id, 1)                  # the parent's pool holds a connection
    pid = os.fork()
    if pid == 0:                                           # child: what a ZeroGPU worker does
        try:
            add(store, "user:ana", session.id, 2)
            os._exit(0)
        except BaseException:
            os._exit(1)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0
    add(store, "user:ana", session.id, 3)                  # and the parent still works
    assert [t.question for t in store.get_session("user:ana", session.id).turns] == \
        ["question 1", "question 2", "question 3"]
