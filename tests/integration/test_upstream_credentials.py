"""Credentials in remote_url, against the real server: a bare token as the user part (the Gemfury and GitHub
style) and a user with a password, on an upstream that is down and on one that answers 500. No answer, header
or log line ever holds the secret, and no answer to anyone names the upstream's host and port; the admin's
listings show the URL with its userinfo as ***."""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.conftest import basic
from tests.integration.conftest import LiveServer, free_port, start_server, stop_server
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
TOKEN = "tok3n-Secret-user-part"
PASSWORD = "pa55-Secret-word"
SECRETS = (TOKEN, PASSWORD)
TTL = 1


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    served = Upstream(tmp_path_factory.mktemp("upstream"), [wheel("demo", "1.0"), wheel("other", "1.0")],
                      json_api=True).start()
    yield served
    served.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def server(request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory) -> Iterator[LiveServer]:
    closed = free_port()  # nothing listens there
    proxies = {"live-token": f"http://{TOKEN}@127.0.0.1:{upstream.port}/simple/",
               "live-password": f"http://user:{PASSWORD}@127.0.0.1:{upstream.port}/simple/",
               "closed-token": f"http://{TOKEN}@127.0.0.1:{closed}/simple/",
               "closed-password": f"http://user:{PASSWORD}@127.0.0.1:{closed}/simple/"}
    repositories = [{"name": "local", "repository_type": "hosted"}]
    repositories += [{"name": name, "repository_type": "proxy", "remote_url": url, "cache_ttl": TTL,
                      "remote_timeout": 2} for name, url in proxies.items()]
    repositories.append({"name": "all", "repository_type": "group", "members": ["local", *proxies],
                         "upload_to": "local", "pass_through": ["demo"]})
    live = start_server(request.param, tmp_path_factory.mktemp(f"credentials-{request.param}"), repositories)
    live.addresses = (f"127.0.0.1:{upstream.port}", f"127.0.0.1:{closed}")  # type: ignore[attr-defined]
    yield live
    stop_server(live.process)


def leaks(response: requests.Response, *words: str) -> list[str]:
    """Which of `words` the response carries anywhere: status line, headers or body."""
    seen = " ".join([response.reason or "", *(f"{k}: {v}" for k, v in response.headers.items()), response.text])
    return [word for word in words if word in seen]


def test_credentials_reach_the_upstream(server: LiveServer, upstream: Upstream) -> None:
    """A bare token goes as the user with an empty password, as pip sends it."""
    for repo in ("live-token", "live-password"):
        assert requests.get(f"{server.simple(repo)}other/", headers={"Accept": JSON}, timeout=30).status_code == 200
    sent = {h.get("Authorization") for path, h in upstream.log.requests if path == "/simple/other/"}
    assert sent == {"Basic " + base64.b64encode(f"{TOKEN}:".encode()).decode(),
                    "Basic " + base64.b64encode(f"user:{PASSWORD}".encode()).decode()}


def test_no_answer_or_log_line_holds_a_credential(server: LiveServer, upstream: Upstream) -> None:
    # Healthy first: pages cached, so that failures are served as stale pages with a note.
    for repo in ("live-token", "live-password"):
        assert requests.get(f"{server.simple(repo)}demo/", headers={"Accept": JSON}, timeout=30).status_code == 200
    cached = requests.get(f"{server.simple('live-password')}demo/", headers={"Accept": JSON}, timeout=30)
    [file] = cached.json()["files"]
    file_url = requests.compat.urljoin(f"{server.simple('live-password')}demo/", file["url"])

    upstream.fail_status = 500
    try:
        time.sleep(TTL + 0.5)  # every cached page is older than its TTL now: each request asks the upstream
        admin = basic("admin", server.admin_password)
        asked = [f"{server.simple(repo)}{project}/" for repo in ("live-token", "live-password", "closed-token",
                                                                 "closed-password", "all")
                 for project in ("demo", "other")]
        asked.append(file_url)  # never fetched: the upstream's 500 is the answer
        for url in asked:
            for headers in ({}, admin):
                response = requests.get(url, headers=headers, timeout=30)
                assert response.status_code in (200, 502), (url, response.status_code, response.text)
                assert leaks(response, *SECRETS, *server.addresses) == [], (url, response.text)
                if response.status_code == 502:
                    assert response.text.count("\n") == 1 and "upstream of repository" in response.text
        stale = requests.get(f"{server.simple('live-token')}demo/", timeout=30)
        assert "answered 500" in stale.headers["X-Pypilite-Stale"]
        merged = requests.get(f"{server.simple('all')}demo/", timeout=30)
        assert "closed-token" in merged.headers["X-Pypilite-Stale"]  # the failure is named, not located
    finally:
        upstream.fail_status = None

    listing = requests.get(f"{server.url}/api/v1/repos", headers=admin, timeout=30)
    shown = {repo["name"]: repo.get("remote_url") for repo in listing.json()["items"]}
    assert shown["live-token"] == f"http://***@127.0.0.1:{upstream.port}/simple/"
    assert leaks(listing, *SECRETS) == []
    assert leaks(requests.get(f"{server.url}/api/v1/admin/audit", headers=admin, timeout=30), *SECRETS) == []
    cli = server.command("repo", "list")
    assert cli.returncode == 0 and "***@127.0.0.1" in cli.stdout
    assert not [secret for secret in SECRETS if secret in cli.stdout + cli.stderr]
    log = Path(server.log).read_text()
    assert f"upstream http://127.0.0.1:{upstream.port}/simple/other/ answered 500" in log  # the URL, for operators
    assert not [secret for secret in SECRETS if secret in log]
