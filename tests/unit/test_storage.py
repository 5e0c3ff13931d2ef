"""The blob store: content addressing, atomic commits, nothing left in tmp."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from pypilite.storage import BlobStore, BlobTooLarge


def test_commit_moves_bytes_to_their_address(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
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
    store = BlobStore(tmp_path)
    assert store.put_bytes(b"same") == store.put_bytes(b"same")
    assert len([p for p in store.root.rglob("*") if p.is_file()]) == 1
    assert list(store.tmp.iterdir()) == []


def test_discard_removes_the_temp_file(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob = store.temp()
    blob.write(b"partial")
    blob.discard()
    assert list(store.tmp.iterdir()) == []


def test_limit_stops_the_stream(tmp_path: Path) -> None:
    store = BlobStore(tmp_path)
    blob = store.temp(limit=4)
    blob.write(b"1234")
    with pytest.raises(BlobTooLarge):
        blob.write(b"5")
    blob.discard()
    assert list(store.tmp.iterdir()) == []


@pytest.mark.parametrize("bad", ["../../etc/passwd", "ABC", "0" * 63, "g" * 64])
def test_paths_only_for_digests(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError):
        BlobStore(tmp_path).path(bad)


def test_sweep_removes_only_abandoned_temp_files(tmp_path: Path) -> None:
    import os
    store = BlobStore(tmp_path)
    old, young = store.temp(), store.temp()
    os.utime(old.path, (0, 0))
    assert store.sweep_temp(older_than=3600) == 1
    assert not old.path.exists() and young.path.exists()
    young.discard()
