"""Noticing that the database may have changed, cheaply enough to ask before every answer the memo repeats:
SQLite's own counter, PRAGMA data_version, with the connection's own writes beside it."""

from __future__ import annotations

import sqlite3
import threading

from pypilite.database import database

Marker = tuple[int, int, int]


class ChangeMarker:
    """Something that changes whenever the database may have: a commit by any connection in any process, or a
    row written through this process's own connection. Answers remembered under one marker are still right
    while the marker is the same. None on databases without such a counter (PostgreSQL).

    The pragma counts per connection, and not the connection's own commits (hence total_changes), so the marker
    starts a new epoch whenever another connection than the last one is asked; the last one is held, so no
    later connection can take its identity."""

    def __init__(self) -> None:
        self._connection: sqlite3.Connection | None = None
        self._epoch = 0
        self._lock = threading.Lock()

    def __call__(self) -> Marker | None:
        connection = database.connection()
        if not isinstance(connection, sqlite3.Connection):
            return None
        with self._lock:
            if connection is not self._connection:
                self._connection = connection
                self._epoch += 1
            epoch = self._epoch
        (version,) = connection.execute("PRAGMA data_version").fetchone()
        return epoch, version, connection.total_changes
