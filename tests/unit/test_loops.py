"""Which upstream URLs name this server itself, judged from the URL alone."""

from __future__ import annotations

import socket

import pytest
import requests

from pypilite import loops
from pypilite.config import ServerConfig

SERVER = ServerConfig(host="0.0.0.0", port=8080)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/simple/", "http://localhost:8080/simple/", "http://LOCALHOST:8080/",
    "http://[::1]:8080/simple/", "http://0.0.0.0:8080/", "http://127.8.9.10:8080/", "http://x.localhost:8080/",
    "http://user:secret@127.0.0.1:8080/simple/", f"http://{socket.gethostname()}:8080/simple/",
    "http://[::ffff:127.0.0.1]:8080/",
])
def test_this_servers_own_addresses(url: str) -> None:
    assert loops.points_here(url, SERVER)


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8081/simple/", "http://localhost/simple/", "https://127.0.0.1/simple/",
    "http://mirror.example:8080/simple/", "http://10.0.0.1:8080/", "file:///srv/simple/", "not a url",
])
def test_other_addresses(url: str) -> None:
    assert not loops.points_here(url, SERVER)


def test_the_server_host_itself() -> None:
    assert loops.points_here("http://10.1.2.3:9000/simple/", ServerConfig(host="10.1.2.3", port=9000))


def test_the_marker_is_the_keys_own() -> None:
    mark = loops.marker(b"k" * 32)
    assert mark == loops.marker(b"k" * 32) != loops.marker(b"j" * 32)
    assert loops.is_own(mark, mark) and not loops.is_own(None, mark) and not loops.is_own(mark[:-1] + "x", mark)


def test_the_marker_goes_to_the_proxys_own_upstream_alone(monkeypatch) -> None:
    """Like its credentials: a host a page names (files elsewhere, provenance) never learns it."""
    from pypilite.upstream import Sessions, Upstream

    upstream = Upstream(Sessions(), "http://127.0.0.1:9/simple/", 5, "pypi", 2**20, {loops.HEADER: "m" * 32})
    sent: dict[str, dict[str, str]] = {}

    def get(url: str, headers: dict[str, str], **_kwargs) -> requests.Response:
        sent[url] = headers
        response = requests.Response()
        response.status_code, response.url = 200, url
        return response

    monkeypatch.setattr(upstream.session, "get", get)
    monkeypatch.setattr(upstream, "_check_proxied", lambda *_args: None)
    upstream._get("http://127.0.0.1:9/simple/demo/", {"Accept": "text/html"})
    upstream._get("https://files.example/demo-1.0.tar.gz", {})
    assert sent["http://127.0.0.1:9/simple/demo/"][loops.HEADER] == "m" * 32
    assert loops.HEADER not in sent["https://files.example/demo-1.0.tar.gz"]
