"""App replicas on one PostgreSQL: the session-list and turn-write path, 2 processes vs 1.

A real PostgreSQL server (a throw-away cluster, :class:`tests.postgres.TemporaryPostgres`)
holds ``--owners`` owners with ``--sessions`` sessions each. ``--clients`` concurrent clients each act for one owner: list its sessions (the first page, as the page does),
then append a turn to one of them (``Store.add_turn``: one commit, the session row locked), as
fast as they can for ``--seconds``. The same clients are served by one app process (the
baseline: every client a thread of one process with its own connection pool) and then split
over two processes (two replicas), each with its own pool: what putting a second replica
behind the load balancer buys on this path. Printed: operations (list + turn) per second and
the ratio, and that every turn was stored once.

    python -m bench.app_replicas [--clients 8] [--seconds 10] [--owners 8] [--sessions 200]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading
import time
from datetime import timedelta

from sqlalchemy import insert, text

from pulse_app.store import SessionRow, Store, utc_now


def fill(url: str, owners: int, sessions: int) -> None:
    store = Store(url)
    start = utc_now()
    blob = os.urandom(8000)
    with store.engine.begin() as connection:
        connection.execute(insert(SessionRow), [
            dict(id=f"o{o:03d}s{n:05d}", owner=f"user:bench{o}", title=f"ECG {n}",
                 created_at=start + timedelta(seconds=n), updated_at=start + timedelta(seconds=n),
                 model_id="PULSE-7B", params={}, original_png=blob, edited_png=blob)
            for o in range(owners) for n in range(sessions)])
    store.close()


def replica(url: str, owners: list[int], seconds: float, start_at: float, results) -> None:
    """One app process: a thread per client, a pool as large as its clients."""
    store = Store(url, pool_size=max(1, len(owners)), max_overflow=0)
    counts = []

    def client(owner_number: int) -> None:
        owner, done, n = f"user:bench{owner_number}", 0, 0
        while time.time() < start_at:
            time.sleep(0.001)
        deadline = start_at + seconds
        while time.time() < deadline:
            page = store.list_sessions(owner, limit=50)
            session = page[n % len(page)]
            store.add_turn(owner, session.id, question=f"q{n}", answer="Sinus rhythm.",
                           model_id="PULSE-7B", model_label="bench", params={})
            n += 1
            done += 1
        counts.append(done)

    threads = [threading.Thread(target=client, args=(o,)) for o in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    store.close()
    results.put(sum(counts))


def run(url: str, processes: int, clients: int, seconds: float) -> int:
    """Operations done by ``clients`` clients split over ``processes`` app processes."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start_at = time.time() + 8.0                     # after every process has started
    groups = [list(range(clients))[p::processes] for p in range(processes)]
    workers = [context.Process(target=replica, args=(url, group, seconds, start_at, results))
               for group in groups]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=seconds + 300) for _ in workers)
    for worker in workers:
        worker.join()
    return total


def turn_count(url: str) -> int:
    store = Store(url)
    with store.engine.connect() as connection:
        count = connection.execute(text("SELECT count(*) FROM turns")).scalar()
        duplicated = connection.execute(text(
            'SELECT count(*) FROM (SELECT session_id, "index" FROM turns '
            'GROUP BY session_id, "index" HAVING count(*) > 1) AS d')).scalar()
    store.close()
    assert duplicated == 0, "a turn index was stored twice"
    return int(count)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--owners", type=int, default=8)
    parser.add_argument("--sessions", type=int, default=200)
    args = parser.parse_args(argv)
    from tests.postgres import TemporaryPostgres

    try:
        server = TemporaryPostgres().start()
    except RuntimeError as error:
        print(f"app_replicas: skipped, {error}")
        return
    try:
        rates = {}
        for processes in (1, 2):
            url = server.create_database(f"bench_{processes}")
            fill(url, args.owners, args.sessions)
            done = run(url, processes, args.clients, args.seconds)
            assert turn_count(url) == done, "a turn was lost or stored twice"
            rates[processes] = done / args.seconds
            print(f"{processes} app process(es), {args.clients} clients: {done} list+turn "
                  f"operations in {args.seconds:.0f} s = {rates[processes]:.1f}/s "
                  f"(every turn stored once)")
        print(f"2 replicas vs 1 (baseline, same run, same clients): "
              f"{rates[2] / rates[1]:.2f}x operations per second "
              f"[{os.cpu_count()} CPU cores, PostgreSQL on the same machine]")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
