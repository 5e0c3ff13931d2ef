"""Which upstream URLs name this server itself, judged from the URL alone."""

from __future__ import annotations

import socket

import pytest

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
