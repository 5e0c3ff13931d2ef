"""Issue 22's rough edges, on the real server: answers that tell a user what to do next."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import (
    ROOT,
    LiveServer,
    isolated_env,
    kill_server,
    run,
    start_server,
    stop_server,
    twine_form,
)


@pytest.mark.parametrize("path, repo", [("/simple/", "all"), ("/local/simple/", "local"),
                                        ("/local/simple/demo/", "local"), ("/all/simple", "all")])
def test_an_upload_to_an_index_url_names_the_upload_url(live: LiveServer, path: str, repo: str) -> None:
    body, content_type = twine_form("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    response = requests.post(live.url + path, data=body, headers={"Content-Type": content_type},
                             auth=("admin", live.admin_password), timeout=30)
    expected = (f"Upload to {live.url}/{repo}/ (the repository's URL without /simple/), not to its index: "
                f"twine upload --repository-url {live.url}/{repo}/")
    assert (response.status_code, response.reason, response.text) == (405, expected, expected + "\n")
    assert response.headers["Allow"] == "GET, HEAD"


def test_an_upload_to_a_proxys_index_says_where_uploads_go(live: LiveServer) -> None:
    body, content_type = twine_form("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    response = requests.post(f"{live.url}/pypi/simple/", data=body, headers={"Content-Type": content_type},
                             auth=("admin", live.admin_password), timeout=30)
    assert response.status_code == 400 and "upload to a hosted repository" in response.text


@pytest.mark.parametrize("path, target", [
    ("/local/demo/", "/ui/local/demo/"),
    ("/local/Demo/", "/ui/local/Demo/"),
    ("/local/demo/1.0/", "/ui/local/demo/?version=1.0"),
])
def test_the_urls_flit_and_hatch_print_lead_to_the_ui(live: LiveServer, path: str, target: str) -> None:
    body, content_type = twine_form("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    assert requests.post(f"{live.url}/local/", data=body, headers={"Content-Type": content_type},
                         auth=("admin", live.admin_password), timeout=30).ok
    response = requests.get(live.url + path, allow_redirects=False, timeout=10)
    assert response.status_code == 302
    assert requests.compat.urljoin(live.url + path, response.headers["Location"]) == live.url + target
    page = requests.get(live.url + path, timeout=10)
    assert page.status_code == 200 and "demo" in page.text and "1.0" in page.text


@pytest.mark.parametrize("path", ["/api/v1/", "/api/nothing/", "/static/x/", "/files/x/"])
def test_the_fixed_routes_words_are_no_repository(live: LiveServer, path: str) -> None:
    response = requests.get(live.url + path, allow_redirects=False, timeout=10)
    assert response.status_code == 404
    if path.startswith("/api/"):
        assert response.headers["Content-Type"] == "application/json"


def test_the_first_admins_new_password_retires_the_initial_one(tmp_path: Path) -> None:
    server = start_server("app", tmp_path)
    try:
        initial = server.data_dir / "initial-admin-password"
        changed = requests.put(f"{server.url}/api/v1/users/admin/password", json={"password": "a-new-password"},
                               auth=("admin", server.admin_password), timeout=30)
        assert changed.status_code == 204 and not initial.exists()
        assert requests.get(f"{server.url}/api/v1/users", auth=("admin", "a-new-password"), timeout=30).ok
        assert f"removed {initial}: 'admin' has a new password" in server.log.read_text()
    finally:
        stop_server(server.process)


def test_gunicorn_refusing_its_config_leaves_no_metrics_directory(tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"),
                       PYPILITE_SERVER_PORT="not-a-port")
    result = run([sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"], env=env, cwd=ROOT,
                 check=False, timeout=60)
    assert (result.returncode, result.stderr) == (
        1, "pypilite: PYPILITE_SERVER_PORT must be an integer, not 'not-a-port'\n")
    assert list((tmp_path / "home" / "tmp").iterdir()) == []


def test_a_killed_test_server_leaves_its_metrics_in_the_tests_directory(tmp_path: Path) -> None:
    """The suite's servers make their temp files under the test's own directory: one SIGKILLed (as the fault
    tests do) leaves nothing in the machine's /tmp."""
    server = start_server("gunicorn", tmp_path, workers=1)
    made = list((tmp_path / "server-home" / "tmp").glob("pypilite-metrics-*"))
    kill_server(server.process)
    assert len(made) == 1 and made[0].is_dir()


