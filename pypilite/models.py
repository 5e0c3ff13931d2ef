"""The database: peewee models, connection set-up and the schema migrations.

One deferred DatabaseProxy so the same models serve SQLite today and PostgreSQL later. Schema changes are
numbered migration steps recorded in the `meta` table, so an upgrade never loses data and an older pypilite
refuses a data dir written by a newer one instead of corrupting it.
"""

from __future__ import annotations

import os
import re
import secrets
import sqlite3
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import peewee as pw
from playhouse.db_url import connect as connect_url
from playhouse.pool import PooledSqliteDatabase
from playhouse import migrate as schema

from pypilite.errors import InsufficientStorage

if TYPE_CHECKING:
    from pypilite.storage import BlobStore

database = pw.DatabaseProxy()

SQLITE_PRAGMAS = {
    "journal_mode": "wal",
    "foreign_keys": 1,
    "busy_timeout": 10_000,
    # FULL: a 200 answered to an upload must survive a power cut, and uploads are rare enough to afford it.
    "synchronous": "full",
}


class SchemaError(Exception):
    """The database cannot be used by this version of pypilite."""


def first(query: pw.ModelRaw) -> Any:
    """The first row of a raw query, or None. Hot paths read with raw SQL: peewee spends far longer building
    a statement's text than SQLite spends running it."""
    return next(iter(query), None)


M = TypeVar("M", bound=pw.Model)


def columns(model: type[pw.Model], alias: str) -> str:
    """The select list that from_row() reads, for a table aliased as `alias`."""
    return ", ".join(f'{alias}."{field.column_name}"' for field in model._meta.sorted_fields)


def from_row(model: type[M], values: tuple[Any, ...]) -> M:
    """A model instance from a plain row selected with columns(): what peewee's raw queries return, at a
    fraction of their cost on paths every request takes."""
    return model(**{field.name: field.python_value(value) for field, value in zip(model._meta.sorted_fields, values)})


