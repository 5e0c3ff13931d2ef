"""Two small leaks, against the real server: /login's `next` sends a browser only to a path on this server,
whatever a known open-redirect payload tries; /health tells anyone whether each part is ok, but the free disk
only to a global administrator when server.public_metrics is false."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from contextlib import closing
from urllib.parse import quote, urljoin, urlsplit

import pytest
import requests

from tests.integration.conftest import LiveServer, start_server, stop_server

# Each is a query string value as an attacker writes it into a link (already percent-encoded where it says so).
OPEN_REDIRECTS = [
    "/%09//evil.example", "/%09/evil.example", "%09//evil.example", "/%0a//evil.example", "/%0d%0a//evil.example",
    "/%0A/evil.example", "//evil.example", "///evil.example", "////evil.example/", "/\\evil.example",
    "/%5Cevil.example", "/%5C%5Cevil.example", "\\\\evil.example", "%5C%5Cevil.example", "/\\/evil.example",
    "%2F%2Fevil.example", "/%2F/evil.example", "https://evil.example/", "http://evil.example",
    "https:evil.example", "http:evil.example", "/https:evil.example", "/https://evil.example", "//evil.example@x",
    "/%20//evil.example", "%20//evil.example", "/%00//evil.example", "/ //evil.example", "javascript:alert(1)",
    "/javascript:alert(1)", "JaVaScRiPt:alert(1)", "data:text/html,<script>alert(1)</script>",
    "/%E3%80%82evil.example", "//evil%E3%80%82example", "/.evil.example", "/@evil.example", "@evil.example",
    "evil.example", "/%2e%2e//evil.example", "/..//evil.example", "/./\\evil.example",
]
C0_AND_SPACE = "".join(chr(c) for c in range(0x21))


def browser_resolves(base: str, location: str) -> tuple[str, str]:
    """(scheme, host[:port]) a browser goes to for this Location, by the WHATWG URL rules that matter here:
    leading and trailing C0 controls and spaces dropped, tabs and newlines removed anywhere, a backslash taken
    for a slash, and a special scheme other than the base's read as scheme://authority."""
    location = re.sub("[\t\n\r]", "", location.strip(C0_AND_SPACE)).replace("\\", "/")
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*):", location)
    base_scheme = urlsplit(base).scheme
    if scheme and scheme.group(1).lower() in ("http", "https") and scheme.group(1).lower() != base_scheme:
        rest = location[scheme.end():].lstrip("/")
        return scheme.group(1).lower(), urlsplit(f"//{rest}").netloc
    if scheme and scheme.group(1).lower() == base_scheme and not location[scheme.end():].startswith("//"):
        location = location[scheme.end():]
    resolved = urlsplit(urljoin(base, location))
    return resolved.scheme, resolved.netloc


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def live(request, tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(request.param, tmp_path_factory.mktemp(f"leaks-{request.param}"),
                          settings={"PYPILITE_SERVER_PUBLIC_METRICS": "false"})
    yield server
    stop_server(server.process)


@pytest.mark.parametrize("payload", OPEN_REDIRECTS)
def test_login_sends_the_browser_nowhere_but_this_server(live: LiveServer, payload: str) -> None:
    url = f"{live.url}/login?next={payload}"
    response = requests.get(url, auth=("admin", live.admin_password), allow_redirects=False, timeout=10)
    assert response.status_code == 302
    location = response.headers["Location"]
    assert browser_resolves(url, location) == ("http", urlsplit(live.url).netloc), location


@pytest.mark.parametrize("target", ["/ui/local/", "/?q=hello+world", "/ui/local/demo/?version=1.0", "/ui/a:b/"])
def test_login_still_sends_the_browser_back_where_it_was(live: LiveServer, target: str) -> None:
    url = f"{live.url}/login?next={quote(target, safe='')}"
    response = requests.get(url, auth=("admin", live.admin_password), allow_redirects=False, timeout=10)
    assert urljoin(url, response.headers["Location"]) == f"{live.url}{target}"


def test_the_browser_model_knows_the_tricks() -> None:
    base = "http://127.0.0.1:8080/login"
    for location in ("\t//evil.example", "/\\evil.example", "https:evil.example", " //evil.example",
                     "/\n/evil.example"):
        assert browser_resolves(base, location)[1] == "evil.example", location
    assert browser_resolves(base, "./https:evil.example") == ("http", "127.0.0.1:8080")


def register(live: LiveServer, name: str, **fields) -> None:
    response = requests.post(f"{live.url}/api/v1/users", json={"name": name, "password": f"{name}-password", **fields},
                             auth=("admin", live.admin_password), timeout=10)
    assert response.status_code == 201, response.text


def health(live: LiveServer, auth=None) -> dict:
    response = requests.get(f"{live.url}/health", auth=auth, timeout=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["status"], body["database"], body["storage"], body["disk"]) == ("ok", "ok", "ok", "ok")
    return body


def test_private_health_shows_the_free_disk_only_to_global_admins(live: LiveServer) -> None:
    register(live, "plain-user")
    register(live, "other-admin", admin=True)
    for auth in (None, ("plain-user", "plain-user-password"), ("admin", "wrong-password")):
        assert "free_bytes" not in health(live, auth) and "min_free_bytes" not in health(live, auth)
    for auth in (("admin", live.admin_password), ("other-admin", "other-admin-password")):
        body = health(live, auth)
        assert body["free_bytes"] > body["min_free_bytes"] > 0


def test_public_health_shows_the_free_disk_to_anyone(tmp_path) -> None:
    server = start_server("app", tmp_path)
    try:
        body = health(server)
        assert body["free_bytes"] > body["min_free_bytes"] > 0
    finally:
        stop_server(server.process)


def test_a_real_start_hashes_passwords_with_scrypt(live: LiveServer) -> None:
    """In-process tests hash with a cheap method (tests/conftest.py); the server itself keeps scrypt."""
    with closing(sqlite3.connect(live.data_dir / "pypilite.db")) as db:
        (password_hash,) = db.execute("SELECT password_hash FROM user WHERE name = 'admin'").fetchone()
    assert password_hash.startswith("scrypt:")
    assert requests.get(live.simple("local"), auth=("admin", live.admin_password), timeout=10).status_code == 200
