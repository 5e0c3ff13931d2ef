"""`python app.py check [--gc]`: the database against the blob store.

Check: SQLite's quick_check, every referenced blob present and hashing to its address, no stray temp file.
--gc removes stray temp files and the blobs no row names, if untouched for an hour (an upload renames its
blob into place a moment before its row commits).
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field

import peewee as pw

from pypilite.database import database
from pypilite.models import File
from pypilite.storage import BlobStore

GC_GRACE_SECONDS = 3600


@dataclass
class Report:
    records: int = 0  # file rows: one blob each, plus a .metadata and a UI metadata blob for most wheels
    checked: int = 0  # distinct blobs found and hashed
    missing: list[str] = field(default_factory=list)  # "filename (sha256)" of rows without their blob
    corrupt: list[str] = field(default_factory=list)  # blobs whose bytes no longer hash to their name
    stray_temp: list[str] = field(default_factory=list)  # left in place: check without --gc
    database_errors: list[str] = field(default_factory=list)  # what SQLite's quick_check found wrong
    unreferenced: list[str] = field(default_factory=list)
    removed: int = 0
    removed_bytes: int = 0
    removed_temp: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt or self.stray_temp or self.database_errors)


def _sha256(blobs: BlobStore, sha256: str) -> str:
    with blobs.open(sha256) as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def check(blobs: BlobStore, gc: bool = False) -> Report:
    report = Report()
    if isinstance(database.obj, pw.SqliteDatabase):
        found = [row[0] for row in database.execute_sql("PRAGMA quick_check").fetchall()]
        report.database_errors = [] if found == ["ok"] else found
    referenced: set[str] = set()
    for row in File.select(File.filename, File.sha256, File.metadata_sha256, File.info_sha256, File.origin_url):
        report.records += 1
        for sha256, what in ((row.sha256, row.filename), (row.metadata_sha256, f"{row.filename}.metadata"),
                             (row.info_sha256, f"{row.filename} (metadata shown in the UI)")):
            if sha256 is None or sha256 in referenced:
                continue
            referenced.add(sha256)
            if not blobs.exists(sha256):
                if not row.origin_url:  # a proxy fetches its files on first request; a hosted one must have it
                    report.missing.append(f"{what} ({sha256})")
                continue
            report.checked += 1
            if _sha256(blobs, sha256) != sha256:
                report.corrupt.append(f"{what} ({sha256})")
    cutoff = time.time() - GC_GRACE_SECONDS
    if gc:
        report.removed_temp = blobs.sweep_temp()
    report.stray_temp = sorted(p.name for p in blobs.abandoned_temp())
    for stored in blobs.listing():
        if stored.sha256 in referenced:
            continue
        report.unreferenced.append(stored.sha256)
        if gc and stored.changed < cutoff:
            report.removed_bytes += stored.size
            blobs.delete(stored.sha256)
            report.removed += 1
    return report


def hosted_usage() -> tuple[int, int]:
    """Distinct files stored by hosted repositories and their bytes, from the database alone: a scrape must
    not walk the blob tree. Proxied files are left out, since a row does not say whether its blob was
    fetched."""
    table = File._meta.table_name
    count, size = database.execute_sql(
        f'SELECT COUNT(*), COALESCE(SUM(size), 0) FROM (SELECT DISTINCT sha256, size FROM "{table}" '
        "WHERE origin_url = '') AS hosted").fetchone()
    return count, size
