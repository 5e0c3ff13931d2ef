"""Downloads handed to nginx (server.x_accel_redirect): pypilite decides who may read which blob, nginx sends
it. The live test with a real nginx is in tests/integration/test_nginx.py."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from tests.conftest import Index, basic
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
LOCATION = "/_pypilite_blobs/"


@pytest.fixture
def accel(tmp_path: Path) -> Index:
    return Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}})


def file_url(index: Index, repo: str, project: str, **kwargs) -> tuple[str, dict]:
    file = index.get(f"/{repo}/simple/{project}/", accept=JSON, **kwargs).json["files"][0]
    return f"/files/{repo}/{file['hashes']['sha256']}/{file['filename']}", file


def test_a_download_names_the_blob_for_nginx_and_sends_no_body(accel: Index) -> None:
    data = wheel_bytes("demo", "1.0")
    assert accel.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    url, file = file_url(accel, "local", "demo")
    response = accel.get(url)
    sha256 = hashlib.sha256(data).hexdigest()
    assert response.status_code == 200 and response.data == b""
    assert response.headers["X-Accel-Redirect"] == f"{LOCATION}{sha256[:2]}/{sha256[2:4]}/{sha256}"
    assert (accel.data_dir / "blobs" / response.headers["X-Accel-Redirect"].removeprefix(LOCATION)).read_bytes() == data
    assert response.headers["Content-Type"] == "application/octet-stream"
    assert 'filename="demo-1.0-py3-none-any.whl"' in response.headers["Content-Disposition"]
    assert "immutable" in response.headers["Cache-Control"] and "public" in response.headers["Cache-Control"]
    metadata = accel.get(url + ".metadata")
    assert metadata.headers["X-Accel-Redirect"].endswith(file["core-metadata"]["sha256"])


def test_nothing_is_handed_over_to_those_who_may_not_read_it(tmp_path: Path) -> None:
    index = Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
        {"name": "team", "repository_type": "hosted", "public": False}]})
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="team").status_code == 200
    url, _ = file_url(index, "team", "demo", headers=index.auth)
    refused = index.get(url)
    assert refused.status_code == 401 and "X-Accel-Redirect" not in refused.headers
    allowed = index.get(url, headers=index.auth)
    assert "X-Accel-Redirect" in allowed.headers and "private" in allowed.headers["Cache-Control"]
    assert "X-Accel-Redirect" not in index.get(url.replace("demo-1.0", "other-1.0")).headers


def test_a_missing_blob_is_a_clear_500_not_an_nginx_404(accel: Index) -> None:
    assert accel.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    url, file = file_url(accel, "local", "demo")
    sha256 = file["hashes"]["sha256"]
    (accel.data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256).unlink()
    response = accel.get(url)
    assert response.status_code == 500 and "X-Accel-Redirect" not in response.headers
    assert b"restore it from a backup" in response.data


def test_a_proxy_streams_its_first_fetch_and_hands_over_the_rest(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "up", [wheel("tool", "1.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url}]})
        url, file = file_url(index, "up", "tool")
        first = index.get(url)
        assert "X-Accel-Redirect" not in first.headers
        assert hashlib.sha256(first.data).hexdigest() == file["hashes"]["sha256"]
        assert index.get(url).headers["X-Accel-Redirect"].endswith(file["hashes"]["sha256"])
    finally:
        upstream.stop()


def _token(index: Index) -> tuple[int, dict[str, str]]:
    created = index.client.post("/api/v1/tokens", json={}, headers=index.auth)
    assert created.status_code == 201
    return created.json["id"], basic("__token__", created.json["token"])


REVOCATIONS = {
    "file deleted": ("DELETE", "/api/v1/repos/local/files/demo-1.0-py3-none-any.whl", None, True, True),
    "release deleted": ("DELETE", "/api/v1/repos/local/projects/demo/1.0", None, True, True),
    "project quarantined": ("PUT", "/api/v1/repos/local/projects/demo/status", {"status": "quarantined"}, True, True),
    "repository made private": ("PATCH", "/api/v1/repos/local", {"public": False}, True, False),
    "token revoked": ("DELETE", "/api/v1/tokens/{token}", None, False, True),
}


@pytest.mark.parametrize("method, path, body, anonymous_refused, token_refused", REVOCATIONS.values(),
                         ids=REVOCATIONS.keys())
def test_the_next_decision_after_a_revocation_is_no(accel: Index, method: str, path: str, body: dict | None,
                                                     anonymous_refused: bool, token_refused: bool) -> None:
    """nginx asks again once its short cache of yeses expires (deploy/nginx.conf): the answer it gets then
    is already no, however often the same question was answered yes before, with credentials or without."""
    assert accel.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    url, _ = file_url(accel, "local", "demo")
    token_id, token = _token(accel)
    for _ in range(3):  # the worker's memo of repeated answers holds them now
        for headers in ({}, token):
            assert "X-Accel-Redirect" in accel.get(url, headers=headers).headers
            assert "X-Accel-Redirect" in accel.get(url + ".metadata", headers=headers).headers
    revoked = accel.client.open(path.format(token=token_id), method=method, json=body, headers=accel.auth)
    assert revoked.status_code in (200, 204)
    for headers, refused in (({}, anonymous_refused), (token, token_refused)):
        for answer in (accel.get(url, headers=headers), accel.get(url + ".metadata", headers=headers)):
            assert ("X-Accel-Redirect" not in answer.headers) == refused
            assert answer.status_code in ((401, 404) if refused else (200,))


def test_no_tree_of_public_files_is_kept(accel: Index) -> None:
    """Older versions kept links to public files in data_dir/public for nginx to send without asking; nothing
    would keep them in step with the database now, so a start removes them."""
    leftover = accel.data_dir / "public" / "current" / "files" / "local" / ("a" * 64) / "demo-1.0-py3-none-any.whl"
    leftover.parent.mkdir(parents=True)
    leftover.write_bytes(b"a file someone took back")
    Index(accel.data_dir, {"server": {"x_accel_redirect": LOCATION}})
    assert not (accel.data_dir / "public").exists()
    assert accel.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    url, _ = file_url(accel, "local", "demo")
    assert "X-Accel-Redirect" in accel.get(url).headers and not (accel.data_dir / "public").exists()
