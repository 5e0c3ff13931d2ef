"""Content-addressed blob storage: the interface (BlobStore) and its local backend under data_dir/blobs.

Every backend writes through a flock'ed temp file in data_dir/tmp, hashed as it goes, and makes the bytes
visible under their sha256 before any row may name them; a temp file nobody holds is abandoned and may be
swept. A full disk, or a write that would pass storage.min_free_mb, is a 507 (InsufficientStorage), not a
crash. The S3-compatible backend is pypilite.storage_s3.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import re
import shutil
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pypilite.errors import InsufficientStorage

SHA256_HEX = re.compile(r"[0-9a-f]{64}\Z")
# How often a growing temp file looks at the free space left (a statvfs): at most this much past the floor.
FREE_CHECK_BYTES = 16 * 1024 * 1024
TEMP_PREFIX = "upload-"
OUT_OF_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


@contextmanager
def out_of_space_is_507() -> Iterator[None]:
    """Turn the file system refusing more bytes into a one-line 507; other OSErrors stay bugs."""
    try:
        yield
    except OSError as exc:
        if exc.errno not in OUT_OF_SPACE:
            raise
        raise InsufficientStorage(f"Insufficient storage: {os.strerror(exc.errno)} while writing to the "
                                  f"data dir; nothing was stored") from None


@contextmanager
def _directory_lock(directory: Path, operation: int) -> Iterator[None]:
    """flock on the temp directory itself: writers hold it shared from creating a temp file to locking it,
    a sweeper holds it exclusively while it looks, so it never takes a newborn file for an abandoned one."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, operation)
        yield
    finally:
        os.close(fd)


class BlobTooLarge(Exception):
    """A stream grew past the size the caller allowed."""


class TempBlob:
    """A file being written into the store: counts and hashes (sha256, md5, blake2b-256) what passes through.

    Quacks like the binary file werkzeug's form parser wants as a stream target, so an upload goes from the
    socket to this file in one pass without ever being held in memory.
    """

    def __init__(self, directory: Path, limit: int | None = None, min_free: int = 0) -> None:
        with _directory_lock(directory, fcntl.LOCK_SH), out_of_space_is_507():
            fd, name = tempfile.mkstemp(dir=directory, prefix=TEMP_PREFIX, suffix=".part")
            fcntl.flock(fd, fcntl.LOCK_EX)  # held until the file is renamed into place or removed
        self.path = Path(name)
        self._file: BinaryIO = os.fdopen(fd, "w+b")
        self._limit = limit
        self._min_free = min_free
        self._unchecked = 0  # bytes written since the free space was last looked at
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
        self._unchecked += len(data)
        if self._min_free and self._unchecked >= FREE_CHECK_BYTES:
            self._unchecked = 0
            if shutil.disk_usage(self.path.parent).free < self._min_free:
                raise InsufficientStorage(f"Insufficient storage: less than storage.min_free_mb "
                                          f"({self._min_free // 2**20} MB) would be left free; nothing was stored")
        with out_of_space_is_507():
            return self._file.write(data)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        with out_of_space_is_507():  # seeking flushes what is buffered
            return self._file.seek(offset, whence)

    def flush(self) -> None:
        with out_of_space_is_507():
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
        """Make the bytes durable before they may be renamed into place; the file stays open (and locked)."""
        with out_of_space_is_507():
            self._file.flush()
            os.fsync(self._file.fileno())

    def discard(self) -> None:
        """Remove the file unless it was committed. Closing first may fail to flush what a full disk refused;
        those bytes are unwanted anyway, and the file goes regardless."""
        try:
            if not self._file.closed:
                self._file.close()
        except OSError:
            pass
        finally:
            if not self.committed:
                self.path.unlink(missing_ok=True)


def blob_key(sha256: str) -> str:
    """A blob's name below the store's root (`ab/cd/abcd…`), the same on every backend."""
    if not SHA256_HEX.match(sha256):
        raise ValueError(f"not a sha256 hex digest: {sha256!r}")
    return f"{sha256[:2]}/{sha256[2:4]}/{sha256}"


@dataclass(frozen=True)
class StoredBlob:
    """One blob as a listing finds it: `changed` is when it was last stored (gc ages blobs by it)."""

    sha256: str
    size: int
    changed: float


