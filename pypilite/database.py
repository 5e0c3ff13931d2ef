"""The database connection: the proxy the models are bound to, its factory and pool, and transactions.

One deferred DatabaseProxy so the same models serve SQLite (one box) and PostgreSQL (several nodes).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar

import peewee as pw
from playhouse.db_url import connect as connect_url
from playhouse.pool import PooledSqliteDatabase

from pypilite.errors import InsufficientStorage

database = pw.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    # FULL: a 200 answered to an upload must survive a power cut, and uploads are rare enough to afford it.
    "synchronous": "full",
}

# close() hands the connection back to the pool: a new one and its pragmas are not free.
POOL = {"max_connections": 32, "stale_timeout": 300, "timeout": 30}


def make_database(url: str, data_dir: Path) -> pw.Database:
    """The database that `url` names (empty: SQLite inside the data dir), not yet connected."""
    if not url:
        keep_private(data_dir / "pypilite.db")
        return PooledSqliteDatabase(str(data_dir / "pypilite.db"), pragmas=SQLITE_PRAGMAS,
                                    check_same_thread=False, **POOL)
    if url.startswith("sqlite:"):
        database = connect_url(url.replace("sqlite:", "sqlite+pool:", 1), pragmas=SQLITE_PRAGMAS,
                               check_same_thread=False, **POOL)
        if database.database != ":memory:":
            keep_private(Path(database.database))
        return database
    scheme, rest = url.split(":", 1)
    # psycopg 3 even where psycopg2 is installed too: the one the tests run. A password may be %-quoted.
    return connect_url(f"{scheme}+pool:{rest}", unquote_user=True, unquote_password=True, prefer_psycopg3=True,
                       **POOL)


def is_sqlite() -> bool:
    return isinstance(database.obj, pw.SqliteDatabase)


def own_connection() -> Any:
    """A new autocommit connection to the bound PostgreSQL database, outside the pool, for a session lock."""
    import psycopg  # the postgresql extra

    db = database.obj
    return psycopg.connect(dbname=db.database, autocommit=True, **db.connect_params)


def sql(statement: str) -> str:
    """A raw statement written with SQLite's `?` placeholders, in the bound database's own style."""
    return _in_style(statement, database.obj.param)


@lru_cache(maxsize=256)
def _in_style(statement: str, param: str) -> str:
    return statement if param == "?" else statement.replace("%", "%%").replace("?", param)


def keep_private(path: Path) -> None:
    """A SQLite file readable by its owner alone: it holds password hashes and upstream credentials. SQLite
    gives the -wal and -shm files it creates the database file's own mode."""
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for companion in (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal"))):
        try:
            mode = companion.stat().st_mode
        except FileNotFoundError:
            continue
        if mode & 0o077:
            companion.chmod(mode & 0o700)


def bind(db: pw.Database) -> None:
    database.initialize(db)


def close_pool() -> None:
    """Really close pooled connections: none may outlive start-up into a forked worker (gunicorn --preload)."""
    close_all = getattr(database.obj, "close_all", None)
    if close_all is not None:
        close_all()


def release_connection(read_only: bool = False) -> None:
    """At the end of a request. A gunicorn sync worker answers every request on its main thread: its
    connection stays open for the next one, unless a failure left a transaction open on it or the server
    dropped it (`read_only`: the request ran nothing that opens one, so there is nothing to look for); then
    the pool rolls it back or replaces it. Threads of the development server come and go, and hand theirs
    back to the pool."""
    if threading.current_thread() is not threading.main_thread():
        database.close()
    elif not read_only and not database.is_closed() and not _idle(database.connection()):
        database.close()


def connection_lost() -> bool:
    """Whether the server cut this thread's connection (PostgreSQL restarted, the database dropped): the failed
    request says so with a 503, and the pool replaces the connection when the request ends."""
    if database.is_closed():
        return False
    connection = database.connection()
    return bool(getattr(connection, "broken", False) or getattr(connection, "closed", False))


def _idle(connection: Any) -> bool:
    """No transaction open, whoever began it (peewee tracks only its own), on a connection the server keeps."""
    if isinstance(connection, sqlite3.Connection):
        return not connection.in_transaction
    from psycopg.pq import TransactionStatus  # the postgresql extra: imported only where it is installed

    return connection.info.transaction_status == TransactionStatus.IDLE


# The PostgreSQL advisory lock every write transaction holds: pypilite's own "write lock".
WRITE_LOCK = 0x7079_7069_6C69_7465  # "pypilite" in ASCII; a bigint


@contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that takes the database's one write lock up front, so the checks a write makes still hold
    when it commits (no two uploads of one name, no lost serial): SQLite's own (IMMEDIATE, which also keeps
    two workers from deadlocking on upgrading a read lock), or an advisory lock all nodes share on PostgreSQL,
    released with the transaction. Nested, a savepoint. A full disk is a 507."""
    db = database.obj
    try:
        with db.atomic("IMMEDIATE") if is_sqlite() else db.atomic():  # pooled too
            if not is_sqlite():
                db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (WRITE_LOCK,))
            yield
    except pw.OperationalError as exc:
        if not _disk_full(exc):
            raise
        raise InsufficientStorage("Insufficient storage: the database cannot grow (disk full); nothing was "
                                  "stored") from None


def _disk_full(exc: pw.OperationalError) -> bool:
    """SQLite's SQLITE_FULL, PostgreSQL's disk_full: peewee keeps the driver's own error as `orig`."""
    driver_error = getattr(exc, "orig", None)
    return (getattr(driver_error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
            or getattr(driver_error, "pgcode", None) == "53100")


def first(query: pw.ModelRaw) -> Any:
    """The first row of a raw query, or None. Hot paths read with raw SQL: peewee spends far longer building
    a statement's text than SQLite spends running it."""
    return next(iter(query), None)


M = TypeVar("M", bound=pw.Model)


def columns(model: type[pw.Model], alias: str) -> str:
    """The select list that from_row() reads, for a table aliased as `alias`."""
    return ", ".join(f'{alias}."{field.column_name}"' for field in model._meta.sorted_fields)


def from_row(model: type[M], values: tuple[Any, ...]) -> M:
    """A model instance from a plain row selected with columns(): what peewee's raw queries return, without
    their machinery, on paths every request takes."""
    return model(**{field.name: field.python_value(value) for field, value in zip(model._meta.sorted_fields, values)})
