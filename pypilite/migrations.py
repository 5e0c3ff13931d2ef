"""Schema changes: numbered steps recorded in the `meta` table, so an upgrade never loses data and an older
pypilite refuses a data dir written by a newer one instead of corrupting it."""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Callable

import peewee as pw
from playhouse import migrate as schema

from pypilite import serials
from pypilite.database import database, write_transaction
from pypilite.dists import InvalidDistribution, metadata_bytes, parse_filename
from pypilite.models import (
    ADVISORIES_GENERATION,
    ETAG_KEY,
    NO_ADVISORIES,
    AdvisoryAffected,
    AdvisoryImport,
    AdvisoryRecord,
    AuditEvent,
    FetchedBlob,
    File,
    Grant,
    GroupMember,
    Meta,
    PolicyBlock,
    Project,
    Repository,
    Token,
    TokenScope,
    Tombstone,
    UpstreamPage,
    User,
    new_etag_key,
    set_meta,
)
from pypilite.storage import BlobStore, LocalBlobStore


class SchemaError(Exception):
    """The database cannot be used by this version of pypilite."""


def _migration_1(db: pw.Database, _blobs: BlobStore | None) -> None:
    db.create_tables([Repository, GroupMember, Project, File, User])
    Meta.insert(key="instance_id", value=uuid.uuid4().hex[:12]).on_conflict_ignore().execute()


def _migration_2(db: pw.Database, _blobs: BlobStore | None) -> None:
    db.create_tables([Token, TokenScope, Grant, AuditEvent])


def _migration_3(db: pw.Database, _blobs: BlobStore | None) -> None:
    """Proxies and groups: freshness of upstream pages, files whose size or upload time the upstream did not
    give, proxy timeouts, and group pass-through lists."""
    db.create_tables([UpstreamPage])
    migrator = schema.SchemaMigrator.from_database(db)
    schema.migrate(migrator.drop_not_null("file", "size"), migrator.drop_not_null("file", "upload_time"))
    columns = {column.name for column in db.get_columns("repository")}
    if "remote_timeout" not in columns:
        schema.migrate(migrator.add_column("repository", "remote_timeout", pw.IntegerField(default=10)))
    if "pass_through" not in columns:
        schema.migrate(migrator.add_column("repository", "pass_through", pw.TextField(default="")))


def _migration_4(db: pw.Database, _blobs: BlobStore | None) -> None:
    db.create_tables([Tombstone])


def _migration_5(db: pw.Database, blobs: BlobStore | None) -> None:
    """Ids that are never handed out twice, token lineage, the UI's metadata extracted once, and the blobs
    each proxy fetched itself. ETags become hashes under a new secret key, which retires every validator a
    client holds: ids reused before this step could make an old one match a different page."""
    if isinstance(db, pw.SqliteDatabase):
        for model in (Repository, Project, User, Token):
            _never_reuse_ids(db, model)
        # A token's id is its handle in the API and the audit trail: none the trail names is handed out again.
        db.execute_sql("DELETE FROM sqlite_sequence WHERE name = 'token'")
        db.execute_sql("INSERT INTO sqlite_sequence (name, seq) SELECT 'token', MAX(seq) FROM ("
                       "SELECT COALESCE(MAX(id), 0) AS seq FROM token UNION ALL SELECT MAX(CAST(resource AS "
                       "INTEGER)) FROM audit_event WHERE action = 'token.create')")
    migrator = schema.SchemaMigrator.from_database(db)
    if "parent_id" not in {column.name for column in db.get_columns("token")}:
        schema.migrate(migrator.add_column("token", "parent_id", Token.parent))
    if "info_sha256" not in {column.name for column in db.get_columns("file")}:
        schema.migrate(migrator.add_column("file", "info_sha256", File.info_sha256))  # indexed, as declared
    db.create_tables([FetchedBlob])
    set_meta(ETAG_KEY, new_etag_key())
    # A wheel's METADATA is a blob of its own already; an sdist's PKG-INFO is taken out after this step.
    File.update(info_sha256=File.metadata_sha256).where(
        (File.origin_url == "") & File.metadata_sha256.is_null(False)).execute()
    set_meta(RELEASE_INFO_CURSOR, "0")
    if blobs is not None:
        _keep_fetched_blobs(blobs)


