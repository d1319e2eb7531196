"""The sessions store on a real SQLite file and a real PostgreSQL server (each test runs on both
unless it names one): isolation, durability, search, 10k sessions."""

from __future__ import annotations

import sqlite3
import threading
from datetime import timedelta

import pytest

from pulse_app.errors import InvalidParameter, PulseError, SessionNotFound
from pulse_app.store import SCHEMA_VERSION, Store, utc_now

PNG_A, PNG_B = b"\x89PNG original", b"\x89PNG edited"


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "data" / "pulse.db"


@pytest.fixture
def store(db_url):
    store = Store(db_url)
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


def test_sqlite_file_is_wal_with_foreign_keys_and_a_schema_version(db_path):
    store = Store(f"sqlite:///{db_path}")
    assert db_path.is_file()                                       # folder was created
    assert store.schema_version() == SCHEMA_VERSION
    raw = sqlite3.connect(db_path)
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    indexes = {row[1] for row in raw.execute("PRAGMA index_list('sessions')")}
    assert "ix_sessions_owner_updated" in indexes
    columns = [row[2] for row in raw.execute("PRAGMA index_info('ix_sessions_owner_updated')")]
    assert columns == ["owner", "updated_at", "id"]
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    store.close()


def test_a_newer_database_is_refused(db_url):
    store = Store(db_url)
    with store.engine.begin() as connection:
        connection.exec_driver_sql(f"UPDATE schema_info SET version = {SCHEMA_VERSION + 1}")
    store.close()
    with pytest.raises(PulseError, match="newer version"):
        Store(db_url)


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


def test_turns_survive_reopening_the_database(db_url):
    first = Store(db_url)
    session = new_session(first)
    add(first, "user:ana", session.id, 1)
    add(first, "user:ana", session.id, 2)
    # no close(): the process could die here; a new Store reads what was committed
    second = Store(db_url)
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
        if store.shared:                                       # PostgreSQL
            connection.exec_driver_sql("ANALYZE sessions")
            plan = " ".join(str(row[0]) for row in connection.exec_driver_sql(
                "EXPLAIN " + list_sql, list_params))
            assert "ix_sessions_owner_updated" in plan and "Seq Scan on sessions" not in plan, plan
        else:
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


# -- PostgreSQL's rules, and what replicas share --------------------------------------------------

def test_nul_characters_are_refused_before_the_database(store):
    session = new_session(store)
    for attempt in (
            lambda: store.add_turn("user:ana", session.id, question="a\x00b", answer="x",
                                   model_id=None, model_label=None, params={}),
            lambda: store.add_turn("user:ana", session.id, question="q", answer="a\x00",
                                   model_id=None, model_label=None, params={}),
            lambda: store.rename("user:ana", session.id, "title\x00"),
            lambda: store.list_sessions("user:ana", search="\x00")):
        with pytest.raises(InvalidParameter, match="NUL"):
            attempt()
    with pytest.raises(SessionNotFound):                   # an id with a NUL is no id
        store.get_session("user:ana", session.id + "\x00")
    with pytest.raises(ValueError):
        store.list_sessions("user:\x00ana")
    assert store.take_export("user:ana", "x\x00", not_before=utc_now()) is None
    stored = store.get_session("user:ana", session.id)
    assert stored.turns == [] and stored.title == "Chest pain, 54 y"


def test_postgresql_itself_refuses_nul_in_text(pg_url):
    """Why the checks above exist: the driver refuses a NUL in a text value."""
    from sqlalchemy.exc import DataError

    store = Store(pg_url)
    session = new_session(store)
    with pytest.raises(DataError, match="NUL"):
        with store.engine.begin() as connection:
            connection.exec_driver_sql("UPDATE sessions SET title = %(t)s WHERE id = %(id)s",
                                       {"t": "a\x00b", "id": session.id})
    store.close()


