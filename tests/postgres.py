"""A throwaway PostgreSQL cluster for the tests: Debian's own binaries, a temp dir, a free loopback port, started
once per test process when first asked for, and a fresh database per caller (a copy of an empty template).

`pytest --db=postgresql` runs in-process indexes (tests/conftest.py `Index`) on it; integration tests that need
PostgreSQL ask for `fresh_database_url()` whatever the option says.
"""

from __future__ import annotations

import atexit
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

BINARIES = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
USER = "postgres"
TEMPLATE = "pypilite_template"
# Durability is not what a throwaway cluster is for: no fsync makes CREATE DATABASE and every commit cheap.
SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", "max_connections": "300",
            "listen_addresses": "127.0.0.1", "shared_buffers": "32MB", "autovacuum": "off"}


def available() -> bool:
    return bool(BINARIES)


class Cluster:
    def __init__(self) -> None:
        if not BINARIES:
            pytest.skip("PostgreSQL is not installed (Debian: apt-get install postgresql)")
        self.bin = BINARIES[-1].parent
        self.root = Path(tempfile.mkdtemp(prefix="pypilite-pg-"))
        self.data = self.root / "cluster"
        self.port = _free_port()
        self._names = itertools.count()
        self._lock = threading.Lock()
        owner = _unprivileged()
        if owner is not None:  # initdb and postgres refuse to run as root
            os.chown(self.root, *owner)
        self._run("initdb", "-D", self.data, "-U", USER, "--auth=trust", "-E", "UTF8", "--no-sync", "--locale=C.UTF-8")
        options = " ".join(f"-c {key}={value}" for key, value in SETTINGS.items())
        self._run("pg_ctl", "-D", self.data, "-l", self.root / "log", "-w", "-o",
                  f"-p {self.port} -k {self.root} {options}", "start")
        atexit.register(self.stop)
        self.sql(f'CREATE DATABASE "{TEMPLATE}"')

    def url(self, name: str) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{name}"

    def fresh(self) -> str:
        """The URL of a new, empty database of this cluster."""
        with self._lock:
            name = f"test_{os.getpid()}_{next(self._names)}"
        self.sql(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}" STRATEGY FILE_COPY')
        return self.url(name)

    def sql(self, statement: str, database: str = "postgres") -> None:
        import psycopg

        with psycopg.connect(self.url(database), autocommit=True) as connection:
            connection.execute(statement)

    def stop(self) -> None:
        if self.data.exists():
            self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, tool: str, *args: str | Path, check: bool = True) -> None:
        command = [str(self.bin / tool), *map(str, args)]
        owner = _unprivileged()
        if owner is not None:
            command = ["setpriv", f"--reuid={owner[0]}", f"--regid={owner[1]}", "--clear-groups", *command]
        result = subprocess.run(command, capture_output=True, text=True, timeout=120, cwd=self.root)
        if check and result.returncode != 0:
            log = self.root / "log"
            raise RuntimeError(f"{tool} exited {result.returncode}: {result.stderr}"
                               + (log.read_text() if log.exists() else ""))


def _unprivileged() -> tuple[int, int] | None:
    """Who runs the cluster when the tests run as root (CI does): nobody."""
    if os.geteuid() != 0:
        return None
    import pwd

    nobody = pwd.getpwnam("nobody")
    return nobody.pw_uid, nobody.pw_gid


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


_cluster: Cluster | None = None
_start = threading.Lock()


def cluster() -> Cluster:
    global _cluster
    with _start:
        if _cluster is None:
            _cluster = Cluster()
        return _cluster


def fresh_database_url() -> str:
    """A new empty database on the session's cluster (started on first use)."""
    return cluster().fresh()
