"""The blob store: content addressing, atomic commits, nothing left in tmp."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pypilite import locks, storage
from pypilite.errors import InsufficientStorage
from pypilite.locks import FileLock
from pypilite.storage import FREE_CHECK_BYTES, BlobTooLarge, LocalBlobStore

ROOT = Path(__file__).resolve().parents[2]


def test_commit_moves_bytes_to_their_address(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    blob = store.temp()
    for chunk in (b"abc", b"def"):
        blob.write(chunk)
    sha = store.commit(blob)
    assert sha == hashlib.sha256(b"abcdef").hexdigest()
    assert store.path(sha).read_bytes() == b"abcdef"
    assert store.path(sha).parent.parent.name == sha[:2]
    assert list(store.tmp.iterdir()) == []
    assert blob.digests()["md5"] == hashlib.md5(b"abcdef").hexdigest()
    assert blob.digests()["blake2_256"] == hashlib.blake2b(b"abcdef", digest_size=32).hexdigest()


def test_identical_bytes_are_kept_once(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    assert store.put_bytes(b"same") == store.put_bytes(b"same")
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 1
    assert list(store.tmp.iterdir()) == []


def test_a_stored_blob_carries_no_time_of_its_own(tmp_path: Path) -> None:
    """nginx dates downloads by mtime: it must not say when these bytes were stored, first or again."""
    store = LocalBlobStore(tmp_path)
    path = store.path(store.put_bytes(b"same"))
    assert path.stat().st_mtime == 0
    os.utime(path)  # as a blob stored by an older pypilite is dated
    store.put_bytes(b"same")
    assert path.stat().st_mtime == 0


def test_discard_removes_the_temp_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    blob = store.temp()
    blob.write(b"partial")
    blob.discard()
    assert list(store.tmp.iterdir()) == []


def test_limit_stops_the_stream(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    blob = store.temp(limit=4)
    blob.write(b"1234")
    with pytest.raises(BlobTooLarge):
        blob.write(b"5")
    blob.discard()
    assert list(store.tmp.iterdir()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 63, "g" * 64])
def test_paths_only_for_digests(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        LocalBlobStore(tmp_path).path(bad)


def _die_writing(directory: Path, what: str) -> None:
    """A process killed with SIGKILL in the middle of writing: a temp blob, or while holding a lock."""
    code = {
        "blob": "from pypilite.storage import LocalBlobStore\n"
                f"LocalBlobStore(Path({str(directory)!r})).temp().write(b'half a file')\n",
        "lock": "from pypilite.locks import FileLock\n"
                f"FileLock(Path({str(directory)!r}) / 'locks', 'blob/x').acquire(1)\n",
    }[what]
    script = f"import os, signal\nfrom pathlib import Path\n{code}os.kill(os.getpid(), signal.SIGKILL)\n"
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, timeout=60)
    assert result.returncode == -signal.SIGKILL


def test_sweep_removes_temp_files_whose_writer_died_and_keeps_live_ones(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    live = store.temp()
    live.write(b"still arriving")
    live.flush()
    _die_writing(tmp_path, "blob")
    [dead] = [p for p in store.tmp.iterdir() if p != live.path]
    assert dead.read_bytes() == b"half a file"
    empty = store.tmp / "upload-empty.part"  # its writer died before writing a byte
    empty.touch()

    assert sorted(store.abandoned_temp()) == sorted([dead, empty])
    assert store.sweep_temp() == 2
    assert list(store.tmp.iterdir()) == [live.path]
    assert store.commit(live) == hashlib.sha256(b"still arriving").hexdigest()


def test_a_sweep_waits_for_writers_between_creating_and_locking_their_file(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    with storage._directory_lock(store.tmp, fcntl.LOCK_SH):  # a writer in that moment
        newborn = store.tmp / "upload-newborn.part"
        newborn.touch()
        sweeper = threading.Thread(target=store.sweep_temp)
        sweeper.start()
        sweeper.join(0.5)
        assert sweeper.is_alive() and newborn.exists()
        held = os.open(newborn, os.O_RDONLY)
        fcntl.flock(held, fcntl.LOCK_EX)
    sweeper.join(10)
    assert not sweeper.is_alive() and newborn.exists()
    os.close(held)


def test_a_lock_left_by_a_dead_holder_neither_blocks_nor_survives_a_sweep(tmp_path: Path) -> None:
    _die_writing(tmp_path, "lock")
    assert len(list((tmp_path / "locks").iterdir())) == 1
    held = FileLock(tmp_path / "locks", "blob/y").acquire(1)
    with FileLock(tmp_path / "locks", "blob/x").acquire(timeout=0):  # the dead holder's lock is free
        pass
    _die_writing(tmp_path, "lock")
    assert locks.sweep(tmp_path / "locks") == 1
    assert list((tmp_path / "locks").iterdir()) == [held.path]  # a live holder's stays
    held.release()
    assert locks.sweep(tmp_path / "locks") == 0 and list((tmp_path / "locks").iterdir()) == []


def test_a_write_that_would_leave_less_than_the_floor_free_is_refused(tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    blob = LocalBlobStore(tmp_path, min_free=free + 1).temp()  # already below it: the first check refuses
    blob.write(b"x" * (FREE_CHECK_BYTES - 1))
    with pytest.raises(InsufficientStorage, match="storage.min_free_mb"):
        blob.write(b"x")
    blob.discard()
    unguarded = LocalBlobStore(tmp_path).temp()
    unguarded.write(b"x" * (FREE_CHECK_BYTES + 1))
    unguarded.discard()
    assert list((tmp_path / "tmp").iterdir()) == []
