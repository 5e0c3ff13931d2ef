"""The blob store's interface on both backends (local files, an S3-compatible bucket), and what only the
S3 backend does: multipart uploads in bounded memory, ranged reads, a store that stops answering."""

from __future__ import annotations

import hashlib
import io
import os
import time
import tracemalloc
from pathlib import Path

import pytest

from pypilite.storage import BlobStore, LocalBlobStore, blob_key
from pypilite.storage_s3 import PART_BYTES, PART_THREADS, StorageUnavailable
from tests.s3server import CREDENTIALS, S3Server

MB = 1024 * 1024


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> BlobStore:
    if request.param == "local":
        return LocalBlobStore(tmp_path)
    server: S3Server = request.getfixturevalue("s3_server")
    return server.store(tmp_path, server.new_bucket(), prefix="blobs/")


def test_commit_then_read_back(store: BlobStore) -> None:
    blob = store.temp()
    blob.write(b"hello ")
    blob.write(b"world")
    sha = store.commit(blob)
    assert sha == hashlib.sha256(b"hello world").hexdigest()
    assert store.exists(sha) and store.size(sha) == 11
    with store.open(sha) as fh:
        assert fh.read() == b"hello world"
    with store.local_copy(sha) as path:
        assert path.read_bytes() == b"hello world"
    assert list(store.tmp.iterdir()) == []  # the spooled temp file is gone once the blob is stored


def test_missing_blob(store: BlobStore) -> None:
    absent = "0" * 64
    assert not store.exists(absent) and store.size(absent) is None
    with pytest.raises(FileNotFoundError):
        store.open(absent)


def test_identical_bytes_once_and_listing(store: BlobStore) -> None:
    first = store.put_bytes(b"same")
    assert store.put_bytes(b"same") == first
    other = store.put_bytes(b"other")
    listed = {found.sha256: found for found in store.listing()}
    assert set(listed) == {first, other}
    assert listed[first].size == 4 and listed[first].changed > time.time() - 600
    store.delete(first)
    assert not store.exists(first) and {found.sha256 for found in store.listing()} == {other}


def test_seek_reads_a_range(store: BlobStore) -> None:
    data = os.urandom(3 * MB)
    sha = store.put_bytes(data)
    with store.open(sha) as fh:
        fh.seek(2 * MB + 5)
        assert fh.read(10) == data[2 * MB + 5:2 * MB + 15]
        fh.seek(-3, io.SEEK_END)
        assert fh.read() == data[-3:]


def test_healthy(store: BlobStore) -> None:
    assert store.healthy()


def test_keys_are_content_addressed_under_the_prefix(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    s3_server.client().put_object(Bucket=bucket, Key="blobs/not-a-blob", Body=b"x")  # another tool's key
    store = s3_server.store(tmp_path, bucket, prefix="blobs/")
    sha = store.put_bytes(b"content")
    assert sorted(s3_server.keys(bucket)) == [f"blobs/{blob_key(sha)}", "blobs/not-a-blob"]
    assert [found.sha256 for found in store.listing()] == [sha]  # gc never sees keys that are not blobs


def test_large_upload_is_multipart_in_bounded_memory(s3_server: S3Server, tmp_path: Path) -> None:
    """Streamed in parts from the spooled file: the peak of Python's allocations stays near a few parts,
    whatever the file's size."""
    bucket = s3_server.new_bucket()
    store = s3_server.store(tmp_path, bucket)
    blob = store.temp()
    chunk = os.urandom(MB)
    size = 12 * PART_BYTES
    for _ in range(size // MB):
        blob.write(chunk)
    tracemalloc.start()
    try:
        sha = store.commit(blob)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < (PART_THREADS + 2) * PART_BYTES < size // 2, peak
    head = s3_server.client().head_object(Bucket=bucket, Key=blob_key(sha))
    assert head["ContentLength"] == size and head["ETag"].strip('"').endswith("-12")  # twelve parts


def test_storing_stored_bytes_again_sends_nothing_but_dates_them(s3_server: S3Server, tmp_path: Path) -> None:
    """The second of two nodes storing the same bytes finds them under their key; their date moves, so gc
    (which spares blobs stored within the hour) cannot take them between the store and the row."""
    bucket = s3_server.new_bucket()
    store = s3_server.store(tmp_path, bucket)
    sha = store.put_bytes(b"fetched once")
    before = next(store.listing()).changed
    time.sleep(1.1)  # S3 dates objects to the second
    sent = []
    real = store.client.upload_file
    store.client.upload_file = lambda *args, **kwargs: sent.append(args) or real(*args, **kwargs)
    assert store.put_bytes(b"fetched once") == sha
    assert sent == [] and next(store.listing()).changed > before


def test_presigned_url_only_when_configured(s3_server: S3Server, tmp_path: Path) -> None:
    bucket = s3_server.new_bucket()
    plain = s3_server.store(tmp_path, bucket)
    sha = plain.put_bytes(b"signed")
    assert plain.presigned_url(sha, "x.whl") is None
    url = s3_server.store(tmp_path, bucket, presigned=True).presigned_url(sha, "x.whl")
    assert url is not None and url.startswith(s3_server.endpoint) and "Signature=" in url
    assert CREDENTIALS["AWS_SECRET_ACCESS_KEY"] not in url


def test_store_unreachable_is_a_one_line_503(tmp_path: Path, own_s3_server: S3Server) -> None:
    server = own_s3_server
    bucket = server.new_bucket()
    store = server.store(tmp_path, bucket)
    sha = store.put_bytes(b"before")
    server.stop()
    assert not store.healthy()
    for attempt in (lambda: store.put_bytes(b"after"), lambda: store.exists(sha), lambda: store.open(sha),
                    lambda: list(store.listing())):
        with pytest.raises(StorageUnavailable) as raised:
            attempt()
        assert raised.value.status == 503 and "\n" not in raised.value.message
        assert server.endpoint not in raised.value.message and bucket not in raised.value.message
    assert list(store.tmp.iterdir()) == []  # nothing of the refused upload left behind
