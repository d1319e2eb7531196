"""Retention on a real SQLite file and a real PostgreSQL server: sessions unchanged for
``retention_days`` are deleted on request (``python -m pulse_app purge``) and on schedule (their
content gone from the SQLite file); replicas purging at once delete each session once;
temporary folders a killed process left behind are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone

from sqlalchemy import update

from pulse_app.retention import purge, purge_on_schedule, remove_stale_temp_folders
from pulse_app.settings import Settings
from pulse_app.store import SessionRow, Store
from tests.conftest import REPO

OWNER = "user:ana"


def sessions_of_age(store: Store, ages_days: list[float]) -> list[str]:
    ids = []
    for number, age in enumerate(ages_days):
        session = store.create_session(OWNER, title=f"ECG {number}", model_id="tiny",
                                       model_revision=None, original_png=b"png",
                                       edited_png=b"png")
        store.add_turn(OWNER, session.id, question=f"OLDMARK{number} rhythm?", answer="Sinus.",
                       model_id="tiny", model_label="tiny", params={})
        changed = datetime.now(timezone.utc) - timedelta(days=age)
        with store._session(write=True) as db:
            db.execute(update(SessionRow).where(SessionRow.id == session.id)
                       .values(updated_at=changed))
        ids.append(session.id)
    return ids


def test_purge_deletes_old_sessions_and_their_content(tmp_path, db_url):
    settings = Settings.load(data_dir=str(tmp_path), db_url=db_url, retention_days=30)
    store = Store(settings.database_url)
    old, older, recent = sessions_of_age(store, [31, 400, 2])
    assert purge(Settings.load(data_dir=str(tmp_path), db_url=db_url)).sessions == 0, \
        "0 days = keep all"
    assert purge(settings, store).sessions == 2
    assert [s.id for s in store.list_sessions(OWNER)] == [recent]
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("SELECT count(*) FROM turns").scalar() == 1
    store.close()
    if db_url.startswith("sqlite"):
        on_disk = b"".join(p.read_bytes() for p in (tmp_path / "data").iterdir() if p.is_file())
        assert b"OLDMARK0" not in on_disk and b"OLDMARK1" not in on_disk
        assert b"OLDMARK2" in on_disk


def test_replicas_purging_at_once_delete_each_session_once(db_url):
    stores = [Store(db_url) for _ in range(3)]
    sessions_of_age(stores[0], [40] * 6 + [1])
    settings = Settings.load(db_url=db_url, retention_days=30)
    with ThreadPoolExecutor(3) as pool:
        counts = list(pool.map(lambda store: purge(settings, store).sessions, stores))
    assert sum(counts) == 6 and len(stores[1].list_sessions(OWNER)) == 1
    for store in stores:
        store.close()


def test_reports_and_sign_ins_expire(db_url):
    store = Store(db_url)
    (session,) = sessions_of_age(store, [0])
    store.add_export(OWNER, session, "report.pdf", b"%PDF-")
    store.add_sign_in("d" * 64, "ana")
    later = datetime.now(timezone.utc) + timedelta(days=30)
    purged = purge(Settings.load(db_url=db_url, export_ttl_s=600), store, now=later)
    assert (purged.exports, purged.sign_ins) == (1, 1)
    assert store.sign_ins() == {} and store.list_sessions(OWNER)
    store.close()


def test_the_purge_command(tmp_path, db_url):
    store = Store(db_url)
    sessions_of_age(store, [10, 1])
    store.close()
    result = subprocess.run([sys.executable, "-m", "pulse_app", "purge", "--db-url", db_url,
                             "--retention-days", "7"], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 1 sessions")


def test_purge_runs_on_schedule(tmp_path, db_url):
    settings = Settings.load(data_dir=str(tmp_path), db_url=db_url, retention_days=1)
    store = Store(settings.database_url)
    sessions_of_age(store, [3])
    stop = purge_on_schedule(settings, store, every_s=3600)      # the first round runs now
    try:
        deadline = time.monotonic() + 30
        while store.list_sessions(OWNER) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert store.list_sessions(OWNER) == []
    finally:
        stop.set()
        store.close()


def test_stale_temporary_folders_are_removed(tmp_path):
    stale, fresh, other = (tmp_path / "pulse-record-abc", tmp_path / "pulse-report-def",
                           tmp_path / "someone-elses")
    for folder in (stale, fresh, other):
        folder.mkdir()
        (folder / "E07509.dat").write_bytes(b"signal")
    two_hours_ago = time.time() - 7200
    for folder in (stale, other):
        os.utime(folder, (two_hours_ago, two_hours_ago))
    assert remove_stale_temp_folders(folder=tmp_path) == 1
    assert not stale.exists() and fresh.exists() and other.exists()
