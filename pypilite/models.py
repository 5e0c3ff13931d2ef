"""The peewee models: every table pypilite keeps, bound to the database proxy (pypilite.database).

Stored times are naive UTC; the helpers below read and write them so.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

import peewee as pw

from pypilite.database import database


def api_time(value: datetime | None) -> str | None:
    """A stored time (naive UTC) as the API shows it."""
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


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
    offline = pw.BooleanField(default=False)  # a proxy that serves its cache alone
    policy = pw.TextField(default="")  # the package firewall's rules as JSON (policies.py); empty: none
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


def user_key(name: str) -> str:
    """What makes two user names the same user: case is ignored, as on PyPI (names are ASCII, so SQL's LOWER
    agrees with this; migration 8 makes the key unique)."""
    return name.lower()


class User(BaseModel):
    id = NeverReusedId()
    name = pw.CharField(unique=True)  # as its owner spelled it; unique in any case through LOWER(name)
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


class PolicyBlock(BaseModel):
    """A file a repository's policy blocked (or would block, in report mode), once per rule: what keeps the
    audit trail to one event per decision however often the file is asked for."""

    repository = pw.ForeignKeyField(Repository, on_delete="CASCADE")
    filename = pw.CharField()
    rule = pw.CharField()
    policy_key = pw.CharField()
    time = pw.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("repository", "filename", "rule", "policy_key"), True),)


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



class AdvisoryRecord(BaseModel):
    """An OSV advisory that names PyPI projects, imported offline (pypilite/advisories.py)."""

    id = pw.CharField(primary_key=True)  # the OSV id: GHSA-…, PYSEC-…, MAL-…
    aliases = pw.TextField(default="")  # one per line
    summary = pw.TextField(default="")
    severity = pw.CharField(null=True)  # critical | high | moderate | low, or unknown
    malicious = pw.BooleanField(default=False)
    modified = pw.DateTimeField(null=True)

    class Meta:
        table_name = "advisory"


class AdvisoryAffected(BaseModel):
    """One affected entry of an advisory, for one normalized project name: what a page's lookup reads."""

    advisory = pw.ForeignKeyField(AdvisoryRecord, on_delete="CASCADE")
    project = pw.CharField(index=True)
    ranges = pw.TextField(default="[]")  # JSON [[introduced, fixed, last_affected], …], each a version or null
    versions = pw.TextField(default="[]")  # JSON list of normalized versions


class AdvisoryImport(BaseModel):
    """One finished `advisories import`: how old the data is."""

    id = NeverReusedId()
    time = pw.DateTimeField(default=utcnow)
    source = pw.TextField()  # the file or directory's name, not its path
    stored = pw.IntegerField()
    removed = pw.IntegerField()


# The Meta counter every advisories write bumps: caches of policy decisions are keyed on it.
ADVISORIES_GENERATION = "advisories_generation"
NO_ADVISORIES = "0"  # that generation before the first import


# The secret ETags are hashed with: a restored copy of the data dir gets a new one (backup.py), so no
# validator a client holds from the original ever matches the copy's pages.
ETAG_KEY = "etag_key"


def new_etag_key() -> str:
    return secrets.token_hex(32)


def set_meta(key: str, value: str) -> None:
    """Insert or replace one fact, in the upsert both SQLite and PostgreSQL speak."""
    Meta.insert(key=key, value=value).on_conflict(conflict_target=[Meta.key], preserve=[Meta.value]).execute()


def etag_key() -> bytes:
    return bytes.fromhex(Meta.get(Meta.key == ETAG_KEY).value)

