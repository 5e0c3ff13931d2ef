"""Named locks shared by every gunicorn worker and thread, where two at once would waste an upstream fetch:
flock on a file per name on one box (SQLite), a PostgreSQL advisory lock shared by every node on several.

A released lock's file is removed; a waiter that locked a removed file notices (another inode at the path)
and tries again. A dead holder's file blocks no one, and `sweep` removes it at the next start; a dead holder's
advisory lock ends with its connection.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path
from typing import Any

from pypilite.database import is_sqlite, own_connection

POLL_SECONDS = 0.02


class LockTimeout(Exception):
    """The lock stayed held by someone else for longer than the caller would wait."""


class FileLock:
    def __init__(self, directory: Path, name: str) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / hashlib.sha256(name.encode()).hexdigest()[:32]
        self._fd: int | None = None

    def acquire(self, timeout: float) -> FileLock:
        deadline = time.monotonic() + timeout
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"lock {self.path.name} held for more than {timeout:g} s") from None
                time.sleep(POLL_SECONDS)
                continue
            try:
                current = os.stat(self.path).st_ino
            except FileNotFoundError:
                current = None
            if current == os.fstat(fd).st_ino:
                self._fd = fd
                return self
            os.close(fd)  # locked a file its holder had already removed: take the new one

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


class DatabaseLock:
    """A session advisory lock on a connection of its own, outside the pool: held for as long as its holder
    wants (a download streams on after its request handed its connection back), and released by closing it."""

    def __init__(self, name: str) -> None:
        self.key = int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)
        self._connection: Any = None

    def acquire(self, timeout: float) -> DatabaseLock:
        deadline = time.monotonic() + timeout
        connection = own_connection()
        try:
            while not connection.execute("SELECT pg_try_advisory_lock(%s)", (self.key,)).fetchone()[0]:
                if time.monotonic() >= deadline:
                    raise LockTimeout(f"lock {self.key:x} held for more than {timeout:g} s")
                time.sleep(POLL_SECONDS)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return self

    def release(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            connection.close()

    def __enter__(self) -> DatabaseLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


Lock = FileLock | DatabaseLock


def named_lock(directory: Path, name: str) -> Lock:
    """The lock `name` for every process that serves this index: files in `directory` when they share one
    box's SQLite, the database itself when nodes share PostgreSQL."""
    return FileLock(directory, name) if is_sqlite() else DatabaseLock(name)


def sweep(directory: Path) -> int:
    """Remove the lock files nobody holds, left by processes that died holding them. Each is locked before
    it is removed, as a release does, so a waiter that opened it meanwhile notices and retries."""
    removed = 0
    for path in directory.glob("*") if directory.is_dir() else ():
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            if os.stat(path).st_ino == os.fstat(fd).st_ino:
                path.unlink()
                removed += 1
        except (BlockingIOError, FileNotFoundError):
            continue  # held by a live process, or released and removed by its holder just now
        finally:
            os.close(fd)
    return removed