def api_time(value: datetime | None) -> str | None:
    """A stored time (naive UTC) as the API shows it."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def earliest(*moments: datetime | None) -> datetime | None:
    """The first of several deadlines, None standing for "never"."""
    return min((m for m in moments if m is not None), default=None)


class NeverReusedId(pw.AutoField):
    """A primary key no row ever gets twice, even after a delete: such ids go into ETags, page caches and API
    handles. SQLite reuses the highest rowid unless the column says AUTOINCREMENT; a PostgreSQL sequence
    never goes back."""

    def ddl(self, ctx: pw.Context) -> pw.NodeList:
        node = super().ddl(ctx)
        if isinstance(database.obj, pw.SqliteDatabase):
            return pw.NodeList((node, pw.SQL("AUTOINCREMENT")))
        return node


class BaseModel(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class Meta(BaseModel):
    """Key/value facts about the database itself: its schema version and the key ETags are hashed with."""

    key = pw.CharField(primary_key=True)
    value = pw.TextField()


class Repository(BaseModel):
    id = NeverReusedId()
    name = pw.CharField(unique=True)
    repository_type = pw.CharField()
    public = pw.BooleanField(default=True)
    allow_overwrite = pw.BooleanField(default=False)
    remote_url = pw.TextField(default="")
    cache_ttl = pw.IntegerField(default=600)
    remote_timeout = pw.IntegerField(default=10)
    upload_to = pw.CharField(default="")
    pass_through = pw.TextField(default="")  # a group's pass-through project names, one per line
    # Bumped whenever the set of project names changes: the root index's ETag.
    serial = pw.IntegerField(default=0)
    created = pw.DateTimeField(default=utcnow)


class GroupMember(BaseModel):
    group = pw.ForeignKeyField(Repository, backref="member_links", on_delete="CASCADE")
    member = pw.ForeignKeyField(Repository, backref="group_links", on_delete="RESTRICT")
    position = pw.IntegerField()

    class Meta:
        indexes = ((("group", "position"), True), (("group", "member"), True))


class Project(BaseModel):
    id = NeverReusedId()
    repository = pw.ForeignKeyField(Repository, backref="projects", on_delete="CASCADE")
    name = pw.CharField()  # PEP 503 normalized
    display_name = pw.CharField()
    # Bumped on every change to the project's files: the project page's ETag.
    serial = pw.IntegerField(default=0)
    created = pw.DateTimeField(default=utcnow)
    # PEP 792: one of markers.STATUSES, or "" where none was ever said (which means active).
    status = pw.CharField(default="")
    status_reason = pw.TextField(default="")
    # PEP 708, as a proxy's upstream said them: URLs, one per line.
    tracks = pw.TextField(default="")
    alternate_locations = pw.TextField(default="")

    class Meta:
        indexes = ((("repository", "name"), True),)


class File(BaseModel):
    project = pw.ForeignKeyField(Project, backref="files", on_delete="CASCADE")
    filename = pw.CharField(index=True)
    version = pw.CharField()
    packagetype = pw.CharField()
    sha256 = pw.FixedCharField(max_length=64, index=True)
    size = pw.BigIntegerField(null=True)  # unknown for a proxied file whose upstream did not say
    upload_time = pw.DateTimeField(null=True, default=utcnow)
    uploader = pw.CharField(default="")
    requires_python = pw.TextField(default="")
    yanked = pw.BooleanField(default=False)
    yanked_reason = pw.TextField(default="")
    metadata_sha256 = pw.FixedCharField(max_length=64, null=True, index=True)
    origin_url = pw.TextField(default="")
    # The metadata the web UI shows (a wheel's METADATA, an sdist's PKG-INFO), taken out of the archive once,
    # when this repository stored or fetched it: no page view ever opens an archive.
    info_sha256 = pw.FixedCharField(max_length=64, null=True, index=True)
    # PEP 740: where a proxy's upstream offers the file's provenance; never shown, only fetched.
    provenance_url = pw.TextField(default="")

    class Meta:
        indexes = ((("project", "filename"), True),)


class User(BaseModel):
    id = NeverReusedId()
    name = pw.CharField(unique=True)
    password_hash = pw.TextField(default="")
    admin = pw.BooleanField(default=False)
    robot = pw.BooleanField(default=False)
    created = pw.DateTimeField(default=utcnow)


class Token(BaseModel):
    id = NeverReusedId()
    user = pw.ForeignKeyField(User, backref="tokens", on_delete="CASCADE")
    # The token whose secret created this one, which it can never outlive: revoking it revokes this one too.
    parent = pw.ForeignKeyField("self", null=True, backref="children", on_delete="CASCADE")
    digest = pw.FixedCharField(max_length=64, unique=True)  # sha256 of the secret; the secret is never kept
    description = pw.CharField(default="")
    read_only = pw.BooleanField(default=False)
    # Narrowed tokens may touch only the repositories in TokenScope; removing a repository shrinks the
    # scope, it never widens a token to everything.
    narrowed = pw.BooleanField(default=False)
    created = pw.DateTimeField(default=utcnow)
    expires = pw.DateTimeField(null=True)
    last_used = pw.DateTimeField(null=True)
    revoked = pw.DateTimeField(null=True)


class TokenScope(BaseModel):
    """The repositories a narrowed token may touch."""

    token = pw.ForeignKeyField(Token, backref="scopes", on_delete="CASCADE")
    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE")

    class Meta:
        indexes = ((("token", "repository"), True),)


class Grant(BaseModel):
    user = pw.ForeignKeyField(User, backref="grants", on_delete="CASCADE")
    repository = pw.ForeignKeyField(Repository, backref="grants", on_delete="CASCADE")
    level = pw.CharField()  # read | upload | admin

    class Meta:
        indexes = ((("user", "repository"), True),)


class AuditEvent(BaseModel):
    time = pw.DateTimeField(default=utcnow, index=True)
    actor = pw.CharField()
    action = pw.CharField()
    resource_type = pw.CharField()
    resource = pw.CharField()
    address = pw.CharField(default="")
    detail = pw.TextField(default="")

    class Meta:
        indexes = (
            (("resource_type", "id"), False),
            # what login throttling counts: recent failures by address and by user name
            (("action", "address", "time"), False),
            (("action", "resource", "time"), False),
        )


class UpstreamPage(BaseModel):
    """What a proxy knows about one upstream project page: when it was fetched, the validators for a
    conditional refetch, and whether the upstream said it does not exist."""

    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE")
    name = pw.CharField()
    fetched = pw.DateTimeField()
    etag = pw.TextField(default="")
    last_modified = pw.TextField(default="")
    not_found = pw.BooleanField(default=False)

    class Meta:
        indexes = ((("repository", "name"), True),)


class Tombstone(BaseModel):
    """A filename deleted from a hosted repository: as on PyPI, it cannot be uploaded again (unless the
    repository allows overwrite), so a name never means two different files over time."""

    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE")
    filename = pw.CharField()
    sha256 = pw.FixedCharField(max_length=64)
    deleted = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("repository", "filename"), True),)


class FetchedBlob(BaseModel):
    """A blob a proxy fetched from its own upstream and found to hash as declared. A proxy serves only these:
    an upstream page that names the sha256 of some other repository's file gets nothing from the store."""

    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE")
    sha256 = pw.FixedCharField(max_length=64)

    class Meta:
        indexes = ((("repository", "sha256"), True),)


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
    Meta.replace(key=ETAG_KEY, value=new_etag_key()).execute()
    # A wheel's METADATA is a blob of its own already; an sdist's PKG-INFO is taken out after this step.
    File.update(info_sha256=File.metadata_sha256).where(
        (File.origin_url == "") & File.metadata_sha256.is_null(False)).execute()
    Meta.replace(key=RELEASE_INFO_CURSOR, value="0").execute()
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
    kept = [(repository, sha256) for repository, sha256 in rows if blobs.path(sha256).is_file()]
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
    from pypilite import serials

    serials.projects_changed(File.select(File.project).where(
        (File.origin_url != "") & (File.packagetype == "bdist_wheel") & File.metadata_sha256.is_null()
        & File.info_sha256.is_null(False)))


