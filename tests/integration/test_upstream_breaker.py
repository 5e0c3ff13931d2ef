"""A hung upstream against the real server (`python app.py`, and gunicorn whose workers share the breaker):
it accepts connections and never answers. The first stale page waits remote_timeout once; after it, pages
and files come from the cache without the upstream being asked, an uncached name is refused at once, pip
installs a cached project; after the back-off, with the upstream back, one request probes it and the breaker
closes. And a proxy switched offline serves pip from its cache alone."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import LiveServer, new_venv, run, start_server, stop_server
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
STALE = "X-Pypilite-Stale"
REMOTE_TIMEOUT = 2
BACKOFF = 8
HUNG = 120  # seconds the upstream keeps a request before answering: far past remote_timeout


@pytest.fixture(params=["app", "gunicorn"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[LiveServer, Upstream]]:
    upstream = Upstream(tmp_path / "upstream", [wheel("hung-lib", "1.0"), wheel("other-lib", "1.0")],
                        json_api=True).start()
    proxy = {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url,
             "remote_timeout": REMOTE_TIMEOUT, "cache_ttl": 0}
    server = start_server(request.param, tmp_path, [proxy], settings={"PYPILITE_SERVER_UPSTREAM_BACKOFF": str(BACKOFF)},
                          workers=3)
    yield server, upstream
    upstream.delay = 0
    stop_server(server.process)
    upstream.stop()


def page(server: LiveServer, project: str) -> requests.Response:
    # A new connection each time: under gunicorn, whichever worker accepts it answers.
    return requests.get(f"{server.simple('pypi')}{project}/", headers={"Accept": JSON, "Connection": "close"},
                        timeout=60)


def breaker(server: LiveServer) -> dict:
    shown = requests.get(f"{server.url}/api/v1/repos/pypi", auth=("admin", server.admin_password), timeout=30)
    return shown.json()["upstream"]


def pip_install(python: Path, server: LiveServer, env: dict[str, str], project: str):
    return run([python, "-m", "pip", "install", "--no-cache-dir", "--force-reinstall", "--index-url",
                server.simple("pypi"), project], env=env, check=False)


def test_a_hung_upstream_is_waited_for_once_then_the_cache_serves_at_once(served, client_env, tmp_path) -> None:
    server, upstream = served
    python = new_venv(tmp_path / "venv", client_env)
    warm = pip_install(python, server, client_env, "hung-lib")  # the page, the wheel and its metadata cached
    assert warm.returncode == 0, warm.stdout + warm.stderr
    fresh = page(server, "hung-lib")

    upstream.delay = HUNG
    first = page(server, "hung-lib")
    assert first.status_code == 200 and first.json() == fresh.json() and "did not answer" in first.headers[STALE]
    asked = len(upstream.log.requests)
    for _ in range(6):
        again = page(server, "hung-lib")
        assert again.status_code == 200 and again.json() == fresh.json()
        assert "asked again in" in again.headers[STALE]
    uncached = requests.get(f"{server.simple('pypi')}never-cached/", timeout=60)
    assert uncached.status_code == 504 and uncached.text.count("\n") == 1 and "not cached" in uncached.text
    assert len(upstream.log.requests) == asked  # every one of them answered without the upstream
    assert breaker(server)["breaker"] == "open"

    installed = pip_install(python, server, client_env, "hung-lib")
    assert installed.returncode == 0, installed.stdout + installed.stderr

    upstream.delay = 0
    upstream.dists.append(wheel("hung-lib", "2.0"))
    deadline = time.monotonic() + 120  # a hang guard: the back-off is seconds
    while breaker(server)["breaker"] == "open" and time.monotonic() < deadline:
        time.sleep(0.5)
    probed = page(server, "hung-lib")
    assert probed.status_code == 200 and STALE not in probed.headers
    assert probed.json()["versions"] == ["1.0", "2.0"]
    assert breaker(server) == {"breaker": "closed"}
    log = server.log.read_text()
    assert log.count("breaker open") == 1 and log.count("breaker closed") == 1


def test_an_offline_proxy_serves_pip_from_its_cache_alone(served, client_env, tmp_path) -> None:
    server, upstream = served
    python = new_venv(tmp_path / "venv", client_env)
    warm = pip_install(python, server, client_env, "hung-lib")
    assert warm.returncode == 0, warm.stdout + warm.stderr
    switched = server.command("repo", "update", "pypi", "--offline", "true")
    assert switched.returncode == 0, switched.stdout + switched.stderr
    asked = len(upstream.log.requests)

    again = pip_install(python, server, client_env, "hung-lib")
    assert again.returncode == 0, again.stdout + again.stderr
    refused = pip_install(python, server, client_env, "other-lib")
    assert refused.returncode != 0
    missing = page(server, "other-lib")
    assert missing.status_code == 404 and "repository 'pypi' is offline" in missing.text
    assert missing.text.count("\n") == 1
    assert "offline=true" in server.command("repo", "list").stdout
    assert len(upstream.log.requests) == asked  # nothing was asked upstream

    assert server.command("repo", "update", "pypi", "--offline", "false").returncode == 0
    assert page(server, "other-lib").status_code == 200
