"""Noticing that the database may have changed, cheaply enough to ask before every answer the memo repeats.

On SQLite in WAL mode the answer is the count SQLite itself keeps of commits: the WAL-index header in the -shm
file beside the database. Every commit rewrites this 48-byte header in shared memory (its change counter,
frame count, salts and checksums), second copy first, then the first; and every connection compares it with
the copy it saw last when it begins a read, which is how PRAGMA data_version learns of other connections'
commits (walIndexWriteHdr and walIndexTryHdr in SQLite's wal.c; the layout is in
https://www.sqlite.org/walformat.html). Reading the header here is a memory read, where the pragma is a
statement, a read lock and two fcntl calls.

The -shm is SQLite's, and two of its rules bind this module:
- POSIX record locks belong to a process and a file, and closing any descriptor of the file drops all of them:
  a descriptor opened here is closed only once its file no longer bears the -shm's name (SQLite made a new one).
- SQLite truncates or replaces the -shm only when no connection anywhere holds it; a connection that has begun
  one read holds it until it closes. So the header is read only while such a connection is open: the caller's.
"""

from __future__ import annotations

import logging
import mmap
import os
import sqlite3
import struct
import threading
from time import monotonic

from pypilite.models import database

log = logging.getLogger(__name__)

HEADER_BYTES = 48  # one copy of the header; the second follows it
_VERSION = 3007000  # iVersion, the first field, in the host's byte order: the only layout there has been
_IS_INIT = 12  # offset of the isInit byte, 1 once a connection has built the header
# How often the header is checked against PRAGMA data_version: the longest a header that does not tell the
# truth (a SQLite built to keep it elsewhere, a layout this module misreads) could hide a commit.
CHECK_SECONDS = 1.0

Marker = tuple[int, bytes | int, int]

_INDEXES: dict[str, WalIndex] = {}  # by database path
_INDEXES_LOCK = threading.Lock()


class WalIndex:
    """The -shm header of one database file, mapped read-only. One per file for the life of the process (see
    `of`): its descriptor is never closed while the file may be SQLite's, so it must not be made twice."""

    def __init__(self, shm_path: str) -> None:
        self.shm_path = shm_path
        self._fd: int | None = None  # a bare descriptor: no file object that the garbage collector could close
        self._mapping: mmap.mmap | None = None
        self._identity: tuple[int, int] | None = None
        self._lock = threading.Lock()

    @classmethod
    def of(cls, connection: sqlite3.Connection) -> WalIndex | None:
        """This process's index of the connection's main database, or None when it has none (not a file, or
        not in WAL mode)."""
        (mode,) = connection.execute("PRAGMA journal_mode").fetchone()
        path = next((file for _, name, file in connection.execute("PRAGMA database_list") if name == "main"), "")
        if mode.lower() != "wal" or not path:
            return None
        with _INDEXES_LOCK:
            return _INDEXES.setdefault(path, cls(path + "-shm"))

    def attach(self) -> bool:
        """Map the -shm that bears the name now, unless it is the one already mapped. Call it while holding a
        connection that has begun a read since it opened (it then holds this very file). False when the file
        is not a WAL-index this module knows, and header() must not be trusted."""
        try:
            stat = os.stat(self.shm_path)
        except OSError:
            return False
        with self._lock:
            if (stat.st_dev, stat.st_ino) != self._identity:
                if stat.st_size < 2 * HEADER_BYTES:
                    return False
                self._replace()
        header = self.header()
        return header is not None and struct.unpack_from("=I", header)[0] == _VERSION

    def header(self) -> bytes | None:
        """The header's first copy, or None while the two copies differ (a commit is writing them this moment)
        or before any connection has built it. Any commit that ended before this call has changed it."""
        mapping = self._mapping
        if mapping is None:
            return None
        try:
            first = mapping[:HEADER_BYTES]
            second = mapping[HEADER_BYTES:2 * HEADER_BYTES]
        except ValueError:  # closed by attach() for a file made since, the caller's connection being another's
            return None
        if first != second or not first[_IS_INIT]:
            return None
        return first

    def _replace(self) -> None:
        """Open and map the file bearing the name; let the one mapped before go, being another file. The new
        descriptor is kept even when the file cannot be mapped (header() then stays None): it may be SQLite's."""
        fd = os.open(self.shm_path, os.O_RDONLY)
        stat = os.fstat(fd)
        try:
            mapping: mmap.mmap | None = mmap.mmap(fd, 2 * HEADER_BYTES, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # shorter than when it was looked at
            mapping = None
        old_fd, old_mapping, old_identity = self._fd, self._mapping, self._identity
        self._fd, self._mapping, self._identity = fd, mapping, (stat.st_dev, stat.st_ino)
        if old_identity == self._identity:
            return  # the same file after all: every descriptor of it stays open
        if old_mapping is not None:
            old_mapping.close()  # the mapping's own copy of the descriptor
        if old_fd is not None:
            os.close(old_fd)


class ChangeMarker:
    """Something that changes whenever the database may have: a commit by any connection in any process, or a
    row written through this process's own connection. Answers remembered under one marker are still right
    while the marker is the same. None on databases without such a counter (PostgreSQL).

    On SQLite in WAL mode it is the WAL-index header. With each new connection and then once every
    CHECK_SECONDS it asks PRAGMA data_version too: a commit the pragma counted that the header did not show
    means the header is not what this module takes it for, and the pragma alone answers from then on.

    The pragma counts per connection (and not the connection's own writes, hence total_changes), so the marker
    starts a new epoch whenever another connection than the last one is asked; the last one is held, so no
    later connection can take its identity."""

    def __init__(self) -> None:
        self._connection: sqlite3.Connection | None = None
        self._epoch = 0
        self._index: WalIndex | None = None
        self._trusted = True  # the header, until the pragma catches it out
        self._attached = False  # the header may be read for this epoch's connection
        self._check_at = 0.0
        self._checked: tuple[int, bytes | None] | None = None  # the last check's count, and the header before it
        self._lock = threading.Lock()

    def __call__(self) -> Marker | None:
        connection = database.connection()
        if not isinstance(connection, sqlite3.Connection):
            return None
        with self._lock:
            if connection is not self._connection:
                self._connection = connection
                self._epoch += 1
                self._attached = False
                self._checked = None
            index = self._index
            if self._attached and index is not None and monotonic() < self._check_at:
                header = index.header()
                if header is not None:
                    return self._epoch, header, connection.total_changes
            return self._epoch, self._ask(connection), connection.total_changes

    def _ask(self, connection: sqlite3.Connection) -> bytes | int:
        """The pragma's count; checked against the header, and the header if that holds."""
        before = self._index.header() if self._attached and self._index is not None else None
        (version,) = connection.execute("PRAGMA data_version").fetchone()
        if not self._trusted:
            return version
        if self._index is None:
            self._index = WalIndex.of(connection)
            if self._index is None:
                self._trusted = False
                return version
        if not self._attached:
            # The pragma has just begun a read on this connection, which holds the -shm from now on.
            self._attached = self._index.attach()
            if not self._attached:
                return version
        after = self._index.header()
        if self._checked is not None and self._checked[1] is not None and version != self._checked[0] \
                and after == self._checked[1]:
            log.error("SQLite's WAL-index header in %s did not change with a commit that PRAGMA data_version "
                      "counted; every answer is checked with the pragma from now on", self._index.shm_path)
            self._trusted = self._attached = False
            return version
        self._checked = (version, before)
        self._check_at = monotonic() + CHECK_SECONDS
        return after if after is not None else version
