"""An S3-compatible server on loopback for the s3 backend's tests: moto's, in a process of its own, so that a
test can stop it mid-request and pypilite only ever speaks the plain S3 API to it."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import boto3
import pytest

if TYPE_CHECKING:
    from pypilite.storage_s3 import S3BlobStore

CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing-key", "AWS_SECRET_ACCESS_KEY": "testing-secret",
               "AWS_DEFAULT_REGION": "us-east-1"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class S3Server:
    def __init__(self, log: Path) -> None:
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> S3Server:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                             "-p", str(self.port)], stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return self
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"moto server did not start; see {self.log}")

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait(10)
            self.process = None

    def client(self):  # noqa: ANN201 - boto3's clients have no types
        return boto3.session.Session().client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                                              aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
                                              aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"])

    def new_bucket(self) -> str:
        name = f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str) -> list[str]:
        found = self.client().list_objects_v2(Bucket=bucket).get("Contents", [])
        return [item["Key"] for item in found]

    def settings(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """A server's environment for this store: the backend in PYPILITE_* variables, credentials in AWS_*."""
        return {"PYPILITE_STORAGE_BACKEND": "s3", "PYPILITE_STORAGE_BUCKET": bucket,
                "PYPILITE_STORAGE_PREFIX": prefix, "PYPILITE_STORAGE_ENDPOINT": self.endpoint, **CREDENTIALS}

    def raw_config(self, bucket: str, prefix: str = "") -> dict[str, str]:
        """The [storage] keys for an in-process index, credentials included."""
        return {"backend": "s3", "bucket": bucket, "prefix": prefix, "endpoint": self.endpoint,
                "region": "us-east-1", "access_key_id": CREDENTIALS["AWS_ACCESS_KEY_ID"],
                "secret_access_key": CREDENTIALS["AWS_SECRET_ACCESS_KEY"]}

    def store(self, data_dir: Path, bucket: str, prefix: str = "", **kwargs) -> S3BlobStore:
        from pypilite.storage_s3 import S3BlobStore

        config = self.raw_config(bucket, prefix)
        return S3BlobStore(data_dir, bucket, prefix=prefix, endpoint=self.endpoint, region="us-east-1",
                           access_key_id=config["access_key_id"], secret_access_key=config["secret_access_key"],
                           **kwargs)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    server = S3Server(tmp_path_factory.mktemp("moto") / "moto.log").start()
    yield server
    server.stop()


@pytest.fixture
def own_s3_server(tmp_path: Path) -> Iterator[S3Server]:
    """A store of the test's own, which it may stop; stopped in any case when the test ends."""
    server = S3Server(tmp_path / "own-moto.log").start()
    yield server
    server.stop()