# Set by migration 5, removed when done: the id of the last hosted file whose PKG-INFO was taken out.
RELEASE_INFO_CURSOR = "release_info_cursor"
RELEASE_INFO_BATCH = 100


def _extract_release_info(blobs: BlobStore) -> None:
    """What the UI shows of the hosted sdists stored before pypilite kept it: each PKG-INFO taken out of its
    archive once (one that fails the checks shows no description). In batches, each committed with its place,
    outside the start-up transaction: a start cut short (gunicorn times out a worker that boots for too long)
    goes on from there at the next."""
    from pypilite import serials
    from pypilite.dists import InvalidDistribution, metadata_bytes, parse_filename

    while (cursor := Meta.get_or_none(Meta.key == RELEASE_INFO_CURSOR)) is not None:
        rows = list(File.select(File.id, File.filename, File.sha256).where(
            (File.origin_url == "") & File.info_sha256.is_null() & (File.id > int(cursor.value)))
            .order_by(File.id).limit(RELEASE_INFO_BATCH))
        found = {}
        for row in rows:
            try:
                raw = metadata_bytes(blobs.path(row.sha256), parse_filename(row.filename), row.filename)
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
    _migration_1, _migration_2, _migration_3, _migration_4, _migration_5, _migration_6)
SCHEMA_VERSION = len(MIGRATIONS)


# Requests still connect and close, but close hands the connection back to a pool: opening one (and
# applying the pragmas) costs more than answering a cached page.
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
    return connect_url(url)


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
    connection stays open for the next one, never inside a transaction a failure left behind (`read_only`: the
    request ran nothing that opens one, so there is nothing to look for). Threads of the development server
    come and go, and hand theirs back to the pool."""
    if threading.current_thread() is not threading.main_thread():
        database.close()
    elif not read_only and not database.is_closed() and getattr(
            connection := database.connection(), "in_transaction", False):
        connection.rollback()


@contextmanager
def write_transaction() -> Iterator[None]:
    """A transaction that takes SQLite's write lock up front, so two workers never deadlock upgrading a read
    lock (SQLITE_BUSY without waiting); on other databases a plain transaction. A full disk is a 507."""
    db = database.obj
    try:
        with db.atomic("IMMEDIATE") if isinstance(db, pw.SqliteDatabase) else db.atomic():  # pooled too
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
            Meta.replace(key="schema_version", value=str(step + 1)).execute()
        if sqlite and current < SCHEMA_VERSION and database.execute_sql("PRAGMA foreign_key_check").fetchone():
            raise SchemaError("the database breaks its own foreign keys after migrating; nothing was changed, "
                              "restore a backup or run check")
    return SCHEMA_VERSION


# The secret ETags are hashed with: a restored copy of the data dir gets a new one (backup.py), so no
# validator a client holds from the original ever matches the copy's pages.
ETAG_KEY = "etag_key"


def new_etag_key() -> str:
    return secrets.token_hex(32)


def etag_key() -> bytes:
    return bytes.fromhex(Meta.get(Meta.key == ETAG_KEY).value)
