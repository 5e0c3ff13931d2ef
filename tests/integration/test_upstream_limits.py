"""An upstream that controls a size, a time, a header or a name, against the real server: a gzip page that
decodes past server.max_upstream_page_mb, pages and files that trickle in within each read timeout, a
Content-Length that contradicts the page, more headers than HTTP allows, and filenames no distribution has.
Each is a one-line 502 or 504 (or the cached page, marked stale), soon; nothing unverified is kept."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
import requests

from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.upstream import Dist, Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
TTL = 1
REMOTE_TIMEOUT = 1
CAP_MB = 1


def hostile_names() -> list[Dist]:
    plain = wheel("names", "1.0")
    return [plain] + [Dist("names", name, plain.data) for name in (
        'names-1.0-py3-none-a"y.whl', "names-1.0-py3-none-any;x.whl", "names-1.0-py3-none-a y.whl",
        "names-1.0-py3-none-<b>.whl")]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    dists = [wheel(project, "1.0") for project in ("bomb", "grows", "trickle", "slow-file", "long-claim",
                                                   "many-headers", "odd-values", "labelled-gzip")]
    dists.append(wheel("odd-values", "2.0"))
    served = Upstream(tmp_path_factory.mktemp("upstream"), dists + hostile_names(), json_api=True).start()
    yield served
    served.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def server(request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory) -> Iterator[LiveServer]:
    repositories = [{"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "cache_ttl": TTL,
                     "remote_timeout": REMOTE_TIMEOUT}]
    live = start_server(request.param, tmp_path_factory.mktemp(f"limits-{request.param}"), repositories,
                        settings={"PYPILITE_SERVER_MAX_UPSTREAM_PAGE_MB": str(CAP_MB)})
    yield live
    stop_server(live.process)


def page(server: LiveServer, project: str) -> requests.Response:
    return requests.get(f"{server.simple('pypi')}{project}/", headers={"Accept": JSON}, timeout=30)


def one_line(response: requests.Response, status: int, *words: str) -> None:
    assert response.status_code == status, (response.status_code, response.text)
    assert response.text.count("\n") == 1 and all(word in response.text for word in words), response.text


def swell(upstream: Upstream, project: str) -> None:
    """Make the project's JSON page decode to several times the cap: spaces, which gzip packs a thousandfold."""
    [dist] = [d for d in upstream.dists if d.project == project]
    dist.requires_python = " " * (3 * CAP_MB * 1024 * 1024) + ">=3"


def test_a_gzip_page_decoding_past_the_cap_is_a_502_or_the_stale_page(server: LiveServer, upstream: Upstream) -> None:
    upstream.gzip_pages = True
    try:
        assert page(server, "grows").status_code == 200  # cached while small
        swell(upstream, "bomb")
        swell(upstream, "grows")
        one_line(page(server, "bomb"), 502, "server.max_upstream_page_mb", "not cached")
        time.sleep(TTL + 0.5)
        stale = page(server, "grows")
        assert stale.status_code == 200 and "server.max_upstream_page_mb" in stale.headers["X-Pypilite-Stale"]
    finally:
        upstream.gzip_pages = False
        for dist in upstream.dists:
            dist.requires_python = ""


def test_a_page_trickling_in_is_cut_off(server: LiveServer, upstream: Upstream) -> None:
    upstream.drip.add("/simple/trickle/")  # a byte every 0.2 s: each read within the timeout, the page never
    one_line(page(server, "trickle"), 504, "did not send its page within")


def test_a_file_trickling_in_is_cut_off(server: LiveServer, upstream: Upstream) -> None:
    response = page(server, "slow-file")
    [entry] = response.json()["files"]
    upstream.drip.add(f"/files/{entry['filename']}")
    url = requests.compat.urljoin(response.url, entry["url"])
    one_line(requests.get(url, timeout=30), 504, "sent a file slower than")
    assert not list(server.data_dir.glob(f"blobs/*/*/{entry['hashes']['sha256']}"))


def test_a_content_length_that_contradicts_the_page_is_a_502(server: LiveServer, upstream: Upstream) -> None:
    response = page(server, "long-claim")
    [entry] = response.json()["files"]
    upstream.claimed_length[entry["filename"]] = entry["size"] + 100
    url = requests.compat.urljoin(response.url, entry["url"])
    one_line(requests.get(url, timeout=30), 502, f"where its page declared {entry['size']}")


def test_more_headers_than_http_allows_is_a_502(server: LiveServer, upstream: Upstream) -> None:
    upstream.headers = {f"X-Filler-{i}": "x" * 100 for i in range(150)}
    try:
        one_line(page(server, "many-headers"), 502, "malformed answer")
    finally:
        upstream.headers = {}


def test_filenames_no_distribution_has_are_not_offered(server: LiveServer) -> None:
    offered = [entry["filename"] for entry in page(server, "names").json()["files"]]
    assert offered == ["names-1.0-py3-none-any.whl"]


def test_values_no_index_would_send_are_dropped_not_a_500(server: LiveServer, upstream: Upstream) -> None:
    """A size past any database column, a sha256 or metadata hash that is not hex: the file, or the value, goes."""
    original = upstream.json_page

    def odd(project: str) -> bytes | None:
        body = original(project)
        if project != "odd-values" or body is None:
            return body
        listed = json.loads(body)
        listed["files"][0].update({"size": 2**70, "core-metadata": {"sha256": "Q" * 64}})
        listed["files"][1]["hashes"] = {"sha256": "z" * 64}
        return json.dumps(listed).encode()

    upstream.json_page = odd  # type: ignore[method-assign]
    try:
        response = page(server, "odd-values")
        assert response.status_code == 200, response.text
        [entry] = response.json()["files"]
        assert entry["filename"] == "odd_values-1.0-py3-none-any.whl" and not entry.get("core-metadata")
        url = requests.compat.urljoin(response.url, entry["url"])
        assert requests.get(url, timeout=30).status_code == 200
        assert requests.get(url + ".metadata", timeout=30).status_code == 404
    finally:
        upstream.json_page = original  # type: ignore[method-assign]


def test_a_file_is_kept_as_sent_whatever_its_content_encoding_says(server: LiveServer, upstream: Upstream) -> None:
    """As pip does: a .tar.gz some servers label gzip-encoded is not unpacked, and nothing a file's encoding
    claims is inflated, so a small answer never becomes a huge one."""
    [dist] = [d for d in upstream.dists if d.project == "labelled-gzip"]
    response = page(server, "labelled-gzip")
    url = requests.compat.urljoin(response.url, response.json()["files"][0]["url"])
    upstream.headers = {"Content-Encoding": "gzip"}
    try:
        downloaded = requests.get(url, timeout=30, headers={"Accept-Encoding": "identity"})
    finally:
        upstream.headers = {}
    assert downloaded.status_code == 200 and downloaded.content == dist.data
