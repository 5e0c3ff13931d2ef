"""X-PyPI-Last-Serial on Simple API pages, for mirroring tools: the project's change counter on project pages,
the repository's on its root index, on 200s and 304s alike; none on a group's pages (no one counter says
when a merge of independent members changed)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

import pypilite
from tests.conftest import Index
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
SERIAL = "X-PyPI-Last-Serial"


def serial(index: Index, url: str, accept: str = JSON, **headers: str) -> tuple[int, str | None]:
    response = index.get(url, accept=accept, headers=headers)
    return response.status_code, response.headers.get(SERIAL)


@pytest.mark.parametrize("accept", [JSON, "text/html"])
@pytest.mark.parametrize("url", ["/local/simple/demo/", "/local/simple/", "/pypi/simple/"])
def test_pages_carry_their_serial_on_200_and_304(index: Index, url: str, accept: str) -> None:
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    first = index.get(url, accept=accept)
    assert first.status_code == 200 and first.headers[SERIAL].isdigit()
    for coding in ("identity", "gzip"):
        etag = index.get(url, accept=accept, headers={"Accept-Encoding": coding}).headers["ETag"]
        assert serial(index, url, accept, **{"If-None-Match": etag, "Accept-Encoding": coding}) == (
            304, first.headers[SERIAL])


def test_a_project_serial_moves_with_every_change_to_its_page(index: Index) -> None:
    url = "/local/simple/demo/"
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    seen = [int(serial(index, url)[1])]
    index.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"))
    seen.append(int(serial(index, url)[1]))
    yanked = index.client.post("/api/v1/repos/local/projects/demo/2.0/yank", json={"reason": "broken"},
                               headers=index.auth)
    assert yanked.status_code in (200, 204)
    seen.append(int(serial(index, url)[1]))
    index.upload("other-1.0-py3-none-any.whl", wheel_bytes("other", "1.0"))  # another project's change
    seen.append(int(serial(index, url)[1]))
    assert seen[0] < seen[1] < seen[2] == seen[3]


def test_the_index_serial_moves_when_a_project_appears(index: Index) -> None:
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    before = int(serial(index, "/local/simple/")[1])
    index.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"))
    assert int(serial(index, "/local/simple/")[1]) == before
    index.upload("other-1.0-py3-none-any.whl", wheel_bytes("other", "1.0"))
    assert int(serial(index, "/local/simple/")[1]) > before


@pytest.mark.parametrize("url", ["/all/simple/", "/all/simple/demo/", "/simple/demo/"])
def test_a_group_sends_no_serial(index: Index, url: str) -> None:
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    response = index.get(url, accept=JSON)
    assert response.status_code == 200 and SERIAL not in response.headers
    assert serial(index, url, **{"If-None-Match": response.headers["ETag"]}) == (304, None)


def test_a_proxy_sends_the_serial_of_its_cached_copy(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "up", [wheel("tool", "1.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"repository": [
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url}]})
        fetched = index.get("/up/simple/tool/", accept=JSON)
        assert fetched.status_code == 200 and fetched.headers[SERIAL].isdigit()
        assert serial(index, "/up/simple/tool/") == (200, fetched.headers[SERIAL])  # from the fresh cache
    finally:
        upstream.stop()


def page(index: Index, url: str) -> tuple[int, str | None, bytes]:
    response = index.get(url, accept=JSON)
    return response.status_code, response.headers.get("ETag"), response.data


def api(index: Index, method: str, url: str, body: dict | None = None) -> None:
    response = index.client.open(f"/api/v1/repos/{url}", method=method, json=body, headers=index.auth)
    assert response.status_code in (200, 204), response.data


def upload(index: Index, name: str, version: str) -> None:
    assert index.upload(f"{name}-{version}-py3-none-any.whl", wheel_bytes(name, version)).status_code == 200


# Every service that writes to a hosted repository, with the pages its write changes.
HOSTED_WRITES = {
    "upload to a project": (lambda index: upload(index, "demo", "3.0"), ["/local/simple/demo/"]),
    "upload of a project": (lambda index: upload(index, "other", "1.0"), ["/local/simple/"]),
    "yank": (lambda index: api(index, "POST", "local/projects/demo/2.0/yank", {"reason": "r"}),
             ["/local/simple/demo/"]),
    "status": (lambda index: api(index, "PUT", "local/projects/demo/status", {"status": "deprecated"}),
               ["/local/simple/demo/"]),
    "file deletion": (lambda index: api(index, "DELETE", "local/files/demo-2.0-py3-none-any.whl"),
                      ["/local/simple/demo/"]),
    "release deletion": (lambda index: api(index, "DELETE", "local/projects/demo/1.0"), ["/local/simple/demo/"]),
    "last release deletion": (lambda index: [api(index, "DELETE", f"local/projects/demo/{v}") for v in ("1.0", "2.0")],
                              ["/local/simple/", "/local/simple/demo/"]),
    "settings": (lambda index: api(index, "PATCH", "local", {"allow_overwrite": True}),
                 ["/local/simple/", "/local/simple/demo/"]),
}


@pytest.mark.parametrize("write", list(HOSTED_WRITES))
def test_every_hosted_write_moves_the_etags_of_the_pages_it_changes(index: Index, write: str) -> None:
    """A write that changes a page without moving its ETag leaves every client and worker cache holding the
    old page for good (settings count: a page may render differently under them)."""
    upload(index, "demo", "1.0")
    upload(index, "demo", "2.0")
    action, urls = HOSTED_WRITES[write]
    urls = urls + [url.replace("/local/", "/all/") for url in urls]
    before = {url: page(index, url) for url in urls}
    action(index)
    for url in urls:
        status, etag, body = page(index, url)
        assert etag != before[url][1] or status != before[url][0], url
        if write != "settings":
            assert (status, body) != (before[url][0], before[url][2]), f"{write} did not change {url}"


def test_every_proxy_write_moves_the_etags_of_the_pages_it_changes(tmp_path: Path) -> None:
    """Refreshing, learning a file's metadata by downloading it, and forgetting a project change pages."""
    from pypilite import repository_admin
    from pypilite.audit import Actor

    plain = wheel("tool", "1.0")
    plain.metadata = None  # the upstream offers no .metadata: the proxy offers the wheel's own once fetched
    upstream = Upstream(tmp_path / "up", [plain], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"repository": [
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url}]})
        repositories = index.app.extensions["pypilite"].repositories
        actor = Actor("test")

        def moved(url: str, action) -> None:
            before = page(index, url)
            action()
            after = page(index, url)
            assert after[:2] != before[:2] and after[2] != before[2], url

        assert page(index, "/up/simple/tool/")[0] == 200
        moved("/up/simple/tool/", lambda: index.get(f"/up/files/up/{plain.sha256}/{plain.filename}").data)
        upstream.dists.append(wheel("tool", "2.0"))
        moved("/up/simple/tool/",
              lambda: index.run(repository_admin.refresh_cached_project, repositories, "up", "tool", actor))
        moved("/up/simple/",
              lambda: index.run(repository_admin.forget_cached_project, repositories, "up", "tool", actor))
    finally:
        upstream.stop()


def test_no_write_moves_a_serial_by_hand() -> None:
    """serials.py is the one place a change counter moves: a write elsewhere calls it, so none forgets."""
    root = Path(pypilite.__file__).parent
    by_hand = [str(path.relative_to(root)) for path in root.rglob("*.py")
               if path.name != "serials.py" and re.search(r"serial\s*\+", path.read_text())]
    assert by_hand == []