def _never_reuse_ids(db: pw.SqliteDatabase, model: type[pw.Model]) -> None:
    """Rebuild a table with AUTOINCREMENT (SQLite cannot alter a column): SQLite's own twelve-step recipe,
    with foreign key enforcement off (migrate() turns it off) so dropping the old table cascades nothing."""
    table = model._meta.table_name
    (sql,) = db.execute_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (table,)).fetchone()
    if "AUTOINCREMENT" in sql.upper():
        return  # created from today's model
    interim = f"{table}__rebuilt"
    rebuilt, count = re.subn(
        rf'\ACREATE TABLE (IF NOT EXISTS )?"{table}" \("id" INTEGER NOT NULL PRIMARY KEY,',
        f'CREATE TABLE "{interim}" ("id" INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,', sql)
    if count != 1:
        raise SchemaError(f"table {table!r} is not as pypilite created it; restore a backup")
    indexes = [index for (index,) in db.execute_sql(
        "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))]
    db.execute_sql(rebuilt)
    db.execute_sql(f'INSERT INTO "{interim}" SELECT * FROM "{table}"')
    db.execute_sql(f'DROP TABLE "{table}"')
    db.execute_sql(f'ALTER TABLE "{interim}" RENAME TO "{table}"')
    for index in indexes:
        db.execute_sql(index)


def _keep_fetched_blobs(blobs: BlobStore) -> None:
    """Proxied files already in the store count as fetched by their proxy, unless a hosted file has the same
    bytes: then nothing tells who put them there, and the proxy fetches them from its upstream once more."""
    hosted = File.select(File.sha256).where(File.origin_url == "")
    deleted = Tombstone.select(Tombstone.sha256)  # a hosted file's bytes still, if not its row
    rows = (File.select(Project.repository, File.sha256).join(Project)
            .where((File.origin_url != "") & File.sha256.not_in(hosted) & File.sha256.not_in(deleted))
            .distinct().tuples())
    kept = [(repository, sha256) for repository, sha256 in rows if blobs.exists(sha256)]
    for start in range(0, len(kept), 500):
        FetchedBlob.insert_many(kept[start:start + 500], fields=[FetchedBlob.repository, FetchedBlob.sha256]
                                ).on_conflict_ignore().execute()


def _migration_6(db: pw.Database, _blobs: BlobStore | None) -> None:
    """What pages pass on besides files: a project's PEP 792 status, the PEP 708 URLs a proxy's upstream
    gave, and where that upstream keeps a file's PEP 740 provenance."""
    # Plain ADD COLUMN: peewee's add_column rebuilds a SQLite table for NOT NULL, handing a deleted id out again.
    for field in (Project.status, Project.status_reason, Project.tracks, Project.alternate_locations,
                  File.provenance_url):
        table = field.model._meta.table_name
        if field.column_name not in {column.name for column in db.get_columns(table)}:
            kind = "VARCHAR(255)" if isinstance(field, pw.CharField) else "TEXT"
            db.execute_sql(f'ALTER TABLE "{table}" ADD COLUMN "{field.column_name}" {kind} NOT NULL DEFAULT \'\'')
    # A proxied wheel's METADATA, taken out of the wheel it fetched, is offered as PEP 658 metadata from now on
    # where the upstream offers none: the proxy's own to hand out, and its pages change.
    offered = (File.select(Project.repository, File.info_sha256).join(Project)
               .where((File.origin_url != "") & (File.packagetype == "bdist_wheel") & File.metadata_sha256.is_null()
                      & File.info_sha256.is_null(False)).distinct().tuples())
    FetchedBlob.insert_from(offered, [FetchedBlob.repository, FetchedBlob.sha256]).on_conflict_ignore().execute()
    serials.projects_changed(File.select(File.project).where(
        (File.origin_url != "") & (File.packagetype == "bdist_wheel") & File.metadata_sha256.is_null()
        & File.info_sha256.is_null(False)))


def _migration_7(_db: pw.Database, blobs: BlobStore | None) -> None:
    """Stored blobs carry no time of their own from now on (see LocalBlobStore.commit): the ones stored before
    lose theirs."""
    if isinstance(blobs, LocalBlobStore):
        for path in blobs.root.glob("*/*/*"):
            os.utime(path, (0, 0))


def _migration_8(db: pw.Database, _blobs: BlobStore | None) -> None:
    """User names are one in any case, as on PyPI, kept unique by an index on LOWER(name). Users whose names
    differ only in case stop the upgrade, named: which of them stays is for a person to decide."""
    table = User._meta.table_name
    clashing = [name for (name,) in db.execute_sql(
        f'SELECT name FROM "{table}" WHERE LOWER(name) IN (SELECT LOWER(name) FROM "{table}" GROUP BY LOWER(name) '
        "HAVING COUNT(*) > 1) ORDER BY LOWER(name), name").fetchall()]
    if clashing:
        shown = ", ".join(repr(name) for name in clashing[:_SHOWN_CLASHES])
        more = f" and {len(clashing) - _SHOWN_CLASHES} more" if len(clashing) > _SHOWN_CLASHES else ""
        raise SchemaError(f"user names now ignore case, and these differ only in case: {shown}{more}; remove all "
                          "but one of each with the pypilite you ran before (app.py user remove NAME), then start "
                          "this one again")
    db.execute_sql(f'CREATE UNIQUE INDEX IF NOT EXISTS "{table}_name_key" ON "{table}" (LOWER(name))')


# Clashing user names a refused upgrade names in its one line.
_SHOWN_CLASHES = 10


def _migration_9(db: pw.Database, _blobs: BlobStore | None) -> None:
    """A proxy's offline switch."""
    if "offline" not in {column.name for column in db.get_columns("repository")}:
        kind = "INTEGER NOT NULL DEFAULT 0" if isinstance(db, pw.SqliteDatabase) else "BOOLEAN NOT NULL DEFAULT FALSE"
        db.execute_sql(f'ALTER TABLE "repository" ADD COLUMN "offline" {kind}')  # see _migration_6


def _migration_10(db: pw.Database, _blobs: BlobStore | None) -> None:
    """Advisories imported offline (pypilite/advisories.py), and the counter that names their state."""
    db.create_tables([AdvisoryRecord, AdvisoryAffected, AdvisoryImport])
    Meta.insert(key=ADVISORIES_GENERATION, value=NO_ADVISORIES).on_conflict_ignore().execute()


def _migration_11(db: pw.Database, _blobs: BlobStore | None) -> None:
    """The package firewall: a repository's policy, and the blocks already audited."""
    if "policy" not in {column.name for column in db.get_columns("repository")}:
        db.execute_sql('ALTER TABLE "repository" ADD COLUMN "policy" TEXT NOT NULL DEFAULT \'\'')  # see _migration_6
    db.create_tables([PolicyBlock], safe=True)


# Set by migration 5, removed when done: the id of the last hosted file whose PKG-INFO was taken out.
RELEASE_INFO_CURSOR = "release_info_cursor"
RELEASE_INFO_BATCH = 100


def _extract_release_info(blobs: BlobStore) -> None:
    """What the UI shows of the hosted sdists stored before pypilite kept it: each PKG-INFO taken out of its
    archive once (one that fails the checks shows no description). In batches, each committed with its place,
    outside the start-up transaction: a start cut short (gunicorn times out a worker that boots for too long)
    goes on from there at the next."""
    while (cursor := Meta.get_or_none(Meta.key == RELEASE_INFO_CURSOR)) is not None:
        rows = list(File.select(File.id, File.filename, File.sha256).where(
            (File.origin_url == "") & File.info_sha256.is_null() & (File.id > int(cursor.value)))
            .order_by(File.id).limit(RELEASE_INFO_BATCH))
        found = {}
        for row in rows:
            try:
                with blobs.local_copy(row.sha256) as path:
                    raw = metadata_bytes(path, parse_filename(row.filename), row.filename)
            except (InvalidDistribution, OSError):
                continue
            found[row.id] = blobs.put_bytes(raw)
        with write_transaction():
            for file_id, info in found.items():
                File.update(info_sha256=info).where((File.id == file_id) & File.info_sha256.is_null()).execute()
            if found:  # the JSON API's documents show it
                serials.projects_changed(File.select(File.project).where(File.id.in_(list(found))))
            if rows:
                Meta.update(value=str(rows[-1].id)).where(Meta.key == RELEASE_INFO_CURSOR).execute()
            else:
                Meta.delete().where(Meta.key == RELEASE_INFO_CURSOR).execute()


# Append only: step N brings schema version N-1 to N. A step that creates tables does so from the models as
# they are now, so a later step that alters such a table must tolerate finding the change already made.
MIGRATIONS: tuple[Callable[[pw.Database, BlobStore | None], None], ...] = (
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5, _migration_6, _migration_7,
    _migration_8, _migration_9, _migration_10, _migration_11)
SCHEMA_VERSION = len(MIGRATIONS)


def schema_version() -> int:
    if not database.table_exists(Meta._meta.table_name):
        return 0
    row = Meta.get_or_none(Meta.key == "schema_version")
    return int(row.value) if row else 0


def migrate(blobs: BlobStore | None = None) -> int:
    """Bring the schema up to date; returns the version reached. Safe to call from several processes.
    `blobs`: the data dir's store, for steps that move data between the database and the files."""
    sqlite = isinstance(database.obj, pw.SqliteDatabase)
    if sqlite:  # a table rebuild must not cascade; only outside a transaction does the pragma take
        database.execute_sql("PRAGMA foreign_keys = OFF")
    try:
        version = _migrate(blobs, sqlite)
    finally:
        if sqlite:
            database.execute_sql("PRAGMA foreign_keys = ON")
    if blobs is not None:
        _extract_release_info(blobs)
    return version


def _migrate(blobs: BlobStore | None, sqlite: bool) -> int:
    with write_transaction():
        if not database.table_exists(Meta._meta.table_name):
            database.create_tables([Meta])
        current = schema_version()
        if current > SCHEMA_VERSION:
            raise SchemaError(
                f"the database has schema version {current}, newer than this pypilite understands "
                f"({SCHEMA_VERSION}); upgrade pypilite or restore a backup"
            )
        for step in range(current, SCHEMA_VERSION):
            MIGRATIONS[step](database.obj, blobs)
            set_meta("schema_version", str(step + 1))
        if sqlite and current < SCHEMA_VERSION and database.execute_sql("PRAGMA foreign_key_check").fetchone():
            raise SchemaError("the database breaks its own foreign keys after migrating; nothing was changed, "
                              "restore a backup or run check")
    return SCHEMA_VERSION