def test_one_answer_lease_per_session(store):
    session = new_session(store)
    assert store.claim_answer("user:ana", session.id, "replica-a", 60)
    assert not store.claim_answer("user:ana", session.id, "replica-b", 60)
    assert store.claim_answer("user:ana", session.id, "replica-a", 60)     # renewed
    with pytest.raises(SessionNotFound):
        store.claim_answer("user:bob", session.id, "replica-b", 60)
    store.add_turn("user:ana", session.id, question="q", answer="a", model_id=None,
                   model_label=None, params={}, holder="replica-a")     # ends in its commit
    assert not store.claim_answer("user:ana", session.id, "replica-a", 60, renew=True)
    assert store.claim_answer("user:ana", session.id, "replica-b", 0.01)
    import time
    time.sleep(0.05)                                       # replica-b "died": its lease lapses
    assert store.claim_answer("user:ana", session.id, "replica-c", 60)
    store.release_answer("user:ana", session.id, "replica-b")               # not its lease
    assert not store.claim_answer("user:ana", session.id, "replica-d", 60)
    store.release_answer("user:ana", session.id, "replica-c")
    assert store.claim_answer("user:ana", session.id, "replica-d", 60)


def test_an_export_is_taken_once_by_its_owner(store):
    session = new_session(store)
    long_ago = utc_now() - timedelta(hours=1)
    export_id = store.add_export("user:ana", session.id, "report.pdf", b"%PDF-1.4 ana")
    assert store.take_export("user:bob", export_id, not_before=long_ago) is None
    taken = store.take_export("user:ana", export_id, not_before=long_ago)
    assert (taken.data, taken.filename, taken.session_id, taken.media_type) == (
        b"%PDF-1.4 ana", "report.pdf", session.id, "application/pdf")
    assert store.take_export("user:ana", export_id, not_before=long_ago) is None
    stale = store.add_export("user:ana", session.id, "report.pdf", b"%PDF-")
    assert store.take_export("user:ana", stale, not_before=utc_now() + timedelta(1)) is None
    waiting = store.add_export("user:ana", session.id, "report.pdf", b"%PDF-")
    store.delete("user:ana", session.id)                   # its reports go with it
    assert store.take_export("user:ana", waiting, not_before=long_ago) is None
    with pytest.raises(SessionNotFound):
        store.add_export("user:bob", new_session(store).id, "x.pdf", b"%PDF-")
    # made from something else than a session (a key with a colon): any media type
    csv = store.add_export("user:ana", "class:ABC", "answers.csv", b"a,b\n", "text/csv")
    assert store.take_export("user:bob", csv, not_before=long_ago) is None
    taken = store.take_export("user:ana", csv, not_before=long_ago)
    assert (taken.data, taken.media_type, taken.session_id) == (b"a,b\n", "text/csv",
                                                                "class:ABC")


def test_sign_ins_are_shared_and_expire(store):
    store.add_sign_in("a" * 64, "ana")
    store.add_sign_in("b" * 64, "bob")
    long_ago = utc_now() - timedelta(hours=1)
    assert store.signed_in_user("a" * 64, not_before=long_ago) == "ana"
    assert store.signed_in_user("a" * 64, not_before=utc_now() + timedelta(1)) is None
    assert store.signed_in_user("c" * 64, not_before=long_ago) is None
    store.delete_sign_in("a" * 64)
    assert store.sign_ins() == {"b" * 64: "bob"}


def test_a_killed_connection_is_replaced_on_the_next_call(pg_url, postgres):
    store = Store(pg_url)
    session = new_session(store)
    add(store, "user:ana", session.id, 1)                  # the pool holds a live connection
    database = pg_url.rsplit("/", 1)[1]
    assert postgres.terminate_connections(database) >= 1   # server restart, network cut
    assert [s.id for s in store.list_sessions("user:ana")] == [session.id]
    postgres.terminate_connections(database)
    add(store, "user:ana", session.id, 2)                  # writes reconnect too
    assert [t.question for t in store.get_session("user:ana", session.id).turns] == \
        ["question 1", "question 2"]
    store.close()


def test_pool_size_bounds_the_connections_of_a_process(pg_url, postgres):
    from pulse_app.settings import Settings

    store = Store.from_settings(Settings.load(db_url=pg_url, db_pool_size=2,
                                              db_pool_overflow=1))
    sessions = [new_session(store, f"user:{n}") for n in range(8)]
    database, seen, errors = pg_url.rsplit("/", 1)[1], [], []

    def busy(session):
        try:
            for n in range(6):
                add(store, session.owner, session.id, n)
                store.list_sessions(session.owner)
                seen.append(postgres.admin().execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
                    (database,)).fetchone()[0])
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=busy, args=(s,)) for s in sessions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert store.engine.pool.size() == 2 and 1 <= max(seen) <= 3, max(seen)
    assert all(len(store.get_session(s.owner, s.id).turns) == 6 for s in sessions)
    store.close()
