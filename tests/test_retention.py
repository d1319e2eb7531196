"""Retention on a real SQLite file: sessions unchanged for ``retention_days`` are deleted on
request (``python -m pulse_app purge``) and on schedule, their content gone from the file;
temporary folders a killed process left behind are removed."""

from __future__ import annotations

import os
import subprocess
import sys
import time
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


def test_purge_deletes_old_sessions_and_their_content(tmp_path):
    settings = Settings.load(data_dir=str(tmp_path), retention_days=30)
    store = Store(settings.database_url)
    old, older, recent = sessions_of_age(store, [31, 400, 2])
    assert purge(Settings.load(data_dir=str(tmp_path))).sessions == 0, "0 days = keep all"
    assert purge(settings, store).sessions == 2
    assert [s.id for s in store.list_sessions(OWNER)] == [recent]
    store.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.is_file())
    assert b"OLDMARK0" not in on_disk and b"OLDMARK1" not in on_disk
    assert b"OLDMARK2" in on_disk


def test_the_purge_command(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'pulse.db'}")
    sessions_of_age(store, [10, 1])
    store.close()
    result = subprocess.run([sys.executable, "-m", "pulse_app", "purge", "--data-dir",
                             str(tmp_path), "--retention-days", "7"], cwd=REPO,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("deleted 1 sessions")


def test_purge_runs_on_schedule(tmp_path):
    settings = Settings.load(data_dir=str(tmp_path), retention_days=1)
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
