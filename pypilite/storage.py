"""Content-addressed blob storage under data_dir/blobs.

Every write goes to a temp file on the same filesystem, hashed while it streams, then fsync'd and renamed
into place before any database row may point at it. A crash can leave an unreferenced blob or a stray temp
file, never a row whose blob is missing or half-written.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
TEMP_PREFIX = "upload-"


class BlobTooLarge(Exception):
    """A stream grew past the size the caller allowed."""


class TempBlob:
    """A file being written into the store: counts and hashes (sha256, md5, blake2b-256) what passes through.

    Quacks like the binary file werkzeug's form parser wants as a stream target, so an upload goes from the
    socket to this file in one pass without ever being held in memory.
    """

    def __init__(self, directory: Path, limit: int | None = None) -> None:
        fd, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".part")
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(fd, "w+b")
        self._limit = limit
        self.size = 0
        self._sha256 = hashlib.sha256()
        self._md5 = hashlib.md5(usedforsecurity=False)
        self._blake2 = hashlib.blake2b(digest_size=32)
        self.committed = False

    def write(self, data: bytes) -> int:
        self.size += len(data)
        if self._limit is not None and self.size > self._limit:
            raise BlobTooLarge(self._limit)
        self._sha256.update(data)
        self._md5.update(data)
        self._blake2.update(data)
        return self._file.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        return self._file.seek(offset, whence)

    def flush(self) -> None:
        self._file.flush()

    def close(self) -> None:
        self._file.close()

    def digests(self) -> dict[str, str]:
        return {
            "sha256": self._sha256.hexdigest(),
            "md5": self._md5.hexdigest(),
            "blake2_256": self._blake2.hexdigest(),
        }

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    def finish(self) -> None:
        """Make the bytes durable before they may be renamed into place."""
        if not self._file.closed:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        if not self.committed:
            self.path.unlink(missing_ok=True)


class BlobStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "blobs"
        self.tmp = data_dir / "tmp"
        self.root.mkdir(parents=True, exist_ok=True)
        self.tmp.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        if not _SHA256.match(sha256):
            raise ValueError(f"not a sha256 hex digest: {sha256!r}")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def temp(self, limit: int | None = None) -> TempBlob:
        return TempBlob(self.tmp, limit)

    def commit(self, blob: TempBlob) -> str:
        """Move a finished temp blob to its content address; identical bytes already stored are kept once."""
        blob.finish()
        sha256 = blob.sha256
        final = self.path(sha256)
        if final.is_file():
            blob.discard()
            os.utime(final)  # young again: garbage collection spares blobs touched within the hour
        else:
            final.parent.mkdir(parents=True, exist_ok=True)
            os.replace(blob.path, final)
            _fsync_dir(final.parent)
        blob.committed = True
        return sha256

    def sweep_temp(self, older_than: float) -> int:
        """Remove temp files abandoned by a crash; a live upload keeps writing, so its file stays young."""
        cutoff = time.time() - older_than
        removed = 0
        for path in self.tmp.glob(f"{TEMP_PREFIX}*"):
            try:
                if path.stat().st_mtime < cutoff:
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue
        return removed

    def put_bytes(self, data: bytes) -> str:
        blob = self.temp()
        try:
            blob.write(data)
            return self.commit(blob)
        finally:
            blob.discard()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
