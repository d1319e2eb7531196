"""Retention: sessions older than the ``retention_days`` setting, and stray temporary folders,
deleted on request (``python -m pulse_app purge``) and on a schedule (the web app, hourly).
Reports never downloaded (older than ``export_ttl_s``) and sign-ins older than
:data:`pulse_app.auth.SIGN_IN_MAX_AGE_S` go too. Every replica of the app runs the schedule; on
PostgreSQL one purges at a time (the others find the lock taken and skip that round).

A session's images and turns live in its database rows, so deleting the rows deletes
everything of it (SQLite overwrites deleted content: ``secure_delete``; the write-ahead log is
emptied after a purge). The app's own temporary folders (``pulse-record-*``: a WFDB upload's
files while they are read; ``pulse-report-*``: reports of earlier versions) normally vanish at
once; those left behind by a killed process are removed once they are an hour old.

>>> from pulse_app.settings import Settings
>>> purge(Settings.load(retention_days=30))                      # doctest: +SKIP
Purged(sessions=3, temp_folders=0)
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

from pulse_app.settings import Settings
from pulse_app.store import Store

log = logging.getLogger(__name__)

#: Prefixes of the temporary folders this app makes.
TEMP_PREFIXES = ("pulse-record-", "pulse-report-", "pulse-signals-")
#: A temporary folder older than this is left over (its process is gone).
TEMP_MAX_AGE_S = 3600.0
#: How often the web app purges.
EVERY_S = 3600.0


@dataclass(frozen=True)
class Purged:
    sessions: int
    temp_folders: int
    exports: int = 0
    sign_ins: int = 0


def remove_stale_temp_folders(max_age_s: float = TEMP_MAX_AGE_S, *,
                              folder: str | Path | None = None) -> int:
    """Delete this app's temporary folders older than ``max_age_s``; returns how many."""
    root = Path(folder or tempfile.gettempdir())
    cutoff, removed = time.time() - max_age_s, 0
    for path in root.iterdir():
        try:
            if (path.name.startswith(TEMP_PREFIXES) and path.is_dir()
                    and not path.is_symlink() and path.stat().st_mtime < cutoff):
                shutil.rmtree(path)
                removed += 1
        except OSError:
            continue                                   # another process removed it first
    return removed


def purge(settings: Settings, store: Store | None = None, *,
          now: datetime | None = None) -> Purged:
    """Delete sessions unchanged for ``settings.retention_days`` (none when it is 0), expired
    reports and sign-ins, and stale temporary folders."""
    from pulse_app.auth import SIGN_IN_MAX_AGE_S

    sessions = 0
    now = now or datetime.now(timezone.utc)
    own = store is None
    store = store if store is not None else Store.from_settings(settings)
    try:
        if settings.retention_days > 0:
            sessions = store.delete_unchanged_since(now - timedelta(days=settings.retention_days))
        exports, sign_ins = store.delete_expired(
            exports_before=now - timedelta(seconds=settings.export_ttl_s),
            sign_ins_before=now - timedelta(seconds=SIGN_IN_MAX_AGE_S))
    finally:
        if own:
            store.close()
    return Purged(sessions=sessions, temp_folders=remove_stale_temp_folders(), exports=exports,
                  sign_ins=sign_ins)


def purge_on_schedule(settings: Settings, store: Store, every_s: float = EVERY_S
                      ) -> threading.Event:
    """Purge now and every ``every_s`` in a daemon thread; set the returned event to stop."""
    stop = threading.Event()

    def loop() -> None:
        while True:
            try:
                purged = purge(settings, store)
                if purged.sessions or purged.temp_folders or purged.exports:
                    log.info("retention: deleted %d sessions, %d temporary folders, %d "
                             "reports not downloaded", purged.sessions, purged.temp_folders,
                             purged.exports)
            except Exception:  # noqa: BLE001 - logged; the next round tries again
                log.exception("retention purge failed")
            if stop.wait(every_s):
                return

    threading.Thread(target=loop, name="pulse-retention", daemon=True).start()
    return stop
