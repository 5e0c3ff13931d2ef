"""The management API through the real HTTP server: every endpoint with the right and the wrong rights,
and yanking seen by the real pip (>= skips a yanked release, == still installs it)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest
import requests

from tests.integration.conftest import (
    LiveServer,
    build,
    isolated_env,
    make_project,
    new_venv,
    run,
    start_server,
    stop_server,
)

API = "/api/v1"
ADMIN, UPLOADER, READER, ANONYMOUS = "admin", "uploader", "reader", "anonymous"


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def live(request, tmp_path_factory) -> Iterator[LiveServer]:
    server = start_server(request.param, tmp_path_factory.mktemp(f"management-{request.param}"))
    yield server
    stop_server(server.process)


@pytest.fixture(scope="module")
def people(live: LiveServer, tmp_path_factory) -> dict[str, tuple[str, str] | None]:
    """An upload grantee and a read grantee on a private repository holding a package with two releases."""
    admin = ("admin", live.admin_password)

    def api(method: str, path: str, body=None) -> requests.Response:
        response = requests.request(method, f"{live.url}{API}{path}", json=body, auth=admin, timeout=10)
        assert response.status_code < 300, response.text
        return response

    api("POST", "/repos", {"name": "team", "repository_type": "hosted", "public": False})
    for name, level in ((UPLOADER, "upload"), (READER, "read")):
        api("POST", "/users", {"name": name, "password": f"{name}-password"})
        api("PUT", f"/repos/team/permissions/{name}", {"level": level})
    tmp = tmp_path_factory.mktemp("management-dists")
    env = isolated_env(tmp / "home")
    for version in ("1.0", "2.0"):
        files = build(make_project(tmp, "mgmt-demo", version), tmp / version, env)
        for repo in ("team", "local"):
            run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                 "--repository-url", f"{live.url}/{repo}/", "-u", "admin", f"--password={live.admin_password}", *files],
                env=env)
    return {ADMIN: admin, UPLOADER: (UPLOADER, f"{UPLOADER}-password"), READER: (READER, f"{READER}-password"),
            ANONYMOUS: None}


# (method, path, body, the lowest role allowed); each is tried by every role, lowest first.
ENDPOINTS = [
    ("GET", "/repos", None, ADMIN),
    ("GET", "/repos/team", None, ADMIN),
    ("GET", "/repos/team/projects", None, READER),
    ("GET", "/repos/team/projects/mgmt-demo", None, READER),
    ("POST", "/repos/team/projects/mgmt-demo/1.0/yank", {"reason": "test"}, UPLOADER),
    ("POST", "/repos/team/projects/mgmt-demo/1.0/unyank", None, UPLOADER),
    ("GET", "/users", None, ADMIN),
    ("GET", "/tokens", None, READER),
    ("GET", "/admin/audit", None, ADMIN),
    ("PUT", "/repos/team/permissions/reader", {"level": "read"}, ADMIN),
    ("PATCH", "/repos/team", {"public": False}, ADMIN),
    ("POST", "/repos", {"name": "made-by-api", "repository_type": "hosted"}, ADMIN),
    ("POST", "/users", {"name": "made-by-api", "password": "long-enough"}, ADMIN),
    ("POST", "/tokens", {"read_only": True}, READER),
    ("PUT", "/users/reader/password", {"password": "reader-password", "old_password": "reader-password"}, READER),
    ("DELETE", "/repos/team/files/mgmt_demo-2.0.tar.gz", None, UPLOADER),
    ("DELETE", "/repos/team/projects/mgmt-demo/2.0", None, UPLOADER),
    ("DELETE", "/users/made-by-api", None, ADMIN),
    ("DELETE", "/repos/made-by-api", None, ADMIN),
]
ORDER = [ANONYMOUS, READER, UPLOADER, ADMIN]
SUCCESS = {"GET": 200, "POST": (200, 201), "PUT": (200, 201, 204), "PATCH": 200, "DELETE": 204}


@pytest.mark.parametrize("method, path, body, lowest", ENDPOINTS, ids=[f"{m} {p}" for m, p, _, _ in ENDPOINTS])
def test_rights(live: LiveServer, people, method: str, path: str, body, lowest: str) -> None:
    for role in ORDER:
        response = requests.request(method, f"{live.url}{API}{path}", json=body, auth=people[role], timeout=10)
        allowed = ORDER.index(role) >= ORDER.index(lowest)
        if not allowed:
            assert response.status_code == (401 if role == ANONYMOUS else 403), (role, response.text)
            assert response.headers["Content-Type"] == "application/json" and "error" in response.json()
            continue
        expected = SUCCESS[method]
        assert response.status_code in (expected if isinstance(expected, tuple) else (expected,)), \
            (role, response.text)
        break  # the first allowed role changed state; a second success is not the question


@pytest.mark.parametrize("method, path, payload, status", [
    ("POST", "/repos", b"{not json", 400),
    ("POST", "/repos", b'{"name": 5, "repository_type": "hosted"}', 400),
    ("POST", "/repos", b'{"name": "x", "repository_type": "hosted", "extra": 1}', 400),
    ("POST", "/repos", b'{"name": "Not-Valid!", "repository_type": "hosted"}', 400),
    ("PATCH", "/repos/team", b'["a list"]', 400),
    ("PUT", "/repos/team/permissions/reader", b'{"level": "owner"}', 400),
    ("POST", "/users", b'{"name": "x", "password": "long-enough", "admin": "yes"}', 400),
    ("POST", "/tokens", b'{"expires_days": "soon"}', 400),
    ("POST", "/repos/team/projects/mgmt-demo/1.0/yank", b'{"reason": []}', 400),
    ("DELETE", "/repos/nope", None, 404),
])
def test_malformed_bodies(live: LiveServer, people, method: str, path: str, payload, status: int) -> None:
    response = requests.request(method, f"{live.url}{API}{path}", data=payload, auth=people[ADMIN],
                                headers={"Content-Type": "application/json"}, timeout=10)
    assert response.status_code == status, response.text
    assert response.json()["error"]


def test_pip_skips_a_yanked_release_unless_pinned(live: LiveServer, people, client_env, tmp_path) -> None:
    yank = requests.post(f"{live.url}{API}/repos/local/projects/mgmt-demo/2.0/yank", json={"reason": "broken"},
                         auth=people[ADMIN], timeout=10)
    assert yank.status_code == 200
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", live.simple("local"), "mgmt-demo>=1.0"], env=client_env)
    assert "Version: 1.0" in run([python, "-m", "pip", "show", "mgmt-demo"], env=client_env).stdout
    pinned = run([python, "-m", "pip", "install", "--index-url", live.simple("local"), "mgmt-demo==2.0"],
                 env=client_env)
    assert "Version: 2.0" in run([python, "-m", "pip", "show", "mgmt-demo"], env=client_env).stdout
    assert "broken" in pinned.stdout + pinned.stderr  # pip names the yank reason


def test_a_deleted_filename_cannot_come_back(live: LiveServer, people, tmp_path) -> None:
    response = requests.delete(f"{live.url}{API}/repos/local/files/mgmt_demo-1.0.tar.gz", auth=people[ADMIN],
                               timeout=10)
    assert response.status_code == 204
    env = isolated_env(tmp_path / "home")
    files = build(make_project(tmp_path, "mgmt-demo", "1.0"), tmp_path / "dist", env)
    sdist = [f for f in files if f.name.endswith(".tar.gz")]
    again = run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                 "--repository-url", f"{live.url}/local/", "-u", "admin", f"--password={live.admin_password}", *sdist],
                env=env, check=False)
    assert again.returncode != 0 and "already been used" in again.stdout + again.stderr
    audit = requests.get(f"{live.url}{API}/admin/audit?q=mgmt_demo-1.0.tar.gz", auth=people[ADMIN], timeout=10)
    assert "file.delete" in [e["action"] for e in audit.json()["items"]]


def test_check_is_clean_after_all_of_it(live: LiveServer, people, tmp_path) -> None:
    from tests.integration.conftest import ROOT
    config = next(live.data_dir.parent.glob("pypilite-*.toml"))
    env = isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(live.data_dir))
    result = run([sys.executable, "app.py", "check", "--config", config], env=env, cwd=ROOT)
    assert "0 missing, 0 corrupt" in result.stdout


def test_a_stolen_token_cannot_guess_its_owners_password(tmp_path) -> None:
    """The password change asks for the old password: through it, a token's holder guesses no faster than a
    login would, across gunicorn's workers (each wrong guess is a failed login, tests/unit/test_api.py)."""
    from pypilite.auth import ADDRESS_FAILURES
    server = start_server("gunicorn", tmp_path)
    try:
        admin = ("admin", server.admin_password)
        created = requests.post(f"{server.url}{API}/users", json={"name": "victim", "password": "victim-password"},
                                auth=admin, timeout=10)
        assert created.status_code == 201, created.text
        secret = requests.post(f"{server.url}{API}/tokens", json={}, auth=("victim", "victim-password"),
                               timeout=10).json()["token"]
        answers = []
        for n in range(ADDRESS_FAILURES + 1):
            guess = {"old_password": f"guess-{n:04d}", "password": "taken-over-password"}
            answers.append(requests.put(f"{server.url}{API}/users/victim/password", json=guess,
                                        auth=("__token__", secret), timeout=10).status_code)
        assert answers == [403] * ADDRESS_FAILURES + [429]
    finally:
        stop_server(server.process)
