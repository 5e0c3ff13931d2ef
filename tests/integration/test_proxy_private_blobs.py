"""An upstream page that names the sha256 of a private repository's wheel (and of its METADATA), against the
real server, with pypilite sending files itself and behind X-Accel: the proxy never hands out the private
bytes, to anyone who asks it, but asks its own upstream, which answers other bytes or nothing (502)."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import Iterator
from contextlib import closing

import pytest
import requests

from tests.conftest import basic
from tests.distfactory import metadata_text, wheel_bytes
from tests.integration.conftest import LiveServer, described, start_server, stop_server, twine_form
from tests.upstream import Dist, Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
SECRET_TEXT = "PRIVATE-README-do-not-leak"
PRIVATE_METADATA = metadata_text("inhouse", "1.0").replace("A long description.", SECRET_TEXT)
PRIVATE = wheel_bytes("inhouse", "1.0", metadata=PRIVATE_METADATA)
PRIVATE_NAME = "inhouse-1.0-py3-none-any.whl"
PRIVATE_SHA256 = hashlib.sha256(PRIVATE).hexdigest()
PRIVATE_METADATA_SHA256 = hashlib.sha256(PRIVATE_METADATA.encode()).hexdigest()
ACCEL = "/_blobs/"


def bait(project: str, **overrides: str) -> Dist:
    """An upstream file whose page declares the private wheel's hashes; its own bytes are another wheel."""
    dist = wheel(project, "1.0")
    dist.declared_sha256, dist.declared_metadata_sha256 = PRIVATE_SHA256, PRIVATE_METADATA_SHA256
    for key, value in overrides.items():
        setattr(dist, key, value)
    return dist


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    dists = [bait("bait"), bait("bait-gone", url="../../files/nothing-here.whl"), wheel("plain", "1.0")]
    served = Upstream(tmp_path_factory.mktemp("upstream"), dists, json_api=True).start()
    yield served
    served.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn-accel", "app-accel"])
def server(request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory) -> Iterator[LiveServer]:
    mode, _, accel = request.param.partition("-")
    repositories = [{"name": "secret", "repository_type": "hosted", "public": False},
                    {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2},
                    {"name": "all", "repository_type": "group", "members": ["secret", "pypi"],
                     "upload_to": "secret"}]
    live = start_server(mode, tmp_path_factory.mktemp(request.param), repositories,
                        settings={"PYPILITE_SERVER_X_ACCEL_REDIRECT": ACCEL} if accel else None)
    body, content_type = twine_form(PRIVATE_NAME, PRIVATE)
    uploaded = requests.post(f"{live.url}/secret/", data=body, timeout=30,
                             headers={"Content-Type": content_type, **basic("admin", live.admin_password)})
    assert uploaded.status_code == 200, uploaded.text
    yield live
    stop_server(live.process)


def file_url(server: LiveServer, repo: str, project: str, auth: tuple[str, str] | None = None) -> str:
    page = f"{server.simple(repo)}{project}/"
    [entry] = requests.get(page, headers={"Accept": JSON}, auth=auth, timeout=30).json()["files"]
    assert entry["hashes"]["sha256"] == PRIVATE_SHA256 or project == "plain"
    return requests.compat.urljoin(page, entry["url"])


def fetched(server: LiveServer, repo: str) -> set[str]:
    with closing(sqlite3.connect(server.data_dir / "pypilite.db")) as db:
        return {sha for (sha,) in db.execute("SELECT f.sha256 FROM fetched_blob f JOIN repository r "
                                             "ON r.id = f.repository_id WHERE r.name = ?", (repo,))}


@pytest.mark.parametrize("project", ["bait", "bait-gone"])
def test_a_page_naming_a_private_blob_gets_the_upstream_s_answer_not_the_blob(server: LiveServer,
                                                                             upstream: Upstream, project: str) -> None:
    url = file_url(server, "pypi", project)
    [dist] = [d for d in upstream.dists if d.project == project]
    asked = upstream.log.count(dist.link.rsplit("/", 1)[-1])
    for suffix in ("", ".metadata"):
        for headers in ({}, {"X-Pypilite-Decision": "1"}):  # the second: nginx asking whether it may send
            response = requests.get(url + suffix, headers=headers, timeout=30)
            assert "X-Accel-Redirect" not in response.headers
            assert PRIVATE not in response.content and SECRET_TEXT.encode() not in response.content
            if not headers:
                assert response.status_code == 502, response.text
                assert response.text.count("\n") == 1 and "upstream of repository 'pypi'" in response.text
    assert upstream.log.count(dist.link.rsplit("/", 1)[-1]) > asked  # its own upstream was asked
    assert fetched(server, "pypi") & {PRIVATE_SHA256, PRIVATE_METADATA_SHA256} == set()
    # The private file itself is untouched, and still served to those who may read it.
    admin = ("admin", server.admin_password)
    private = requests.get(file_url(server, "all", "inhouse", admin), auth=admin, timeout=30)
    assert private.status_code == 200
    assert private.content == PRIVATE or ACCEL in private.headers.get("X-Accel-Redirect", "")


def test_a_file_the_proxy_fetched_itself_is_handed_out_and_described(server: LiveServer, upstream: Upstream) -> None:
    [dist] = [d for d in upstream.dists if d.project == "plain"]
    url = file_url(server, "pypi", "plain")
    first = requests.get(url, timeout=30)
    assert first.status_code == 200 and first.content == dist.data
    again = requests.get(url, timeout=30)
    if server.env.get("PYPILITE_SERVER_X_ACCEL_REDIRECT"):  # nginx may send it now: it was fetched and checked
        assert again.headers["X-Accel-Redirect"].startswith(ACCEL) and again.content == b""
    else:
        assert again.content == dist.data
    assert dist.sha256 in fetched(server, "pypi")
    info = described(server, dist.sha256)
    assert info and (server.data_dir / "blobs" / info[:2] / info[2:4] / info).read_bytes() == dist.metadata


def test_the_proxy_s_ui_page_never_shows_the_private_readme(server: LiveServer) -> None:
    file_url(server, "pypi", "bait")  # cached page, nothing fetched
    page = requests.get(f"{server.url}/ui/pypi/bait/", timeout=30)
    assert page.status_code == 200 and SECRET_TEXT not in page.text
