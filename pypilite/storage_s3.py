"""Blobs in an S3-compatible bucket (AWS S3, MinIO, Ceph, Garage), through boto3 and the plain S3 API only.

An upload is spooled and hashed in a local temp file first (TempBlob), then sent under its content-addressed
key with multipart upload in parts of PART_BYTES, so a key only ever holds bytes that hash to its name and
memory stays flat whatever the size. Reads are ranged GETs, streamed. A store that does not answer is a
one-line 503 (StorageUnavailable), and nothing is half-stored: the row is written only after the object.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.exceptions
from boto3.s3.transfer import TransferConfig
from botocore.config import Config as BotoConfig

from pypilite.errors import UserError
from pypilite.storage import SHA256_HEX, BlobStore, StoredBlob, TempBlob, blob_key

log = logging.getLogger(__name__)

PART_BYTES = 8 * 1024 * 1024
# Parts in flight at once: what an upload holds in memory is about PART_BYTES times this.
PART_THREADS = 2
PRESIGNED_SECONDS = 300
READ_CHUNK = 1024 * 1024
# What a missing key answers, by operation: GET says NoSuchKey, HEAD only its status.
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})


class StorageUnavailable(UserError):
    """The object store did not answer, or refused pypilite: the request may succeed once it is back."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message)


def _unavailable(exc: Exception, doing: str) -> StorageUnavailable:
    """One line for the client and the log, naming the operation and the store's own error code at most:
    never the endpoint, the bucket or a credential."""
    code = exc.response.get("Error", {}).get("Code", "") if isinstance(exc, botocore.exceptions.ClientError) else ""
    log.error("object store failed while %s: %s", doing, code or type(exc).__name__)
    return StorageUnavailable(f"the blob store is unavailable ({code or type(exc).__name__}) while {doing}; "
                              f"nothing was changed, try again later")


_FAILURES = (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError)


def _missing(exc: Exception) -> bool:
    return isinstance(exc, botocore.exceptions.ClientError) and \
        str(exc.response.get("Error", {}).get("Code", "")) in _MISSING


