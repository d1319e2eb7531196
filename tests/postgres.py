"""A throw-away PostgreSQL server for tests and benchmarks: Debian's ``postgresql`` package
(``make test`` installs it), a cluster made by ``initdb`` in a temporary folder, listening on
127.0.0.1 at a free port and on a socket in that folder, removed when it stops.

As root (CI, containers) the server runs as the ``postgres`` user the package creates, since
PostgreSQL refuses to run as root. Durability is off (``fsync=off``): the data is thrown away.

>>> with TemporaryPostgres() as server:                               # doctest: +SKIP
...     url = server.create_database("t1")     # postgresql://pulse@127.0.0.1:PORT/t1
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

SUPERUSER = "pulse"
INSTALL_HINT = ("install Debian's PostgreSQL server (`make test` does: apt-get install "
                "postgresql), or set PULSE_TEST_PG_BIN to the folder of initdb and pg_ctl")


def find_bin() -> Path | None:
    """The folder of ``initdb`` and ``pg_ctl``: PULSE_TEST_PG_BIN, Debian's newest
    ``/usr/lib/postgresql/N/bin``, or the PATH."""
    if os.environ.get("PULSE_TEST_PG_BIN"):
        return Path(os.environ["PULSE_TEST_PG_BIN"])
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name)
                   if Path(p).parent.parent.name.isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).resolve().parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class TemporaryPostgres:
    """``start()`` / ``stop()`` (or a ``with`` block); :meth:`create_database` gives a URL."""

    def __init__(self, *, max_connections: int = 200):
        self.bin = find_bin()
        if self.bin is None or not (self.bin / "initdb").exists():
            raise RuntimeError(f"no PostgreSQL server found: {INSTALL_HINT}")
        self.max_connections = max_connections
        self.folder: Path | None = None
        self.port = 0
        self._user = {}
        self._admin = None

    def _run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        result = subprocess.run([str(self.bin / args[0]), *args[1:]], capture_output=True,
                                text=True, timeout=timeout, **self._user)
        if result.returncode != 0:
            raise RuntimeError(f"{args[0]} failed: {(result.stderr or result.stdout)[-1500:]}")
        return result

    def start(self) -> "TemporaryPostgres":
        self.folder = Path(tempfile.mkdtemp(prefix="pulse-pg-"))
        if os.geteuid() == 0:                       # postgres refuses to run as root
            account = pwd.getpwnam("postgres")
            os.chown(self.folder, account.pw_uid, account.pw_gid)
            self._user = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": [],
                          "cwd": str(self.folder)}
        data = self.folder / "data"
        self._run("initdb", "-D", str(data), "-A", "trust", "-U", SUPERUSER, "-E", "UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        self.port = _free_port()
        options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.folder} "
                   f"-c max_connections={self.max_connections} -c fsync=off "
                   "-c full_page_writes=off -c synchronous_commit=off -c shared_buffers=32MB")
        self._run("pg_ctl", "-D", str(data), "-l", str(self.folder / "server.log"), "-w",
                  "-t", "60", "-o", options, "start")
        return self

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def admin(self):
        """An autocommit psycopg connection to the ``postgres`` database."""
        import psycopg

        if self._admin is None or self._admin.closed:
            self._admin = psycopg.connect(f"host=127.0.0.1 port={self.port} user={SUPERUSER} "
                                          "dbname=postgres", autocommit=True)
        return self._admin

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL."""
        self.admin().execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def drop_database(self, name: str) -> None:
        self.admin().execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def terminate_connections(self, database: str) -> int:
        """Kill every server process serving ``database`` (what a server restart or a
        network cut does to clients); returns how many."""
        rows = self.admin().execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()", (database,)).fetchall()
        return len(rows)

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        if self.folder is not None:
            try:
                self._run("pg_ctl", "-D", str(self.folder / "data"), "-m", "immediate", "-w",
                          "stop", timeout=60)
            except (RuntimeError, subprocess.TimeoutExpired):
                pass
            for _ in range(50):
                try:
                    shutil.rmtree(self.folder)
                    break
                except OSError:
                    time.sleep(0.1)
            self.folder = None

    def __enter__(self) -> "TemporaryPostgres":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
