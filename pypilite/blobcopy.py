"""`python app.py copy-blobs TARGET_CONFIG`: every blob the database names, copied into another blob store
(a local blob dir into a bucket, say), each read back through a temp blob and stored only if it hashes to
its name. Run it again after a break: what the target already holds is skipped."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field

from pypilite.models import File
from pypilite.storage import BlobStore

CHUNK = 1024 * 1024


@dataclass
class CopyReport:
    copied: int = 0
    copied_bytes: int = 0
    present: int = 0  # already in the target: not read again
    missing: list[str] = field(default_factory=list)  # named by a hosted file, absent from the source
    corrupt: list[str] = field(default_factory=list)  # in the source, but its bytes hash to another name


def referenced() -> Iterator[tuple[str, bool]]:
    """Each blob the database names, once, and whether a hosted file names it (a proxy fetches its own
    files on first request, so those may be absent)."""
    hosted: dict[str, bool] = {}
    for row in File.select(File.sha256, File.metadata_sha256, File.info_sha256, File.origin_url):
        for sha256 in (row.sha256, row.metadata_sha256, row.info_sha256):
            if sha256:
                hosted[sha256] = hosted.get(sha256, False) or not row.origin_url
    yield from sorted(hosted.items())


def copy_blobs(source: BlobStore, target: BlobStore) -> CopyReport:
    report = CopyReport()
    for sha256, hosted in referenced():
        if target.exists(sha256):
            report.present += 1
            continue
        try:
            reader = source.open(sha256)
        except FileNotFoundError:
            if hosted:
                report.missing.append(sha256)
            continue
        blob = target.temp()
        try:
            with reader:
                shutil.copyfileobj(reader, blob, CHUNK)
            if blob.sha256 != sha256:
                report.corrupt.append(sha256)
                continue
            target.commit(blob)
            report.copied += 1
            report.copied_bytes += blob.size
        finally:
            blob.discard()
    return report
