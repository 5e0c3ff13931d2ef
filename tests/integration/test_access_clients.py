"""Access control with the real clients: pip (credentials in the URL, ~/.netrc, keyring), twine (password,
__token__, ~/.pypirc, environment) and uv publish with a token, against both servers."""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import LiveServer, build, isolated_env, make_project, new_venv, run, uv

API = "/api/v1"


class Admin:
    """The REST API as the live server's first admin."""

    def __init__(self, live: LiveServer) -> None:
        self.live = live
        self.auth = ("admin", live.admin_password)

    def call(self, method: str, path: str, body: dict | None = None, status: int | None = None) -> dict:
        response = requests.request(method, f"{self.live.url}{API}{path}", json=body, auth=self.auth, timeout=10)
        if status is not None:
            assert response.status_code == status, response.text
        return response.json() if response.content else {}


@pytest.fixture(scope="module")
def setup(live: LiveServer) -> dict[str, str]:
    """A private repository with a package in it, users at each level, and their tokens."""
    admin = Admin(live)
    run([sys.executable, "app.py", "repo", "add", "secret", "--type", "hosted", "--private"],
        env=isolated_env(live.data_dir.parent / "cli-home", PYPILITE_STORAGE_DATA_DIR=str(live.data_dir)),
        cwd=Path(__file__).resolve().parents[2])
    for name, level in (("dev", "upload"), ("viewer", "read")):
        admin.call("POST", "/users", {"name": name, "password": f"{name}-password"}, status=201)
        admin.call("PUT", f"/repos/secret/permissions/{name}", {"level": level}, status=201)
    admin.call("POST", "/users", {"name": "ci", "robot": True}, status=201)
    admin.call("PUT", "/repos/secret/permissions/ci", {"level": "upload"}, status=201)
    secrets = {
        "ci": admin.call("POST", "/tokens", {"user": "ci"}, status=201)["token"],
        "dev": admin.call("POST", "/tokens", {"user": "dev"}, status=201)["token"],
        "dev-read-only": admin.call("POST", "/tokens", {"user": "dev", "read_only": True}, status=201)["token"],
        "dev-local-only": admin.call("POST", "/tokens", {"user": "dev", "repos": ["local"]}, status=201)["token"],
    }
    expired = admin.call("POST", "/tokens", {"user": "dev", "expires_days": 1}, status=201)
    revoked = admin.call("POST", "/tokens", {"user": "dev"}, status=201)
    admin.call("DELETE", f"/tokens/{revoked['id']}", status=204)
    secrets["dev-revoked"] = revoked["token"]
    secrets["dev-expired"] = expired["token"]
    _expire(live, expired["id"])
    return secrets


def _expire(live: LiveServer, token_id: int) -> None:
    """Move a token's expiry into the past, as time would."""
    import sqlite3
    with sqlite3.connect(live.data_dir / "pypilite.db") as db:
        db.execute("UPDATE token SET expires = '2000-01-01 00:00:00' WHERE id = ?", (token_id,))


@pytest.fixture(scope="module")
def private_dist(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    tmp = tmp_path_factory.mktemp("private-dist")
    return build(make_project(tmp, "secret-sauce", "2.0"), tmp / "dist", isolated_env(tmp / "home"))


def twine(live: LiveServer, env: dict[str, str], files: list[Path], *args: str, repo: str = "secret"):
    return run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                "--repository-url", f"{live.url}/{repo}/", *args, *files], env=env, check=False)


def test_twine_with_user_and_password(live, setup, client_env, private_dist) -> None:
    result = twine(live, client_env, private_dist, "-u", "dev", "-p", "dev-password")
    assert result.returncode == 0, result.stdout + result.stderr


def test_twine_with_token_from_the_environment(live, setup, client_env, private_dist) -> None:
    env = {**client_env, "TWINE_USERNAME": "__token__", "TWINE_PASSWORD": setup["dev"]}
    result = twine(live, env, private_dist)
    assert result.returncode == 0, result.stdout + result.stderr


def test_twine_with_pypirc(live, setup, client_env, private_dist, tmp_path) -> None:
    pypirc = Path(client_env["HOME"]) / ".pypirc"
    pypirc.write_text(f"[distutils]\nindex-servers = team\n\n[team]\nrepository = {live.url}/secret/\n"
                      f"username = __token__\npassword = {setup['ci']}\n")
    result = run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                  "-r", "team", *private_dist], env=client_env, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("who, reason", [
    ("dev-read-only", "this token is read-only: it may not upload to repository 'secret' (its owner 'dev' may)"),
    ("dev-local-only", "this token is limited to other repositories: it may not upload to repository 'secret'"),
    ("dev-expired", "401"), ("dev-revoked", "401"),
])
def test_twine_refused_tokens(live, setup, client_env, private_dist, who: str, reason: str) -> None:
    result = twine(live, client_env, private_dist, "-u", "__token__", "-p", setup[who])
    output = " ".join((result.stdout + result.stderr).split())
    assert result.returncode != 0 and ("403" if "token" in reason else "401") in output and reason in output