def test_user_names_ignore_case_on_every_door(live: LiveServer) -> None:
    admin = ("admin", live.admin_password)
    api = f"{live.url}/api/v1"
    created = requests.post(f"{api}/users", json={"name": "Case-User", "password": "case-password"}, auth=admin,
                            timeout=30)
    assert created.status_code == 201 and created.json()["name"] == "Case-User"
    clash = requests.post(f"{api}/users", json={"name": "case-user", "password": "case-password"}, auth=admin,
                          timeout=30)
    assert clash.status_code == 409 and "names differ in more than case" in clash.json()["error"]
    granted = requests.put(f"{api}/repos/local/permissions/CASE-USER", json={"level": "upload"}, auth=admin,
                           timeout=30)
    assert granted.status_code == 201
    body, content_type = twine_form("cased-1.0-py3-none-any.whl", wheel_bytes("cased", "1.0"))
    uploaded = requests.post(f"{live.url}/local/", data=body, headers={"Content-Type": content_type},
                             auth=("case-user", "case-password"), timeout=30)
    assert uploaded.status_code == 200, uploaded.text
    token = requests.post(f"{api}/tokens", json={"read_only": True}, auth=("CASE-user", "case-password"), timeout=30)
    assert token.status_code == 201 and token.json()["user"] == "Case-User"
    assert requests.get(f"{live.url}/local/simple/", auth=("case-USER", token.json()["token"]), timeout=30).ok
    changed = requests.put(f"{api}/users/case-user/password", auth=("Case-user", "case-password"), timeout=30,
                           json={"old_password": "case-password", "password": "case-password-2"})
    assert changed.status_code == 204
    assert requests.delete(f"{api}/users/CASE-USER", auth=admin, timeout=30).status_code == 204


def test_failed_logins_under_every_spelling_count_for_one_user(live: LiveServer) -> None:
    """A guesser spread over addresses (each under the per-address limit) who varies the case of the name
    still meets the per-user limit of 20: the spellings are one user."""
    admin = ("admin", live.admin_password)
    assert requests.post(f"{live.url}/api/v1/users", json={"name": "guessed", "password": "guessed-password"},
                         auth=admin, timeout=30).status_code == 201
    spellings = ["".join(c.upper() if n >> i & 1 else c for i, c in enumerate("guessed")) for n in range(21)]
    answers = [requests.get(f"{live.url}/api/v1/tokens", auth=(name, "a-guess"), timeout=30,
                            headers={"X-Forwarded-For": f"10.77.0.{n % 20}"}).status_code
               for n, name in enumerate(spellings)]
    assert answers == [401] * 20 + [429]
    assert requests.get(f"{live.url}/api/v1/tokens", auth=("guessed", "guessed-password"), timeout=30,
                        headers={"X-Forwarded-For": "10.77.1.1"}).ok  # the owner, elsewhere, is not locked out


def test_an_upload_to_an_index_from_a_reader_is_not_read(live: LiveServer) -> None:
    """Anyone may read a public index: the body of who could not upload there anyway is left unread, so a
    large or trickling one holds no worker."""
    with socket.create_connection(("127.0.0.1", int(live.url.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(b"POST /local/simple/ HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                     b"Content-Length: 1073741824\r\n\r\n" + b"x" * 1024)
        answer = sock.recv(4096)
    assert answer.startswith(b"HTTP/1.1 405 ") or answer.startswith(b"HTTP/1.0 405 "), answer[:200]
