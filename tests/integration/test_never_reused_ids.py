"""Pages after deletions, across two gunicorn workers with the pages warm in both: a page is never answered
with (or confirmed by a 304 as) the page of something deleted before it, whatever ids the database hands out."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
# Each request is a new connection, which gunicorn hands to whichever worker accepts first: this many make
# every page warm in both workers.
WARM_ROUNDS = 20


@pytest.fixture
def server(tmp_path) -> Iterator[LiveServer]:
    live = start_server("gunicorn", tmp_path, [{"name": "local", "repository_type": "hosted"}], workers=2)
    yield live
    stop_server(live.process)


def _admin(server: LiveServer) -> tuple[str, str]:
    return ("admin", server.admin_password)


def _upload(server: LiveServer, repo: str, name: str) -> None:
    data = wheel_bytes(name, "1.0")
    response = requests.post(f"{server.url}/{repo}/", auth=_admin(server), timeout=30, data={
        ":action": "file_upload", "protocol_version": "1", "name": name, "version": "1.0",
        "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()},
        files={"content": (f"{name.replace('-', '_')}-1.0-py3-none-any.whl", data)})
    assert response.status_code == 200, response.text


def _warm(server: LiveServer, url: str, auth=None) -> str:
    """Ask for a page until both workers have rendered it; its ETag."""
    etags = {requests.get(url, headers=JSON, auth=auth, timeout=10).headers["ETag"] for _ in range(WARM_ROUNDS)}
    assert len(etags) == 1
    return etags.pop()


def _every_answer(server: LiveServer, url: str, stale_etag: str) -> list[tuple[int, str]]:
    """What both workers answer, plain and when asked to confirm the stale page's ETag."""
    answers = []
    for _ in range(WARM_ROUNDS):
        plain = requests.get(url, headers=JSON, timeout=10)
        conditional = requests.get(url, headers={**JSON, "If-None-Match": stale_etag}, timeout=10)
        answers += [(plain.status_code, plain.text), (conditional.status_code, conditional.text)]
    return answers


def test_a_deleted_private_repository_never_shows_through_a_new_public_one(server: LiveServer) -> None:
    api = f"{server.url}/api/v1/repos"
    created = requests.post(api, json={"name": "secret", "repository_type": "hosted", "public": False},
                            auth=_admin(server), timeout=10)
    assert created.status_code == 201
    _upload(server, "secret", "secret-plans")
    index_etag = _warm(server, f"{server.url}/secret/simple/", _admin(server))
    page_etag = _warm(server, f"{server.url}/secret/simple/secret-plans/", _admin(server))

    assert requests.delete(f"{api}/secret", auth=_admin(server), timeout=10).status_code == 204
    assert requests.post(api, json={"name": "open", "repository_type": "hosted"}, auth=_admin(server),
                         timeout=10).status_code == 201
    _upload(server, "open", "open-tool")

    for status, body in _every_answer(server, f"{server.url}/open/simple/", index_etag):
        assert status == 200 and "open-tool" in body and "secret-plans" not in body
    for status, body in _every_answer(server, f"{server.url}/open/simple/open-tool/", page_etag):
        assert status == 200 and "open_tool" in body and "secret" not in body


def test_a_project_deleted_with_its_last_release_never_lends_its_page(server: LiveServer) -> None:
    _upload(server, "local", "first-one")
    page_etag = _warm(server, f"{server.url}/local/simple/first-one/")
    deleted = requests.delete(f"{server.url}/api/v1/repos/local/projects/first-one/1.0", auth=_admin(server),
                              timeout=10)
    assert deleted.status_code == 204
    _upload(server, "local", "second-one")
    for status, body in _every_answer(server, f"{server.url}/local/simple/second-one/", page_etag):
        assert status == 200 and "second_one" in body and "first" not in body


def test_a_public_page_s_etag_tells_nothing_of_private_activity(server: LiveServer) -> None:
    """Ids and serials count every project and change, private ones included: an ETag is a keyed hash of them,
    so a reader learns neither how many projects there are nor when a private one was made."""
    api = f"{server.url}/api/v1/repos"
    assert requests.post(api, json={"name": "hidden", "repository_type": "hosted", "public": False},
                         auth=_admin(server), timeout=10).status_code == 201
    _upload(server, "local", "probe-one")
    for name in ("private-a", "private-b", "private-c"):
        _upload(server, "hidden", name)
    _upload(server, "local", "probe-two")
    tags = [requests.get(f"{server.url}/local/simple/{name}/", headers=JSON, timeout=10).headers["ETag"]
            for name in ("probe-one", "probe-two")]
    for tag in tags:  # the hash, then what the URL and the Accept header already say (depth, representation)
        assert re.fullmatch(r'"[0-9a-f]{32}\.[0-9]+\.json1"', tag), tag
