"""The upstream fails in the middle of a proxied file, against the real server: the client's download fails,
nothing is cached (no blob, no temp file, no lock, `check` clean), and once the upstream is back the next
request fetches the file again and gets it byte-identical."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from pypilite.repositories.proxy_files import READ_AHEAD
from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, described, start_server, stop_server
from tests.upstream import Dist, Upstream

JSON = "application/vnd.pypi.simple.v1+json"
REMOTE_TIMEOUT = 2
BROKEN_DOWNLOAD = (requests.exceptions.ChunkedEncodingError, requests.ConnectionError)


def bulky(version: str, size: int = 4 * READ_AHEAD) -> Dist:
    """A wheel of several upstream chunks, so the upstream can stop with some of it sent: half of it is more
    than pypilite reads before it answers, so the answer has started when the upstream fails."""
    filename = f"bulky-{version}-py3-none-any.whl"
    return Dist("bulky", filename, wheel_bytes("bulky", version, payload=os.urandom(size)))


def proxy_repositories(upstream: Upstream) -> list[dict]:
    return [{"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url,
             "remote_timeout": REMOTE_TIMEOUT}]


@pytest.fixture(params=["app", "gunicorn"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream(tmp_path / "upstream", [bulky("1.0")], json_api=True).start()
    server = start_server(request.param, tmp_path, proxy_repositories(upstream))
    yield server, upstream
    stop_server(server.process)
    upstream.stop()


def file_url(server: LiveServer, project: str) -> tuple[str, str]:
    [entry] = requests.get(f"{server.simple('pypi')}{project}/", headers={"Accept": JSON}, timeout=30).json()["files"]
    return requests.compat.urljoin(f"{server.simple('pypi')}{project}/", entry["url"]), entry["hashes"]["sha256"]


def assert_nothing_cached(server: LiveServer, sha256: str) -> None:
    blob = server.data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256
    assert not blob.exists()
    assert list((server.data_dir / "tmp").iterdir()) == []
    assert list((server.data_dir / "locks").iterdir()) == []
    server.assert_check_clean()


@pytest.mark.parametrize("failure", ["dies", "hangs"])
def test_upstream_failing_mid_file_fails_the_download_and_the_next_request_refetches(served, failure: str) -> None:
    server, upstream = served
    [dist] = upstream.dists
    url, sha256 = file_url(server, "bulky")
    assert sha256 == dist.sha256
    upstream.die_mid_body.add(dist.filename)
    # Dying: a moment's pause first, or the reset could overtake the headers in flight and make this a failed
    # request (a 502) instead of a download broken off. Hanging: silent past pypilite's read timeout.
    upstream.hold = 0.5 if failure == "dies" else REMOTE_TIMEOUT + 1

    with pytest.raises(BROKEN_DOWNLOAD):
        requests.get(url, timeout=60)
    assert upstream.half_sent.is_set()
    if failure == "dies":
        upstream.stop()  # and stays down while the state is inspected
    assert_nothing_cached(server, sha256)

    upstream.die_mid_body.clear()
    if failure == "dies":
        upstream.start()  # back on the same port
    again = requests.get(url, timeout=60)
    assert again.status_code == 200 and hashlib.sha256(again.content).hexdigest() == dist.sha256
    assert upstream.log.count(dist.filename) == 2
    assert requests.get(url, timeout=60).content == again.content  # kept now: served without the upstream
    assert upstream.log.count(dist.filename) == 2
    # The file, and the metadata the UI shows, taken out of it once the client had it all.
    assert described(server, dist.sha256)
    assert "checked 2 blobs: 0 missing, 0 corrupt" in server.assert_check_clean()
