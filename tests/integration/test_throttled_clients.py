"""A throttled client fails at once and says why: no `Retry-After` on a 429, since pip's HTTP library sleeps
for as long as it says (five minutes, then five retries) before "Could not find a version"."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes, write
from tests.integration.conftest import LiveServer, isolated_env, run, start_server, stop_server, uv

# pip waits minutes a retry when a 429 says so; a client that fails at once is done well inside this.
HANG = 120
REASON = "Too many failed logins from 127.0.0.1"


@pytest.fixture(scope="module")
def throttled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A server that has seen enough wrong passwords from this machine's address to stop checking them."""
    server = start_server("gunicorn", tmp_path_factory.mktemp("throttled"))
    try:
        statuses = [requests.get(server.simple("local"), auth=("nobody", "wrong"), timeout=10).status_code
                    for _ in range(12)]
        assert statuses[0] == 401 and statuses[-1] == 429
        yield server
    finally:
        stop_server(server.process)


def _with_credentials(url: str) -> str:
    return url.replace("http://", "http://nobody:wrong@")


def test_the_refusal_names_the_reason_and_no_wait(throttled: LiveServer) -> None:
    response = requests.get(throttled.simple("local"), auth=("nobody", "wrong"), timeout=10)
    assert response.status_code == 429 and "Retry-After" not in response.headers
    assert response.reason.startswith(REASON) and response.text.startswith(REASON)


def test_pip_fails_at_once_and_says_why_when_asked(throttled: LiveServer, tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home")
    result = run([sys.executable, "-m", "pip", "download", "-vv", "--no-deps", "-d", tmp_path / "d",
                  "--index-url", _with_credentials(throttled.simple("local")), "anything"],
                 env=env, check=False, timeout=HANG)
    assert result.returncode == 1 and "Could not find a version" in result.stderr
    # pip reports an index's HTTP errors at debug level only: -vv shows them.
    assert f"429 Client Error: {REASON}" in result.stdout


def test_uv_fails_and_says_why(throttled: LiveServer, tmp_path: Path) -> None:
    requirements = tmp_path / "requirements.in"
    requirements.write_text("anything\n")
    result = run([uv(), "pip", "compile", requirements, "--no-cache",
                  "--index-url", _with_credentials(throttled.simple("local"))],
                 env=isolated_env(tmp_path / "home"), check=False, timeout=HANG)
    assert result.returncode != 0 and REASON in result.stderr


def test_twine_fails_and_says_why(throttled: LiveServer, tmp_path: Path) -> None:
    dist = write(tmp_path, "anything-1.0-py3-none-any.whl", wheel_bytes("anything", "1.0"))
    env = isolated_env(tmp_path / "home", TWINE_USERNAME="nobody", TWINE_PASSWORD="wrong")
    result = run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                  "--repository-url", f"{throttled.url}/local/", dist], env=env, check=False, timeout=HANG)
    assert result.returncode != 0 and REASON in result.stdout + result.stderr
