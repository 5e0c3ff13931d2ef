"""X-PyPI-Last-Serial on Simple API pages, for mirroring tools: the project's change counter on project pages,
the repository's on its root index, on 200s and 304s alike; none on a group's pages (no one counter says
when a merge of independent members changed)."""

from __future__ import annotations

from pathlib import Path

import pytest

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