def test_read_grantee_refused_upload(live, setup, client_env, private_dist) -> None:
    result = twine(live, client_env, private_dist, "-u", "viewer", "-p", "viewer-password")
    assert result.returncode != 0
    output = " ".join((result.stdout + result.stderr).split())
    assert "403" in output and "'viewer' may not upload to repository 'secret'" in output


def test_robot_refused_with_a_password_accepted_with_its_token(live, setup, client_env, private_dist) -> None:
    refused = twine(live, client_env, private_dist, "-u", "ci", "-p", "a-password-guess")
    assert refused.returncode != 0 and "401" in refused.stdout + refused.stderr
    accepted = twine(live, client_env, private_dist, "-u", "ci", "-p", setup["ci"])
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr


def test_uv_publish_with_a_token(live, setup, client_env, private_dist) -> None:
    run([uv(), "publish", "--publish-url", f"{live.url}/secret/", "--token", setup["ci"],
         "--trusted-publishing", "never", "--no-progress", *private_dist], env=client_env)


def _pip_install(python: Path, index_url: str, env: dict[str, str], *extra: str):
    return run([python, "-m", "pip", "install", "--index-url", index_url, *extra, "secret-sauce"],
               env=env, check=False)


@pytest.fixture
def venv_python(tmp_path, client_env) -> Path:
    return new_venv(tmp_path / "venv", client_env)


def test_anonymous_pip_reads_a_public_repository(live, setup, client_env, venv_python, tmp_path) -> None:
    # Publish the same project to the public repository, then install anonymously.
    dist = build(make_project(tmp_path, "open-thing", "1.0"), tmp_path / "dist", client_env)
    twine(live, client_env, dist, "-u", "admin", f"--password={live.admin_password}", repo="local")
    result = run([venv_python, "-m", "pip", "install", "--index-url", live.simple("local"), "open-thing"],
                 env=client_env, check=False)
    assert result.returncode == 0, result.stderr


def test_private_repository_challenges_anonymous_pip(live, setup, client_env, venv_python) -> None:
    response = requests.get(live.simple("secret"), timeout=10)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    result = _pip_install(venv_python, live.simple("secret"), client_env)
    assert result.returncode != 0 and "No matching distribution" in result.stderr


def test_pip_with_netrc(live, setup, client_env, venv_python) -> None:
    netrc = Path(client_env["HOME"]) / ".netrc"
    netrc.write_text("machine 127.0.0.1\nlogin viewer\npassword viewer-password\n")
    netrc.chmod(stat.S_IRUSR | stat.S_IWUSR)
    result = _pip_install(venv_python, live.simple("secret"), client_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pip_with_credentials_in_the_url(live, setup, client_env, venv_python) -> None:
    url = live.simple("secret").replace("http://", f"http://__token__:{setup['dev-read-only']}@")
    result = _pip_install(venv_python, url, client_env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pip_asks_keyring_after_the_challenge(live, setup, client_env, venv_python, tmp_path) -> None:
    """pip's subprocess keyring provider runs `keyring get URL USER`; a stand-in answers with the token."""
    bin_dir = tmp_path / "keyring-bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked.json"
    script = bin_dir / "keyring"
    script.write_text(f"#!{sys.executable}\nimport json, sys\n"
                      f"open({str(asked)!r}, 'a').write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      f"print({setup['dev-read-only']!r}) if sys.argv[1] == 'get' else sys.exit(1)\n")
    script.chmod(0o755)
    env = {**client_env, "PATH": f"{bin_dir}{os.pathsep}{client_env['PATH']}"}
    url = live.simple("secret").replace("http://", "http://__token__@")
    result = _pip_install(venv_python, url, env, "--keyring-provider", "subprocess")
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(asked.read_text().splitlines()[0])[0] == "get"


def test_audit_shows_the_failures_and_changes(live, setup) -> None:
    events = Admin(live).call("GET", "/admin/audit?limit=1000")["items"]
    actions = {e["action"] for e in events}
    assert {"login.failed", "file.upload", "grant.set", "token.create", "token.revoke", "user.create",
            "repository.create"} <= actions
    failed = [e for e in events if e["action"] == "login.failed"]
    assert {e["actor"] for e in failed} >= {"ci", "dev"}
    assert all(e["address"] == "127.0.0.1" for e in failed)
