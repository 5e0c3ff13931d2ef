"""`python app.py backup DEST`: a consistent copy of a live data dir, restorable by pointing data_dir at it.

The database first, in one step of SQLite's online backup API, then every blob that copy lists (complete,
as blobs commit before their rows), hard-linked or copied and checked; pypilite.db is renamed into DEST
last, so a DEST holding it is a whole backup.
"""

from __future__ import annotations

import errno
import os
import shutil
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pypilite.database import keep_private
from pypilite.models import ETAG_KEY, new_etag_key
from pypilite.storage import LocalBlobStore, TempBlob, fsync_dir

DATABASE_NAME = "pypilite.db"
INITIAL_PASSWORD = "initial-admin-password"
CHUNK = 1024 * 1024
# Errors of os.link that mean "not here": another filesystem, or one that has no hard links.
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.EMLINK, errno.ENOTSUP, errno.EOPNOTSUPP}


class BackupError(Exception):
    """The backup cannot be made; the message says why in one line."""


@dataclass
class BackupReport:
    database_bytes: int = 0
    blobs: int = 0
    blob_bytes: int = 0
    linked: int = 0
    missing: int = 0  # hosted blobs the source lacks (check would report them too)


def prepare_destination(dest: Path) -> None:
    """DEST must be an empty directory or not exist yet; anything else could mix two data dirs."""
    if dest.exists() and not dest.is_dir():
        raise BackupError(f"backup destination {str(dest)!r} exists and is not a directory")
    try:
        if dest.is_dir():
            if any(dest.iterdir()):
                raise BackupError(f"backup destination {str(dest)!r} is not empty")
        else:
            dest.mkdir(parents=True)
        probe = dest / ".write-test"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise BackupError(f"backup destination {str(dest)!r}: {exc.strerror or exc}") from None


def backup(database_path: Path, blobs: LocalBlobStore, dest: Path) -> BackupReport:
    """Copy the database at `database_path` and the blobs it lists into `dest` (already prepared)."""
    report = BackupReport()
    target = LocalBlobStore(dest)
    partial = target.tmp / f"{DATABASE_NAME}.part"
    try:
        _snapshot(database_path, partial)
        hosted, proxied = _referenced(partial)
        directories = set()
        for sha256 in sorted(hosted | proxied):
            source = blobs.path(sha256)
            if not source.is_file():
                # A proxy fetches its files on first request; a hosted file must have its blob.
                report.missing += sha256 in hosted
                continue
            size, linked = _bring_over(source, sha256, target)
            report.blobs += 1
            report.blob_bytes += size
            report.linked += linked
            directories.add(target.path(sha256).parent)
        for directory in sorted(directories):  # the new names must survive a power cut before the database
            fsync_dir(directory)
        _copy_small(blobs.root.parent / INITIAL_PASSWORD, dest / INITIAL_PASSWORD, target.tmp)
        report.database_bytes = partial.stat().st_size
        os.replace(partial, dest / DATABASE_NAME)
        fsync_dir(dest)
    except OSError as exc:
        raise BackupError(f"backup to {str(dest)!r} failed: {exc.strerror or exc}") from None
    finally:
        partial.unlink(missing_ok=True)  # renamed into place on success; never left looking like a database
    return report


def _copy_small(source: Path, dest: Path, tmp: Path) -> None:
    """The first admin's password file, if it is still there: mode kept (0600), written atomically."""
    if not source.is_file():
        return
    partial = tmp / f"{dest.name}.part"
    shutil.copy2(source, partial)
    with partial.open("rb+") as fh:
        os.fsync(fh.fileno())
    os.replace(partial, dest)


def _snapshot(source: Path, partial: Path) -> None:
    """One backup step copies every page under one read transaction: a consistent snapshot."""
    src = sqlite3.connect(source, timeout=30)
    keep_private(partial)
    dst = sqlite3.connect(partial)
    try:
        src.backup(dst)
        # A restored data dir is another instance: its ETags must not match what clients cached from this one.
        dst.execute("UPDATE meta SET value = ? WHERE key = ?", (new_etag_key(), ETAG_KEY))
        dst.commit()
    finally:
        dst.close()
        src.close()
    with partial.open("rb+") as fh:
        os.fsync(fh.fileno())


def _referenced(database: Path) -> tuple[set[str], set[str]]:
    """The blobs the copied database lists: of hosted files, and of proxied ones (fetched or not)."""
    connection = sqlite3.connect(database)
    try:
        rows = connection.execute("SELECT sha256, metadata_sha256, info_sha256, origin_url != '' FROM file").fetchall()
    finally:
        connection.close()
    hosted: set[str] = set()
    proxied: set[str] = set()
    for sha256, metadata_sha256, info_sha256, is_proxied in rows:
        bucket = proxied if is_proxied else hosted
        bucket.update(blob for blob in (sha256, metadata_sha256, info_sha256) if blob)
    return hosted, proxied


def _bring_over(source: Path, sha256: str, target: LocalBlobStore) -> tuple[int, bool]:
    """Link or copy one blob; returns its size and whether it was linked."""
    final = target.path(sha256)
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, final)
        return final.stat().st_size, True
    except OSError as exc:
        if exc.errno not in _NO_LINK:
            raise
    blob = TempBlob(target.tmp)
    try:
        with source.open("rb") as fh:
            shutil.copyfileobj(fh, blob, CHUNK)
        if blob.sha256 != sha256:
            raise BackupError(f"blob {sha256} in the data dir is corrupt (its bytes hash to {blob.sha256}); "
                              "run check")
        target.commit(blob)
        return blob.size, False
    finally:
        blob.discard()
