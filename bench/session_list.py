"""Session list at 10 000 sessions: ``Store.list_sessions`` vs a naive ``SELECT *``.

One owner holds all 10 000 sessions (the worst case), each with an original and an edited
image blob (``--blob-kb`` each; real ECG PNGs are 100-500 kB, kept smaller here so the
database is quick to build). Baseline, measured in the same run on the same SQLite file: the
first thing one writes, ``SELECT * FROM sessions WHERE owner = ? ORDER BY updated_at DESC``
with every row (blobs included) fetched and the first page sliced in Python. Ours reads only
the listed columns, through the (owner, updated_at) index, one page at a time.

    python -m bench.session_list [--sessions 10000] [--blob-kb 16] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, text

from pulse_app.store import SessionRow, Store, utc_now


def fill(store: Store, sessions: int, blob_kb: int) -> None:
    start = utc_now()
    blob = os.urandom(blob_kb * 1000)                  # incompressible, like PNG data
    with store.engine.begin() as connection:
        for first in range(0, sessions, 500):
            connection.execute(insert(SessionRow), [
                dict(id=f"s{n:06d}", owner="user:bench", title=f"ECG {n} follow-up",
                     created_at=start + timedelta(seconds=n),
                     updated_at=start + timedelta(seconds=n), model_id="PULSE-7B", params={},
                     original_png=blob, edited_png=blob)
                for n in range(first, min(first + 500, sessions))])


def naive_list(store: Store, limit: int = 50) -> list:
    with store.engine.connect() as connection:
        rows = connection.execute(text(
            "SELECT * FROM sessions WHERE owner = :owner ORDER BY updated_at DESC"),
            {"owner": "user:bench"}).fetchall()
    return rows[:limit]


def timed(function, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--blob-kb", type=int, default=16)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "bench.db"
        store = Store(f"sqlite:///{path}")
        fill(store, args.sessions, args.blob_kb)
        size_mb = path.stat().st_size / 1e6
        assert [s.id for s in store.list_sessions("user:bench")] == \
            [row.id for row in naive_list(store)]                         # same first page
        ours = timed(lambda: store.list_sessions("user:bench", limit=50), args.runs)
        search = timed(lambda: store.list_sessions("user:bench", search="ECG 99", limit=50),
                       args.runs)
        base = timed(lambda: naive_list(store), args.runs)
        store.close()
    print(f"session list, {args.sessions} sessions of one owner, 2 x {args.blob_kb} kB images "
          f"each ({size_mb:.0f} MB SQLite file), median of {args.runs} runs")
    print(f"  Store.list_sessions (50 rows):        {ours * 1000:8.2f} ms")
    print(f"  Store.list_sessions search 'ECG 99':  {search * 1000:8.2f} ms")
    print(f"  naive SELECT * (blobs), first 50:     {base * 1000:8.2f} ms")
    print(f"  ratio naive / ours: {base / ours:.0f}x faster")


if __name__ == "__main__":
    main()
