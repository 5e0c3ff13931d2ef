"""An index whose blobs live in an S3-compatible bucket, in-process: uploads, downloads (whole, ranged,
conditional, redirected), a proxy's cache, check and gc, health, and the store going away mid-session."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from pypilite import maintenance
from tests.conftest import ENGINE, Index, call, database_url
from tests.distfactory import sdist_bytes, wheel_bytes
from tests.s3server import S3Server
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
PREFIX = "pypilite/"


def key(sha256: str) -> str:
    """Where a blob lives in the bucket: named by its sha256, under the configured prefix."""
    return f"{PREFIX}{sha256[:2]}/{sha256[2:4]}/{sha256}"


def s3_index(tmp_path: Path, server: S3Server, bucket: str, **storage) -> Index:
    return Index(tmp_path / "data", {"storage": {"data_dir": str(tmp_path / "data"),
                                                 **server.raw_config(bucket, PREFIX), **storage}})


def file_url(index: Index, repo: str, project: str) -> tuple[str, dict]:
    file = index.get(f"/{repo}/simple/{project}/", accept=JSON).json["files"][0]
    return "/" + file["url"].split("://", 1)[-1].split("/", 1)[-1].lstrip("./"), file


@pytest.fixture
def bucket(s3_server: S3Server) -> str:
    return s3_server.new_bucket()


def test_uploads_and_downloads_go_through_the_bucket(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    index = s3_index(tmp_path, s3_server, bucket)
    data = wheel_bytes("demo", "1.0")
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    assert index.upload("demo-1.0.tar.gz", sdist_bytes("demo", "1.0")).status_code == 200
    sha256 = hashlib.sha256(data).hexdigest()
    assert key(sha256) in s3_server.keys(bucket)
    assert not (index.data_dir / "blobs").exists() and index.temp_files() == []
    url, file = file_url(index, "local", "demo")
    whole = index.get(url)
    assert whole.status_code == 200 and whole.data == data and whole.headers["Content-Length"] == str(len(data))
    assert whole.headers["ETag"] == f'"{sha256}"' and "immutable" in whole.headers["Cache-Control"]
    ranged = index.get(url, headers={"Range": "bytes=10-19"})
    assert ranged.status_code == 206 and ranged.data == data[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    assert index.get(url, headers={"If-None-Match": f'"{sha256}"'}).status_code == 304
    assert index.get(url, headers={"Range": f"bytes={len(data) + 5}-"}).status_code == 416
    metadata = index.get(url + ".metadata")
    assert hashlib.sha256(metadata.data).hexdigest() == file["core-metadata"]["sha256"]
    assert index.get("/local/pypi/demo/json").json["info"]["summary"]  # from the metadata in the bucket
    assert index.get("/ui/local/demo/").status_code == 200


def test_check_and_gc_on_the_bucket(tmp_path: Path, s3_server: S3Server, bucket: str,
                                    monkeypatch: pytest.MonkeyPatch) -> None:
    index = s3_index(tmp_path, s3_server, bucket)
    blobs = index.app.extensions["pypilite"].blobs
    for version in ("1.0", "2.0"):
        assert index.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version)).status_code == 200
    assert index.run(maintenance.check, blobs).clean
    response = index.client.delete("/api/v1/repos/local/projects/demo/1.0", headers=index.auth)
    assert response.status_code == 204
    report = index.run(maintenance.check, blobs, gc=True)
    assert len(report.unreferenced) == 2 and report.removed == 0  # too young to collect
    monkeypatch.setattr(maintenance, "GC_GRACE_SECONDS", -60)  # an hour later
    report = index.run(maintenance.check, blobs, gc=True)
    assert report.removed == 2 and index.run(maintenance.check, blobs).unreferenced == []
    victim = index.file_rows()[0].sha256
    s3_server.client().put_object(Bucket=bucket, Key=key(victim), Body=b"rot")
    assert index.run(maintenance.check, blobs).corrupt
    s3_server.client().delete_object(Bucket=bucket, Key=key(victim))
    assert index.run(maintenance.check, blobs).missing


def test_a_proxied_file_is_cached_in_the_bucket(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    upstream = Upstream(tmp_path / "upstream", [wheel("demo", "1.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {
            "storage": {"data_dir": str(tmp_path / "data"), **s3_server.raw_config(bucket, PREFIX)},
            "repository": [{"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url,
                            "remote_timeout": 1}],
            "server": {"default_repository": "pypi"}})
        url, file = file_url(index, "pypi", "demo")
        first = index.get(url)
        assert first.status_code == 200 and hashlib.sha256(first.data).hexdigest() == file["hashes"]["sha256"]
        assert key(file["hashes"]["sha256"]) in s3_server.keys(bucket)
    finally:
        upstream.stop()
    again = index.get(url, headers={"Range": "bytes=0-3"})  # from the bucket, the upstream gone
    assert again.status_code == 206 and again.data == first.data[:4]


def test_downloads_redirect_to_a_presigned_url_when_configured(tmp_path: Path, s3_server: S3Server,
                                                                bucket: str) -> None:
    index = s3_index(tmp_path, s3_server, bucket, redirect="presigned")
    data = wheel_bytes("demo", "1.0")
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    url, _ = file_url(index, "local", "demo")
    response = index.get(url)
    assert response.status_code == 302 and response.headers["Cache-Control"] == "private, no-store"
    location = response.headers["Location"]
    assert location.startswith(s3_server.endpoint)
    assert requests.get(location, timeout=10).content == data
    assert index.get("/local/simple/demo/", accept=JSON).status_code == 200  # pages are pypilite's own


def test_x_accel_redirect_names_the_same_key(tmp_path: Path, s3_server: S3Server, bucket: str) -> None:
    index = Index(tmp_path / "data", {"storage": {"data_dir": str(tmp_path / "data"),
                                                  **s3_server.raw_config(bucket, PREFIX)},
                                      "server": {"x_accel_redirect": "/_s3/"}})
    data = wheel_bytes("demo", "1.0")
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    url, _ = file_url(index, "local", "demo")
    sha256 = hashlib.sha256(data).hexdigest()
    assert index.get(url).headers["X-Accel-Redirect"] == f"/_s3/{sha256[:2]}/{sha256[2:4]}/{sha256}"


def test_the_store_going_away_is_a_clear_503_and_nothing_half_stored(tmp_path: Path,
                                                                     own_s3_server: S3Server) -> None:
    server = own_s3_server
    index = s3_index(tmp_path, server, server.new_bucket())
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    url, _ = file_url(index, "local", "demo")
    server.stop()
    refused = index.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"))
    assert refused.status_code == 503 and "blob store is unavailable" in refused.get_data(as_text=True)
    assert server.endpoint not in refused.get_data(as_text=True)
    assert [row.version for row in index.file_rows()] == ["1.0"] and index.temp_files() == []
    download = index.get(url)
    assert download.status_code == 503 and "blob store is unavailable" in download.get_data(as_text=True)
    health = index.get("/health")
    assert health.status_code == 503 and health.json["storage"] == "failing"


def test_import_check_and_backup_commands_on_the_bucket(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        s3_server: S3Server, bucket: str) -> None:
    config = tmp_path / "pypilite.toml"
    storage = {"data_dir": str(tmp_path / "data"), **s3_server.raw_config(bucket, PREFIX)}
    config.write_text("[storage]\n" + "".join(f'{key} = "{value}"\n' for key, value in storage.items()))
    (tmp_path / "data").mkdir()
    (tmp_path / "dl").mkdir()
    for version in ("1.0", "2.0"):
        (tmp_path / "dl" / f"demo-{version}-py3-none-any.whl").write_bytes(wheel_bytes("demo", version))
    code, out, _ = call(capsys, "import", str(tmp_path / "dl"), "--repo", "local", "--config", str(config))
    assert code == 0 and out.splitlines()[-1].startswith("2 imported"), out
    assert len([key for key in s3_server.keys(bucket) if key.startswith(PREFIX)]) >= 2
    code, out, _ = call(capsys, "check", "--gc", "--config", str(config))
    assert code == 0 and " 0 missing, 0 corrupt" in out, out
    code, _, err = call(capsys, "backup", str(tmp_path / "backup"), "--config", str(config))
    assert code == 1 and "versioning or replication" in err and len(err.strip().splitlines()) == 1


def test_copy_blobs_moves_a_local_index_into_the_bucket(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                                        s3_server: S3Server, bucket: str) -> None:
    """A one-box index grows into a bucket: every blob its database names is copied, verified by sha256; a
    corrupt one is reported and left out; the index then serves from the bucket."""
    local = Index(tmp_path / "data")
    for version in ("1.0", "2.0"):
        assert local.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version)).status_code == 200
    rows = local.file_rows()
    rotten = next(row.sha256 for row in rows if row.version == "2.0")
    (tmp_path / "data" / "blobs" / rotten[:2] / rotten[2:4] / rotten).write_bytes(b"rot")
    source = tmp_path / "local.toml"
    # The same database for the server and the command (its own, under --db=postgresql).
    db = f'[database]\nurl = "{database_url(tmp_path / "data")}"\n' if ENGINE == "postgresql" else ""
    source.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n' + db)
    target = tmp_path / "s3.toml"
    storage = {"data_dir": str(tmp_path / "data"), **s3_server.raw_config(bucket, PREFIX)}
    target.write_text("[storage]\n" + "".join(f'{name} = "{value}"\n' for name, value in storage.items()) + db)
    code, out, err = call(capsys, "copy-blobs", str(target), "--config", str(source))
    assert code == 1 and f"corrupt: {rotten}" in out and "1 corrupt" in out, out + err
    assert key(rotten) not in s3_server.keys(bucket)
    good = next(row for row in rows if row.version == "1.0")
    assert {key(sha) for sha in (good.sha256, good.metadata_sha256, good.info_sha256)} <= set(s3_server.keys(bucket))
    (tmp_path / "data" / "blobs" / rotten[:2] / rotten[2:4] / rotten).write_bytes(wheel_bytes("demo", "2.0"))
    code, out, _ = call(capsys, "copy-blobs", str(target), "--config", str(source))
    assert code == 0 and "copied 1 blobs" in out, out
    code, out, _ = call(capsys, "check", "--config", str(target))
    assert code == 0 and " 0 missing, 0 corrupt" in out, out
    moved = s3_index(tmp_path, s3_server, bucket)
    url, _ = file_url(moved, "local", "demo")
    assert moved.get(url).status_code == 200
