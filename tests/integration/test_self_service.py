"""Who may do what, and the UI's self-service, against the real server: grants listed only to those who may
see them (a repository's admins, the user, global admins), and the UI's forms acting with the API's rights."""

from __future__ import annotations

import pytest
import requests

from tests.integration.conftest import LiveServer

API = "/api/v1"


def admin(live: LiveServer) -> tuple[str, str]:
    return "admin", live.admin_password


def api(live: LiveServer, method: str, path: str, body=None, status: int = 200, auth=None) -> requests.Response:
    response = requests.request(method, f"{live.url}{API}{path}", json=body, auth=auth or admin(live), timeout=30)
    assert response.status_code == status, response.text
    return response


@pytest.fixture(scope="module")
def team(live: LiveServer) -> None:
    """alice administers `local`, bob reads it, carol has no grant at all."""
    for name in ("alice", "bob", "carol"):
        api(live, "POST", "/users", {"name": name, "password": f"{name}-password"}, 201)
    api(live, "PUT", "/repos/local/permissions/alice", {"level": "admin"}, 201)
    api(live, "PUT", "/repos/local/permissions/bob", {"level": "read"}, 201)


def as_user(name: str) -> tuple[str, str]:
    return name, f"{name}-password"


def test_a_repositorys_grants_are_listed_to_its_admins_only(live: LiveServer, team) -> None:
    expected = [{"user": "alice", "repository": "local", "level": "admin"},
                {"user": "bob", "repository": "local", "level": "read"}]
    assert api(live, "GET", "/repos/local/permissions", auth=as_user("alice")).json()["items"] == expected
    assert api(live, "GET", "/repos/local/permissions").json()["items"] == expected
    for who, status in ((as_user("bob"), 403), (as_user("carol"), 403), (None, 401)):
        response = requests.get(f"{live.url}{API}/repos/local/permissions", auth=who, timeout=10)
        assert response.status_code == status and "alice" not in response.text, response.text


def test_a_users_grants_are_listed_to_the_user_and_global_admins_only(live: LiveServer, team) -> None:
    own = api(live, "GET", "/users/bob/permissions", auth=as_user("bob")).json()["items"]
    assert own == [{"user": "bob", "repository": "local", "level": "read"}]
    assert api(live, "GET", "/users/bob/permissions").json()["items"] == own
    # A repository admin is not a global admin: other users' grants elsewhere are not theirs to see.
    for who in (as_user("carol"), as_user("alice")):
        response = requests.get(f"{live.url}{API}/users/bob/permissions", auth=who, timeout=10)
        assert response.status_code == 403 and "local" not in response.text, response.text
