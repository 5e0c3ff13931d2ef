"""File URLs an upstream page names, against the real server: the proxy fetches only http(s), never a private
or loopback address other than remote_url's own host and port, checks every redirect, and stops a redirect
loop. Each refusal is a one-line 502 that names neither the address nor the URL, nothing is stored, and the
internal listeners the test runs are never contacted. And bytes that miss the declared sha256: a small file
(read whole before the answer starts) is a 502 too; a large one breaks off, and nothing is kept."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.upstream import Dist, Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
PRIVATE = "named a private or local address"
NOT_HTTP = "named a URL that is not http(s)"
LOOP = "redirected more than"


@pytest.fixture(scope="module")
def internal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    """Listeners an attacker would like to reach: one on another loopback address, one on the upstream's
    own address at another port."""
    tmp = tmp_path_factory.mktemp("internal")
    found = {"other-address": Upstream(tmp / "a", [], json_api=True, host="127.0.0.2").start(),
             "other-port": Upstream(tmp / "b", [], json_api=True).start()}
    yield found
    for listener in found.values():
        listener.stop()


def named(project: str, url: str) -> Dist:
    dist = wheel(project, "1.0")
    dist.url = url
    return dist


def mismatched(project: str, payload: int) -> Dist:
    """A wheel whose page declares another file's sha256 (its size is right)."""
    data = wheel_bytes(project, "1.0", payload=os.urandom(payload))
    return Dist(project, f"{project.replace('-', '_')}-1.0-py3-none-any.whl", data,
                declared_sha256=hashlib.sha256(data + b"!").hexdigest())


@pytest.fixture(scope="module")
def cases(internal: dict[str, Upstream]) -> dict[str, tuple[str, str]]:
    """Project -> (the URL its page names, the refusal expected)."""
    address, port = internal["other-address"].port, internal["other-port"].port
    return {
        "to-private": (f"http://127.0.0.2:{address}/files/x.whl", PRIVATE),
        "to-localhost": (f"http://localhost:{port}/files/x.whl", PRIVATE),
        "to-other-port": (f"http://127.0.0.1:{port}/files/x.whl", PRIVATE),
        "to-mapped": (f"http://[::ffff:127.0.0.2]:{address}/files/x.whl", PRIVATE),
        "to-any": (f"http://0.0.0.0:{port}/files/x.whl", PRIVATE),
        "to-file": ("file:///etc/passwd", NOT_HTTP),
        "to-ftp": ("ftp://127.0.0.1/x.whl", NOT_HTTP),
        "hop-private": ("../../go/private", PRIVATE),
        "hop-file": ("../../go/file", NOT_HTTP),
        "hop-loop": ("../../go/loop", LOOP),
    }


@pytest.fixture(scope="module")
def upstream(tmp_path_factory, internal, cases) -> Iterator[Upstream]:
    dists = [named(project, url) for project, (url, _) in cases.items()]
    dists += [named("hop-home", "../../go/home"), mismatched("small-bad", 1024),
              mismatched("large-bad", 3 * 1024 * 1024)]
    served = Upstream(tmp_path_factory.mktemp("upstream"), dists, json_api=True).start()
    hops = {"/go/private": f"http://127.0.0.2:{internal['other-address'].port}/files/x.whl",
            "/go/file": "file:///etc/passwd", "/go/loop": "/go/loop",
            "/go/home": "/files/hop_home-1.0-py3-none-any.whl"}
    served.redirects = {**hops, **{f"{path}.metadata": f"{target}.metadata" for path, target in hops.items()}}
    yield served
    served.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def server(request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory) -> Iterator[LiveServer]:
    repositories = [{"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2}]
    live = start_server(request.param, tmp_path_factory.mktemp(f"ssrf-{request.param}"), repositories)
    yield live
    stop_server(live.process)


def file_url(server: LiveServer, project: str) -> tuple[str, str]:
    page = f"{server.simple('pypi')}{project}/"
    [entry] = requests.get(page, headers={"Accept": JSON}, timeout=30).json()["files"]
    return requests.compat.urljoin(page, entry["url"]), entry["hashes"]["sha256"]


def assert_nothing_kept(server: LiveServer, sha256: str) -> None:
    assert not list(server.data_dir.glob(f"blobs/*/*/{sha256}"))
    assert list((server.data_dir / "tmp").iterdir()) == []


def test_file_urls_to_private_addresses_and_other_schemes_are_refused(server, upstream, internal, cases) -> None:
    for project, (_named_url, refusal) in cases.items():
        url, sha256 = file_url(server, project)
        for suffix in ("", ".metadata"):
            response = requests.get(url + suffix, timeout=30)
            assert response.status_code == 502, (project, response.status_code, response.text)
            assert response.text.count("\n") == 1 and refusal in response.text, (project, response.text)
            assert "127.0.0" not in response.text and "0.0.0.0" not in response.text
        assert_nothing_kept(server, sha256)
    for listener in internal.values():
        assert listener.log.requests == []


def test_a_redirect_within_the_upstream_is_followed(server, upstream) -> None:
    [dist] = [d for d in upstream.dists if d.project == "hop-home"]
    url, _ = file_url(server, "hop-home")
    response = requests.get(url, timeout=30)
    assert response.status_code == 200 and response.content == dist.data


def test_a_small_file_missing_its_sha256_is_a_one_line_502(server, upstream) -> None:
    url, sha256 = file_url(server, "small-bad")
    response = requests.get(url, timeout=30)
    assert response.status_code == 502, response.text
    assert response.text.count("\n") == 1 and "does not match its declared sha256" in response.text
    assert_nothing_kept(server, sha256)


def test_a_large_file_missing_its_sha256_breaks_off_and_is_not_kept(server, upstream) -> None:
    [dist] = [d for d in upstream.dists if d.project == "large-bad"]
    url, sha256 = file_url(server, "large-bad")
    with requests.get(url, stream=True, timeout=30) as response:
        assert response.status_code == 200  # streaming had begun: only breaking off can tell the client
        with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
            for _ in response.iter_content(64 * 1024):
                pass
    assert_nothing_kept(server, sha256)
    assert not list(server.data_dir.glob(f"blobs/*/*/{dist.sha256}"))