class BlobStore(ABC):
    """Where blobs live, by sha256. Writes go through a local temp file (TempBlob) on every backend, so an
    upload is bounded, hashed and checked before the store sees a byte of it."""

    def __init__(self, data_dir: Path, min_free: int = 0) -> None:
        self.tmp = data_dir / "tmp"
        self.min_free = min_free
        self.tmp.mkdir(parents=True, exist_ok=True)

    def temp(self, limit: int | None = None) -> TempBlob:
        return TempBlob(self.tmp, limit, self.min_free)

    @abstractmethod
    def commit(self, blob: TempBlob) -> str:
        """Make a finished temp blob visible under its sha256 (once for identical bytes); return the sha256."""

    @abstractmethod
    def exists(self, sha256: str) -> bool:
        """Whether the blob is stored."""

    @abstractmethod
    def size(self, sha256: str) -> int | None:
        """The blob's length, None when it is not stored."""

    @abstractmethod
    def open(self, sha256: str) -> io.BufferedReader:
        """The blob for reading (seekable); FileNotFoundError when it is not stored."""

    @abstractmethod
    def delete(self, sha256: str) -> None:
        """Remove the blob (garbage collection only)."""

    @abstractmethod
    def listing(self) -> Iterator[StoredBlob]:
        """Every stored blob."""

    @abstractmethod
    def healthy(self) -> bool:
        """Whether the store can be read and written right now."""

    def local_file(self, sha256: str) -> Path | None:
        """The blob's own file where the backend keeps one on this machine (for sendfile and nginx)."""
        return None

    def presigned_url(self, sha256: str, download_name: str) -> str | None:
        """A time-limited URL a client may fetch the blob from directly, where the backend is set to give one."""
        return None

    @contextmanager
    def local_copy(self, sha256: str) -> Iterator[Path]:
        """The blob as a file on this machine for as long as the block runs (archives are read at random)."""
        path = self.local_file(sha256)
        if path is not None:
            yield path
            return
        blob = self.temp()
        try:
            with self.open(sha256) as source:
                shutil.copyfileobj(source, blob, 1024 * 1024)
            blob.flush()
            yield blob.path
        finally:
            blob.discard()

    def abandoned_temp(self) -> list[Path]:
        """Temp files whose writer is gone (crashed, killed): nobody holds their lock. Nobody ever will again
        (a writer locks only the file it has just created), so they stay abandoned once found."""
        found = []
        with _directory_lock(self.tmp, fcntl.LOCK_EX):
            for path in self.tmp.glob(f"{TEMP_PREFIX}*"):
                try:
                    fd = os.open(path, os.O_RDONLY)
                except FileNotFoundError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    found.append(path)
                except BlockingIOError:
                    continue  # a live writer holds it
                finally:
                    os.close(fd)
        return found

    def sweep_temp(self) -> int:
        """Remove the temp files of writers that died mid-write; live uploads in other workers keep theirs."""
        removed = 0
        for path in self.abandoned_temp():
            path.unlink(missing_ok=True)
            removed += 1
        return removed

    def put_bytes(self, data: bytes) -> str:
        blob = self.temp()
        try:
            blob.write(data)
            return self.commit(blob)
        finally:
            blob.discard()


class LocalBlobStore(BlobStore):
    """Blobs as files under data_dir/blobs, renamed into place from the temp directory beside it."""

    def __init__(self, data_dir: Path, min_free: int = 0) -> None:
        super().__init__(data_dir, min_free)
        self.root = data_dir / "blobs"
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, sha256: str) -> Path:
        return self.root / blob_key(sha256)

    def commit(self, blob: TempBlob) -> str:
        """Move a finished temp blob to its content address; identical bytes already stored are kept once.
        Renamed while still open, so its writer's lock covers it until it has left the temp area.

        A stored blob carries no time of its own (mtime 0): nginx dates and validates the downloads it sends
        by mtime, which would tell any reader when some repository, a private one too, last stored the same
        bytes. Setting it moves the ctime, which garbage collection reads instead (maintenance.check)."""
        blob.finish()
        sha256 = blob.sha256
        final = self.path(sha256)
        if final.is_file():
            blob.discard()
        else:
            with out_of_space_is_507():
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(blob.path, final)
                fsync_dir(final.parent)
        os.utime(final, (0, 0))
        blob.committed = True
        blob.close()
        return sha256

    def exists(self, sha256: str) -> bool:
        return self.path(sha256).is_file()

    def size(self, sha256: str) -> int | None:
        try:
            return self.path(sha256).stat().st_size
        except FileNotFoundError:
            return None

    def open(self, sha256: str) -> io.BufferedReader:
        return self.path(sha256).open("rb")

    def delete(self, sha256: str) -> None:
        self.path(sha256).unlink(missing_ok=True)

    def listing(self) -> Iterator[StoredBlob]:
        for path in self.root.glob("*/*/*"):
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            # ctime: a blob's mtime is always 0 (commit)
            yield StoredBlob(path.name, stat.st_size, stat.st_ctime)

    def healthy(self) -> bool:
        try:
            with tempfile.NamedTemporaryFile(dir=self.tmp, prefix="health-"):
                return self.root.is_dir()
        except OSError:
            return False

    def local_file(self, sha256: str) -> Path | None:
        return self.path(sha256)


def fsync_dir(path: Path) -> None:
    """Make a rename (or a new entry) in `path` durable: the directory's own metadata is written separately."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
