"""Noticing that the database may have changed, cheaply enough to ask before every answer the memo repeats:
SQLite's own counter, PRAGMA data_version, with the connection's own writes beside it."""

from __future__ import annotations

import sqlite3
import threading

from pypilite.database import database, is_sqlite

Marker = tuple[int, int, int]


class ChangeMarker:
    """Changes whenever the database may have: a commit by any connection, or a write through this one; None
    without such a counter (PostgreSQL). The pragma skips a connection's own commits (hence total_changes) and
    counts per connection (hence a new epoch with each connection, the last one held so none reuses its id)."""

    def __init__(self) -> None:
        self._connection: sqlite3.Connection | None = None
        self._epoch = 0
        self._lock = threading.Lock()

    def __call__(self) -> Marker | None:
        if not is_sqlite():
            return None
        connection = database.connection()
        with self._lock:
            if connection is not self._connection:
                self._connection = connection
                self._epoch += 1
            epoch = self._epoch
        (version,) = connection.execute("PRAGMA data_version").fetchone()
        return epoch, version, connection.total_changes
