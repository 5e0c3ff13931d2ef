"""Moving a one-box index's database into PostgreSQL, so a team that grows into several nodes keeps its
packages, users, tokens, grants and audit trail. The blobs stay where they are."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import peewee as pw

from pypilite import migrations, models
from pypilite.database import bind, database, make_database, write_transaction

BATCH = 500


class MoveError(Exception):
    """The move cannot be made, or did not copy every row; the target is left as it was."""


def tables() -> list[type[pw.Model]]:
    """Every table pypilite keeps, parents before the tables that point at them."""
    found = [value for value in vars(models).values()
             if isinstance(value, type) and issubclass(value, models.BaseModel) and value is not models.BaseModel]
    return pw.sort_models(found)


def move(source: Path, target_url: str) -> dict[str, int]:
    """Copy every row of the SQLite database at `source` (migrated to this version's schema) into the empty
    PostgreSQL database at `target_url` in one transaction, verified by row counts before it commits; the
    rows copied per table. One snapshot of the source: writes made meanwhile are not moved."""
    target = make_database(target_url, source.parent)
    bind(target)
    try:
        with database.connection_context(), sqlite3.connect(f"file:{source}?mode=ro", uri=True) as origin:
            if database.table_exists(models.Meta._meta.table_name):
                raise MoveError("the target database is not empty; migrate-to fills a new, empty one")
            origin.execute("BEGIN")  # one snapshot for every table
            with write_transaction():
                migrations.migrate()
                models.Meta.delete().execute()  # the facts migrating wrote: the source's own replace them
                copied = {model._meta.table_name: _copy(origin, model) for model in tables()}
                _continue_sequences(origin)
                for model in tables():
                    table = model._meta.table_name
                    if (found := model.select().count()) != copied[table]:
                        raise MoveError(f"table {table}: {copied[table]} rows copied but {found} found; "
                                        "nothing was committed")
            return copied
    finally:
        target.close_all()


def _copy(origin: sqlite3.Connection, model: type[pw.Model]) -> int:
    fields = model._meta.sorted_fields
    names = ", ".join(f'"{f.column_name}"' for f in fields)
    cursor = origin.execute(f'SELECT {names} FROM "{model._meta.table_name}" ORDER BY rowid')  # parents first
    count = 0
    while batch := cursor.fetchmany(BATCH):
        model.insert_many([tuple(f.python_value(value) for f, value in zip(fields, row)) for row in batch],
                          fields=fields).execute()
        count += len(batch)
    return count


def _continue_sequences(origin: sqlite3.Connection) -> None:
    """Each id sequence goes on past every id the one box ever handed out (SQLite's AUTOINCREMENT counter
    remembers deleted rows too), so no id in an ETag, a page cache or the audit trail is reused."""
    handed_out = dict(origin.execute("SELECT name, seq FROM sqlite_sequence").fetchall())
    for model in tables():
        primary = model._meta.primary_key
        if not isinstance(primary, pw.AutoField):
            continue
        table, column = model._meta.table_name, primary.column_name
        database.execute_sql(
            f'SELECT setval(pg_get_serial_sequence(%s, %s), GREATEST(%s, (SELECT COALESCE(MAX("{column}"), 0) '
            f'FROM "{table}")) + 1, false)', (table, column, handed_out.get(table, 0)))
