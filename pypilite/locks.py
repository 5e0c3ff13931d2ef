"""Named locks shared by every gunicorn worker and every thread: flock on a file per name.

Used where two workers doing the same thing at once would waste an upstream download or fetch. The lock
file is removed on release; a waiter that locked a file already removed notices (its inode is no longer
the one at the path) and tries again, so removal never lets two holders in.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path

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
