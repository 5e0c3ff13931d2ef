"""The real server (`python app.py` and gunicorn) with its blobs in an S3-compatible bucket (moto's server on
loopback, spoken to with the plain S3 API only): real twine, pip and uv; a proxy's file cached in the bucket
and served by a second node without asking the upstream again; check, gc, health and backup; and the store
stopped mid-session: a one-line 503, nothing half-stored."""

from __future__ import annotations

import hashlib
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import (
    LiveServer,
    build,
    isolated_env,
    make_project,
    new_venv,
    run,
    start_server,
    stop_server,
    twine_form,
    uv,
)
from tests.s3server import S3Server
from tests.upstream import Upstream, wheel

PREFIX = "index/"


def key(sha256: str) -> str:
    """Where a blob lives in the bucket: named by its sha256, under the configured prefix."""
    return f"{PREFIX}{sha256[:2]}/{sha256[2:4]}/{sha256}"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    server = Upstream(tmp_path_factory.mktemp("upstream"), [wheel("upstream-lib", "1.0")], json_api=True).start()
    yield server
    server.stop()


def repositories(upstream: Upstream) -> list[dict]:
    return [{"name": "local", "repository_type": "hosted"},
            {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2},
            {"name": "all", "repository_type": "group", "members": ["local", "pypi"], "upload_to": "local"}]


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def node(request: pytest.FixtureRequest, s3_server: S3Server, upstream: Upstream,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    bucket = s3_server.new_bucket()
    server = start_server(request.param, tmp_path_factory.mktemp(f"s3-{request.param}"), repositories(upstream),
                          settings=s3_server.settings(bucket, PREFIX))
    server.bucket = bucket  # type: ignore[attr-defined]
    yield server
    stop_server(server.process)


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("dists")
    env = isolated_env(tmp / "home")
    return (build(make_project(tmp, "s3-utils", "1.0"), tmp / "utils", env)
            + build(make_project(tmp, "s3-app", "0.1", dependencies=("s3-utils>=1.0",)), tmp / "app", env))


def test_twine_uploads_and_pip_and_uv_install_from_the_bucket(node: LiveServer, s3_server: S3Server,
                                                              dists: list[Path], tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home")
    run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
         "--repository-url", f"{node.url}/local/", "-u", "admin", f"--password={node.admin_password}", *dists],
        env=env)
    keys = s3_server.keys(node.bucket)  # type: ignore[attr-defined]
    for dist in dists:
        assert key(hashlib.sha256(dist.read_bytes()).hexdigest()) in keys
    assert not (node.data_dir / "blobs").exists()
    python = new_venv(tmp_path / "venv", env)
    run([python, "-m", "pip", "install", "--index-url", node.simple("local"), "s3-app"], env=env)
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=env)
    run([uv(), "pip", "install", "--python", venv / "bin" / "python", "--index-url", node.simple(), "s3-app"],
        env=env)
    result = run([venv / "bin" / "python", "-c", "import s3_app, s3_utils; print(s3_utils.VERSION)"], env=env)
    assert result.stdout.strip() == "1.0"


def test_a_proxied_file_is_fetched_once_for_every_node(node: LiveServer, s3_server: S3Server, upstream: Upstream,
                                                       tmp_path: Path) -> None:
    """A second node on the same database and bucket finds the file under its sha256 key and serves it
    without asking the upstream."""
    page = requests.get(f"{node.simple('pypi')}upstream-lib/",
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=30).json()
    file = page["files"][0]
    asked = upstream.log.count(file["filename"])
    first = requests.get(requests.compat.urljoin(f"{node.simple('pypi')}upstream-lib/", file["url"]), timeout=30)
    assert hashlib.sha256(first.content).hexdigest() == file["hashes"]["sha256"]
    assert upstream.log.count(file["filename"]) == asked + 1
    assert key(file["hashes"]["sha256"]) in s3_server.keys(node.bucket)  # type: ignore[attr-defined]
    other = start_server("app", tmp_path, repositories(upstream), data_dir=node.data_dir,
                         settings=s3_server.settings(node.bucket, PREFIX))  # type: ignore[attr-defined]
    try:
        again = requests.get(requests.compat.urljoin(f"{other.simple('pypi')}upstream-lib/", file["url"]),
                             timeout=30)
        assert again.content == first.content
        assert upstream.log.count(file["filename"]) == asked + 1
    finally:
        stop_server(other.process)


def test_check_gc_health_and_backup(node: LiveServer) -> None:
    node.assert_check_clean()
    assert node.command("check", "--gc").returncode == 0
    health = requests.get(f"{node.url}/health", timeout=10)
    assert health.status_code == 200 and health.json()["storage"] == "ok"
    refused = node.command("backup", str(node.data_dir.parent / "backup"))
    assert refused.returncode != 0 and "versioning or replication" in refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1


def test_the_store_stopped_mid_session(tmp_path: Path, upstream: Upstream, own_s3_server: S3Server) -> None:
    """Uploads and downloads fail with a one-line 503 while the store is away; no row names a missing
    object, no temp file stays, and /health says which part fails."""
    store = own_s3_server
    bucket = store.new_bucket()
    server = start_server("gunicorn", tmp_path, repositories(upstream), settings=store.settings(bucket))
    try:
        auth = ("admin", server.admin_password)
        wheel_dist = wheel("kept", "1.0")
        body, content_type = twine_form(wheel_dist.filename, wheel_dist.data)
        assert requests.post(f"{server.url}/local/", data=body, auth=auth, timeout=30,
                             headers={"Content-Type": content_type}).status_code == 200
        url = requests.get(f"{server.simple('local')}kept/", timeout=30,
                           headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"][0]["url"]
        url = requests.compat.urljoin(f"{server.simple('local')}kept/", url)
        store.stop()
        lost = wheel("lost", "1.0")
        body, content_type = twine_form(lost.filename, lost.data)
        refused = requests.post(f"{server.url}/local/", data=body, auth=auth, timeout=60,
                                headers={"Content-Type": content_type})
        assert refused.status_code == 503 and "blob store is unavailable" in refused.text
        assert len(refused.text.strip().splitlines()) == 1 and store.endpoint not in refused.text
        download = requests.get(url, timeout=60)
        assert download.status_code == 503 and "blob store is unavailable" in download.text
        health = requests.get(f"{server.url}/health", timeout=30)
        assert health.status_code == 503 and health.json()["failing"] == ["storage"]
        with closing(sqlite3.connect(server.data_dir / "pypilite.db")) as db:
            files = [row[0] for row in db.execute("SELECT filename FROM file")]
        assert files == [wheel_dist.filename]
        assert list((server.data_dir / "tmp").glob("upload-*")) == []
    finally:
        stop_server(server.process)
