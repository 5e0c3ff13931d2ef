"""`python app.py check [--gc]`: the database against the blob store.

Check: every hosted file's blob (and metadata blob) exists and hashes to its address, every fetched proxy
blob too, and which temp files were abandoned by a writer that died. Garbage collection removes blobs no row
refers to, but only ones untouched for an hour: an upload renames its blob into place a moment before its
row is committed, and a re-upload of bytes already stored refreshes the blob's time first.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from pypilite.models import File
from pypilite.storage import BlobStore

GC_GRACE_SECONDS = 3600
CHUNK = 1024 * 1024


@dataclass
class Report:
    checked: int = 0
    missing: list[str] = field(default_factory=list)  # "filename (sha256)" of rows without their blob
    corrupt: list[str] = field(default_factory=list)  # blobs whose bytes no longer hash to their name
    stray_temp: list[str] = field(default_factory=list)
    unreferenced: list[str] = field(default_factory=list)
    removed: int = 0
    removed_bytes: int = 0

    @property
    def clean(self) -> bool:
        return not (self.missing or self.corrupt)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def check(blobs: BlobStore, gc: bool = False) -> Report:
    report = Report()
    referenced: set[str] = set()
    for row in File.select(File.filename, File.sha256, File.metadata_sha256, File.origin_url):
        for sha256, what in ((row.sha256, row.filename), (row.metadata_sha256, f"{row.filename}.metadata")):
            if sha256 is None:
                continue
            referenced.add(sha256)
            path = blobs.path(sha256)
            if not path.is_file():
                if not row.origin_url:  # a proxy fetches its files on first request; a hosted one must have it
                    report.missing.append(f"{what} ({sha256})")
                continue
            report.checked += 1
            if _sha256(path) != sha256:
                report.corrupt.append(f"{what} ({sha256})")
    cutoff = time.time() - GC_GRACE_SECONDS
    report.stray_temp = sorted(p.name for p in blobs.abandoned_temp())
    for path in blobs.root.glob("*/*/*"):
        if path.name in referenced:
            continue
        report.unreferenced.append(path.name)
        if gc and path.stat().st_mtime < cutoff:
            report.removed_bytes += path.stat().st_size
            path.unlink()
            report.removed += 1
    return report
