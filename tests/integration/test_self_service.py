"""Who may do what, and the UI's self-service, against the real server: grants listed only to those who may
see them (a repository's admins, the user, global admins), and the UI's forms acting with the API's rights."""

from __future__ import annotations

import re

import pytest
import requests

from tests.integration.conftest import LiveServer
from tests.integration.test_cross_site import upload_form

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


# --- the UI's forms, as a browser on this server's own pages sends them ------------------------------------------

OWN_PAGE = {"Sec-Fetch-Site": "same-origin"}
EVIL = {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}
JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}


def form(live: LiveServer, path: str, data: dict, who: tuple[str, str], headers=None) -> requests.Response:
    return requests.post(f"{live.url}{path}", data=data, auth=who, allow_redirects=False, timeout=30,
                         headers={"Origin": live.url, **OWN_PAGE} if headers is None else headers)


def files(live: LiveServer, project: str) -> dict[str, dict]:
    page = requests.get(f"{live.url}/local/simple/{project}/", headers=JSON, timeout=10)
    return {f["filename"]: f for f in page.json()["files"]} if page.ok else {}


@pytest.fixture(scope="module")
def released(live: LiveServer, team) -> None:
    form_fields, upload = upload_form("ui-demo", "1.0")
    response = requests.post(f"{live.url}/local/", data=form_fields, files=upload, auth=admin(live), timeout=30)
    assert response.status_code == 200, response.text


def test_a_repository_admin_yanks_unyanks_and_deletes_from_the_ui(live: LiveServer, released) -> None:
    wheel = "ui_demo-1.0-py3-none-any.whl"
    refused = form(live, "/ui/local/ui-demo/-/yank", {"version": "1.0", "reason": "no"}, as_user("bob"))
    assert refused.status_code == 403 and not files(live, "ui-demo")[wheel]["yanked"]
    done = form(live, "/ui/local/ui-demo/-/yank", {"version": "1.0", "reason": "broken"}, as_user("alice"))
    assert done.status_code == 303, done.text
    assert files(live, "ui-demo")[wheel]["yanked"] == "broken"
    assert form(live, "/ui/local/ui-demo/-/unyank", {"version": "1.0"}, as_user("alice")).status_code == 303
    assert files(live, "ui-demo")[wheel]["yanked"] is False
    gone = form(live, "/ui/local/ui-demo/-/delete", {"filename": wheel, "confirm": "on"}, as_user("alice"))
    assert gone.status_code == 303 and files(live, "ui-demo") == {}
    actions = [e["action"] for e in api(live, "GET", "/admin/audit?limit=20").json()["items"]
               if e["actor"] == "alice"]
    assert actions[:3] == ["file.delete", "release.unyank", "release.yank"]


def test_a_repository_admin_grants_and_revokes_from_the_ui(live: LiveServer, team) -> None:
    page = requests.get(f"{live.url}/ui/local/", auth=as_user("alice"), timeout=10).text
    assert '<tr data-user="bob"><td>bob</td><td>read</td>' in page
    assert 'id="access"' not in requests.get(f"{live.url}/ui/local/", auth=as_user("bob"), timeout=10).text
    assert form(live, "/ui/local/-/access", {"user": "carol", "level": "upload"}, as_user("bob")).status_code == 403
    assert form(live, "/ui/local/-/access", {"user": "carol", "level": "upload"}, as_user("alice")).status_code == 303
    holders = {g["user"]: g["level"] for g in api(live, "GET", "/repos/local/permissions").json()["items"]}
    assert holders["carol"] == "upload"
    assert form(live, "/ui/local/-/access/revoke", {"user": "carol"}, as_user("alice")).status_code == 303
    assert "carol" not in {g["user"] for g in api(live, "GET", "/repos/local/permissions").json()["items"]}


def test_a_user_makes_uses_and_revokes_a_token_and_changes_the_password_in_the_ui(live: LiveServer, team) -> None:
    made = form(live, "/ui/-/account/tokens", {"read_only": "on"}, as_user("carol"))
    assert made.status_code == 201 and made.headers["Cache-Control"] == "no-store"
    secret = re.search(r"pypl_[A-Za-z0-9_-]+", made.text).group(0)
    assert requests.get(f"{live.url}/local/simple/", auth=("__token__", secret), timeout=10).status_code == 200
    [token] = api(live, "GET", "/tokens?user=carol").json()["items"]
    assert token["read_only"] is True
    assert form(live, f"/ui/-/account/tokens/{token['id']}/revoke", {}, as_user("carol")).status_code == 303
    assert requests.get(f"{live.url}/local/simple/", auth=("__token__", secret), timeout=10).status_code == 401
    wrong = form(live, "/ui/-/account/password", {"old_password": "guess-guess", "password": "carol-password-2",
                                                  "confirm": "carol-password-2"}, as_user("carol"))
    assert wrong.status_code == 403 and "the old password is wrong" in wrong.text
    changed = form(live, "/ui/-/account/password", {"old_password": "carol-password", "password": "carol-password-2",
                                                    "confirm": "carol-password-2"}, as_user("carol"))
    assert changed.status_code == 303
    assert requests.get(f"{live.url}/ui/-/account", auth=("carol", "carol-password-2"), timeout=10).ok
    api(live, "PUT", "/users/carol/password", {"password": "carol-password"}, 204)
    logout = form(live, "/ui/-/logout", {}, as_user("carol"))
    assert logout.status_code == 401 and logout.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'


UI_WRITES = [
    ("/ui/local/-/access", {"user": "carol", "level": "admin"}),
    ("/ui/local/-/access/revoke", {"user": "bob"}),
    ("/ui/-/account/tokens", {}),
    ("/ui/-/account/password", {"old_password": "alice-password", "password": "taken-over-1",
                                "confirm": "taken-over-1"}),
]


def test_another_sites_page_cannot_use_the_ui_forms(live: LiveServer, team) -> None:
    before = (api(live, "GET", "/repos/local/permissions").json(), api(live, "GET", "/tokens").json())
    for path, data in UI_WRITES:
        response = form(live, path, data, as_user("alice"), headers=EVIL)
        assert response.status_code == 403 and "Cross-site request refused" in response.text, path
    assert (api(live, "GET", "/repos/local/permissions").json(), api(live, "GET", "/tokens").json()) == before
    assert requests.get(f"{live.url}/ui/-/account", auth=as_user("alice"), timeout=10).ok