class S3BlobStore(BlobStore):
    def __init__(self, data_dir: Path, bucket: str, prefix: str = "", endpoint: str = "", region: str = "",
                 access_key_id: str = "", secret_access_key: str = "", presigned: bool = False,
                 min_free: int = 0) -> None:
        super().__init__(data_dir, min_free)
        self.bucket = bucket
        self.prefix = prefix
        self.presigned = presigned
        # Empty settings fall back to boto3's own chain: AWS_* variables, ~/.aws, an instance role.
        self.client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint or None, region_name=region or None,
            aws_access_key_id=access_key_id or None, aws_secret_access_key=secret_access_key or None,
            config=BotoConfig(connect_timeout=5, read_timeout=60, retries={"max_attempts": 2, "mode": "standard"},
                              s3={"addressing_style": "path"} if endpoint else None))
        self.transfer = TransferConfig(multipart_threshold=PART_BYTES, multipart_chunksize=PART_BYTES,
                                       max_concurrency=PART_THREADS, io_chunksize=256 * 1024)

    def key(self, sha256: str) -> str:
        return self.prefix + blob_key(sha256)

    def commit(self, blob: TempBlob) -> str:
        """Send a finished temp blob under its sha256's key, hashed before a byte left this machine. Bytes
        already stored are not sent again, but their object is copied onto itself, so that its date (which
        gc ages unreferenced blobs by) says they were just stored again."""
        blob.finish()
        sha256 = blob.sha256
        key = self.key(sha256)
        try:
            if self.exists(sha256):
                self.client.copy_object(Bucket=self.bucket, Key=key, CopySource={"Bucket": self.bucket, "Key": key},
                                        MetadataDirective="REPLACE", ContentType="application/octet-stream")
            else:
                self.client.upload_file(str(blob.path), self.bucket, key, Config=self.transfer,
                                        ExtraArgs={"ContentType": "application/octet-stream"})
        except _FAILURES as exc:
            raise _unavailable(exc, "storing a file") from None
        except boto3.exceptions.S3UploadFailedError as exc:
            raise _unavailable(exc, "storing a file") from None
        blob.discard()
        return sha256

    def _head(self, sha256: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self.client.head_object(Bucket=self.bucket, Key=self.key(sha256))
            return head
        except _FAILURES as exc:
            if _missing(exc):
                return None
            raise _unavailable(exc, "looking up a file") from None

    def exists(self, sha256: str) -> bool:
        return self._head(sha256) is not None

    def size(self, sha256: str) -> int | None:
        head = self._head(sha256)
        return int(head["ContentLength"]) if head is not None else None

    def open(self, sha256: str) -> io.BufferedReader:
        size = self.size(sha256)
        if size is None:
            raise FileNotFoundError(f"blob {sha256} is not in the store")
        return io.BufferedReader(_RangedReader(self, self.key(sha256), size), READ_CHUNK)

    def delete(self, sha256: str) -> None:
        try:
            self.client.delete_object(Bucket=self.bucket, Key=self.key(sha256))
        except _FAILURES as exc:
            raise _unavailable(exc, "removing a file") from None

    def listing(self) -> Iterator[StoredBlob]:
        try:
            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                               Prefix=self.prefix):
                for item in page.get("Contents", ()):
                    name = item["Key"].removeprefix(self.prefix)
                    sha256 = name.rpartition("/")[2]
                    if SHA256_HEX.match(sha256) and name == blob_key(sha256):  # not the bucket's other keys
                        yield StoredBlob(sha256, int(item["Size"]), item["LastModified"].timestamp())
        except _FAILURES as exc:
            raise _unavailable(exc, "listing files") from None

    def healthy(self) -> bool:
        try:
            self.client.head_bucket(Bucket=self.bucket)
        except _FAILURES:
            return False
        return True

    def presigned_url(self, sha256: str, download_name: str) -> str | None:
        if not self.presigned:
            return None
        url: str = self.client.generate_presigned_url(
            "get_object", ExpiresIn=PRESIGNED_SECONDS,
            Params={"Bucket": self.bucket, "Key": self.key(sha256),
                    "ResponseContentDisposition": f'inline; filename="{download_name}"'})
        return url

    def read_range(self, key: str, start: int, end: int | None) -> Any:
        """The object's bytes from `start` (to `end`, inclusive), as a stream."""
        span = f"bytes={start}-{'' if end is None else end}"
        try:
            return self.client.get_object(Bucket=self.bucket, Key=key, Range=span)["Body"]
        except _FAILURES as exc:
            if _missing(exc):
                raise FileNotFoundError(f"{key} is not in the store") from None
            raise _unavailable(exc, "reading a file") from None


class _RangedReader(io.RawIOBase):
    """A seekable view of one object: a GET from the current position is opened on the first read after a
    seek, so a Range request or an archive's central directory costs one request, never the whole object."""

    def __init__(self, store: S3BlobStore, key: str, size: int) -> None:
        self.store = store
        self.key = key
        self.length = size
        self.position = 0
        self.body: Any = None

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        target = {io.SEEK_SET: offset, io.SEEK_CUR: self.position + offset, io.SEEK_END: self.length + offset}[whence]
        if target != self.position:
            self._drop()
            self.position = max(0, target)
        return self.position

    def readinto(self, buffer: Any) -> int:
        if self.position >= self.length:
            return 0
        if self.body is None:
            self.body = self.store.read_range(self.key, self.position, None)
        try:
            data = self.body.read(min(len(buffer), READ_CHUNK))
        except _FAILURES as exc:
            self._drop()
            raise _unavailable(exc, "reading a file") from None
        if not data:
            self._drop()
            return 0
        buffer[:len(data)] = data
        self.position += len(data)
        return len(data)

    def _drop(self) -> None:
        if self.body is not None:
            self.body.close()
            self.body = None

    def close(self) -> None:
        self._drop()
        super().close()
