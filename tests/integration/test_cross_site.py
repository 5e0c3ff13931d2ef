"""Writes another site's page makes a logged-in browser send, against the real server: every write route is
refused (403, audited) when Sec-Fetch-Site or Origin says another site sent it, and nothing changes; what
twine, uv and curl send (neither header), this server's own pages and a loopback proxy's origin still write;
the API takes bodies only as JSON; another site's link to /login only leads home."""

from __future__ import annotations

import hashlib
import html
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes, write
from tests.integration.conftest import LiveServer, run, uv

API = "/api/v1"
ACTION = "request.cross_site"
EVIL = "http://evil.example"
# Headers a browser sends with a form another site's page submits (or that such a page could forge).
CROSS_SITE = {
    "origin": {"Origin": EVIL},
    "origin-null": {"Origin": "null"},
    "cross-site": {"Sec-Fetch-Site": "cross-site"},
    "same-site": {"Sec-Fetch-Site": "same-site"},
    "both": {"Sec-Fetch-Site": "cross-site", "Origin": EVIL},
    "other-port": {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9"},
    "proxy-origin-without-proxy-host": {"Origin": "https://pkgs.example.test"},
}
# A proxy on this machine that says the client used https://pkgs.example.test.
PROXIED = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pkgs.example.test"}


def admin(live: LiveServer) -> tuple[str, str]:
    return "admin", live.admin_password


def api(live: LiveServer, method: str, path: str, body=None, status: int = 200) -> requests.Response:
    response = requests.request(method, f"{live.url}{API}{path}", json=body, auth=admin(live), timeout=30)
    assert response.status_code == status, response.text
    return response


def upload_form(name: str, version: str) -> tuple[dict[str, str], dict[str, tuple[str, bytes]]]:
    data = wheel_bytes(name, version)
    filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
    form = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
            "filetype": "bdist_wheel", "pyversion": "py3", "sha256_digest": hashlib.sha256(data).hexdigest()}
    return form, {"content": (filename, data)}


@pytest.fixture(scope="module")
def world(live: LiveServer) -> dict[str, int]:
    """What each write would change: a release and a yanked one, a user, a grant, a token, a repository."""
    for version in ("0.9", "1.0"):
        form, files = upload_form("victim", version)
        response = requests.post(f"{live.url}/local/", data=form, files=files, auth=admin(live), timeout=30)
        assert response.status_code == 200, response.text
    api(live, "POST", "/repos/local/projects/victim/0.9/yank", {"reason": "old"})
    for name in ("alice", "bob"):
        api(live, "POST", "/users", {"name": name, "password": f"{name}-password"}, 201)
    api(live, "PUT", "/repos/local/permissions/bob", {"level": "upload"}, 201)
    api(live, "POST", "/repos", {"name": "scratch", "repository_type": "hosted"}, 201)
    token = api(live, "POST", "/tokens", {"user": "alice"}, 201).json()["id"]
    return {"token": token}


# Every write route as (method, the route as the OpenAPI document names it, the path, what to send), each of
# which the admin's credentials would make succeed.
def writes(world: dict[str, int]) -> list[tuple[str, str, str, dict]]:
    form, files = upload_form("victim", "2.0")
    upload = {"data": form, "files": files}
    return [
        ("POST", "upload", "/local/", upload),
        ("POST", "upload", "/local", upload),
        ("POST", "upload", "/", upload),
        ("POST", "/api/v1/repos", f"{API}/repos", {"json": {"name": "evil-repo", "repository_type": "hosted"}}),
        ("PATCH", "/api/v1/repos/{name}", f"{API}/repos/local", {"json": {"public": False}}),
        ("DELETE", "/api/v1/repos/{name}", f"{API}/repos/scratch", {}),
        ("DELETE", "/api/v1/repos/{name}/projects/{project}/{version}", f"{API}/repos/local/projects/victim/1.0", {}),
        ("DELETE", "/api/v1/repos/{name}/files/{filename}", f"{API}/repos/local/files/victim-1.0-py3-none-any.whl",
         {}),
        ("POST", "/api/v1/repos/{name}/projects/{project}/{version}/yank",
         f"{API}/repos/local/projects/victim/1.0/yank", {}),
        ("POST", "/api/v1/repos/{name}/projects/{project}/{version}/unyank",
         f"{API}/repos/local/projects/victim/0.9/unyank", {}),
        ("PUT", "/api/v1/repos/{name}/projects/{project}/status", f"{API}/repos/local/projects/victim/status",
         {"json": {"status": "quarantined"}}),
        ("PUT", "/api/v1/repos/{name}/permissions/{user}", f"{API}/repos/local/permissions/alice",
         {"json": {"level": "admin"}}),
        ("DELETE", "/api/v1/repos/{name}/permissions/{user}", f"{API}/repos/local/permissions/bob", {}),
        ("POST", "/api/v1/users", f"{API}/users",
         {"json": {"name": "mallory", "password": "mallory-password", "admin": True}}),
        ("DELETE", "/api/v1/users/{name}", f"{API}/users/alice", {}),
        ("PUT", "/api/v1/users/{name}/password", f"{API}/users/alice/password",
         {"json": {"password": "taken-over-password"}}),
        ("POST", "/api/v1/repos/{name}/cache/{project}/refresh", f"{API}/repos/pypi/cache/victim/refresh", {}),
        ("DELETE", "/api/v1/repos/{name}/cache/{project}", f"{API}/repos/pypi/cache/victim", {}),
        ("PUT", "/api/v1/repos/{name}/policy", f"{API}/repos/pypi/policy", {"json": {"mode": "report"}}),
        ("DELETE", "/api/v1/repos/{name}/policy", f"{API}/repos/pypi/policy", {}),
        ("POST", "/api/v1/tokens", f"{API}/tokens", {"json": {}}),
        ("DELETE", "/api/v1/tokens/{token_id}", f"{API}/tokens/{world['token']}", {}),
        ("POST", "login", "/login", {"data": {"next": "/"}}),
        ("POST", "ui", "/ui/local/victim/-/yank", {"data": {"version": "1.0", "reason": "x"}}),
        ("POST", "ui", "/ui/local/victim/-/unyank", {"data": {"version": "0.9"}}),
        ("POST", "ui", "/ui/local/victim/-/delete", {"data": {"filename": "victim-1.0-py3-none-any.whl",
                                                               "confirm": "on"}}),
        ("POST", "ui", "/ui/local/-/access", {"data": {"user": "alice", "level": "admin"}}),
        ("POST", "ui", "/ui/local/-/access/revoke", {"data": {"user": "bob"}}),
        ("POST", "ui", "/ui/-/account/tokens", {"data": {}}),
        ("POST", "ui", f"/ui/-/account/tokens/{world['token']}/revoke", {}),
        ("POST", "ui", "/ui/-/account/password", {"data": {"old_password": "x", "password": "taken-over-password",
                                                           "confirm": "taken-over-password"}}),
        ("POST", "ui", "/ui/-/logout", {}),
        ("PUT", "no route", "/ui/local/victim/", {"data": "x"}),
    ]


def test_the_list_holds_every_write_route_the_api_describes(live: LiveServer, world) -> None:
    """A write route added to the API later is added here too, or this fails."""
    document = requests.get(f"{live.url}{API}/openapi.json", timeout=10).json()
    described = {(method.upper(), path) for path, operations in document["paths"].items()
                 for method in operations if method != "get"}
    assert described <= {(method, route) for method, route, _path, _kwargs in writes(world)}


def state(live: LiveServer) -> dict:
    """Everything the writes could change, as the Simple API and the API show it. Every change pypilite makes
    is audited, so the audit trail without the refusals stands for what no listing shows (grants)."""
    json = {"Accept": "application/vnd.pypi.simple.v1+json"}
    events = api(live, "GET", "/admin/audit?limit=1000").json()["items"]
    return {
        "page": requests.get(f"{live.url}/local/simple/victim/", headers=json, timeout=10).json()["files"],
        "root": requests.get(f"{live.url}/local/simple/", headers=json, timeout=10).json()["projects"],
        "project": api(live, "GET", "/repos/local/projects/victim").json(),
        "repos": api(live, "GET", "/repos").json(),
        "users": api(live, "GET", "/users").json(),
        "tokens": api(live, "GET", "/tokens").json(),
        "changes": [e for e in events if e["action"] not in (ACTION, "login.failed")],
    }


def page_message(response: requests.Response) -> str:
    """A refusal's one line: the plain-text body, or the message a UI page shows."""
    if response.headers["Content-Type"].startswith("text/html"):
        found = re.search(r'<section class="error">\s*<h1>\d+</h1>\s*<p>([^<]*)</p>', response.text)
        return html.unescape(found.group(1)) if found else ""
    return response.text


def refusals(live: LiveServer) -> list[dict]:
    return api(live, "GET", f"/admin/audit?q={ACTION}&limit=1000").json()["items"]


@pytest.mark.parametrize("headers", CROSS_SITE.values(), ids=CROSS_SITE.keys())
def test_every_write_from_another_site_is_refused_and_changes_nothing(live: LiveServer, world, headers) -> None:
    before, audited = state(live), len(refusals(live))
    for method, _route, path, kwargs in writes(world):
        response = requests.request(method, f"{live.url}{path}", headers=headers, auth=admin(live), timeout=30,
                                    **kwargs)
        assert response.status_code == 403, (method, path, response.text)
        message = response.json()["error"] if path.startswith(API) else page_message(response)
        assert message.startswith("Cross-site request refused") and message.count("\n") <= 1, (method, path)
    assert state(live) == before
    after = refusals(live)
    new = after[:len(after) - audited]
    assert sorted((e["detail"]["method"], e["resource"]) for e in new) == sorted(
        (method, path) for method, _route, path, _kwargs in writes(world))
    for event in new:
        assert event["actor"] == "admin" and event["address"] == "127.0.0.1"
        assert {event["detail"].get("origin"), event["detail"].get("sec_fetch_site")} >= set(headers.values())


@pytest.mark.parametrize("auth", [None, ("admin", "wrong-password"), ("__token__", "pypl_unknown")],
                         ids=["anonymous", "wrong-password", "unknown-token"])
def test_a_refusal_stays_a_403_whatever_the_credentials(live: LiveServer, world, auth) -> None:
    """Without right credentials a refusal is only logged: anyone can send these as often as they like, and an
    audit entry each would let them grow the database and hold its write lock at will."""
    audited = len(refusals(live))
    form, files = upload_form("victim", "3.0")
    for _ in range(20):
        response = requests.post(f"{live.url}/local/", data=form, files=files, auth=auth,
                                 headers={"Sec-Fetch-Site": "cross-site"}, timeout=30)
        assert response.status_code == 403 and "WWW-Authenticate" not in response.headers
    assert len(refusals(live)) == audited
    assert "victim-3.0-py3-none-any.whl" not in {f["filename"] for f in state(live)["page"]}


# What writes still carry, by a name that doubles as the project and user each one writes.
ALLOWED: dict[str, Callable[[LiveServer], dict[str, str]]] = {
    "plain": lambda live: {},  # twine, uv, poetry, pdm, curl
    "same-origin": lambda live: {"Sec-Fetch-Site": "same-origin"},
    "typed": lambda live: {"Sec-Fetch-Site": "none"},  # the user typed the address
    "own-origin": lambda live: {"Origin": live.url},
    "own-origin-same-origin": lambda live: {"Origin": live.url, "Sec-Fetch-Site": "same-origin"},
    "proxied": lambda live: {**PROXIED, "Origin": "https://pkgs.example.test"},
    "proxied-default-port": lambda live: {**PROXIED, "Origin": "https://PKGS.example.test:443"},
}


@pytest.mark.parametrize("name", ALLOWED)
def test_writes_from_this_server_and_from_clients_still_work(live: LiveServer, world, name: str) -> None:
    headers = ALLOWED[name](live)

    def call(method: str, path: str, **kwargs) -> requests.Response:
        return requests.request(method, f"{live.url}{path}", headers=headers, auth=admin(live), timeout=30,
                                **kwargs)

    form, files = upload_form(name, "1.0")
    assert call("POST", "/local/", data=form, files=files).status_code == 200
    assert call("POST", f"{API}/repos/local/projects/{name}/1.0/yank", json={"reason": "x"}).json()["yanked"]
    assert call("POST", f"{API}/repos/local/projects/{name}/1.0/unyank").json()["yanked"] is False
    assert call("POST", f"{API}/users", json={"name": name, "password": "long-enough"}).status_code == 201
    assert call("PUT", f"{API}/repos/local/permissions/{name}", json={"level": "read"}).status_code == 201
    assert call("DELETE", f"{API}/repos/local/permissions/{name}").status_code == 204
    token = call("POST", f"{API}/tokens", json={"user": name})
    assert token.status_code == 201
    assert call("DELETE", f"{API}/tokens/{token.json()['id']}").status_code == 204
    assert call("DELETE", f"{API}/users/{name}").status_code == 204
    assert call("DELETE", f"{API}/repos/local/projects/{name}/1.0").status_code == 204


def test_twine_and_uv_publish_unchanged(live: LiveServer, world, client_env, tmp_path: Path) -> None:
    wheels = [write(tmp_path, f"published_{tool}-1.0-py3-none-any.whl", wheel_bytes(f"published-{tool}", "1.0"))
              for tool in ("twine", "uv")]
    run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
         f"{live.url}/local/", "-u", "admin", f"--password={live.admin_password}", wheels[0]], env=client_env)
    run([uv(), "publish", "--publish-url", f"{live.url}/local/", "--username", "admin",
         f"--password={live.admin_password}", "--trusted-publishing", "never", "--no-progress", wheels[1]],
        env=client_env)
    root = requests.get(f"{live.url}/local/simple/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                        timeout=10).json()["projects"]
    assert {"published-twine", "published-uv"} <= {p["name"] for p in root}


# --- the API takes bodies only as JSON ------------------------------------------------------------------------

NOT_JSON = {
    "form": {"data": {"reason": "x"}},
    "empty form": {"data": "", "headers": {"Content-Type": "application/x-www-form-urlencoded"}},
    "multipart": {"files": {"reason": ("reason.txt", b"x")}},
    "text/plain JSON": {"data": '{"reason": "x"}', "headers": {"Content-Type": "text/plain"}},
    "no content type": {"data": b'{"reason": "x"}'},
}


@pytest.mark.parametrize("kwargs", NOT_JSON.values(), ids=NOT_JSON.keys())
def test_api_bodies_that_are_not_json_are_415(live: LiveServer, world, kwargs) -> None:
    before = state(live)
    for path in ("/repos/local/projects/victim/1.0/yank", "/repos/local/projects/victim/0.9/unyank", "/users",
                 "/tokens"):
        response = requests.post(f"{live.url}{API}{path}", auth=admin(live), timeout=10, **kwargs)
        assert response.status_code == 415, (path, response.text)
        assert response.json() == {"error": "Unsupported body: the API takes JSON, sent with Content-Type: "
                                            "application/json"}
    assert state(live) == before


def test_json_and_bodiless_api_writes_work(live: LiveServer, world) -> None:
    form, files = upload_form("bodies", "1.0")
    assert requests.post(f"{live.url}/local/", data=form, files=files, auth=admin(live), timeout=30).ok
    yank = f"{live.url}{API}/repos/local/projects/bodies/1.0/yank"
    bodiless = requests.post(yank, auth=admin(live), timeout=10)
    assert bodiless.status_code == 200 and bodiless.json()["yanked_reason"] == ""
    typed = requests.post(yank, data='{"reason": "typed"}', auth=admin(live), timeout=10,
                          headers={"Content-Type": "application/json; charset=utf-8"})
    assert typed.json()["yanked_reason"] == "typed"
    token = requests.post(f"{live.url}{API}/tokens", auth=admin(live), timeout=10)  # every field is optional
    assert token.status_code == 201 and token.json()["user"] == "admin"
    unyank = requests.post(f"{live.url}{API}/repos/local/projects/bodies/1.0/unyank", auth=admin(live), timeout=10)
    assert unyank.status_code == 200 and unyank.json()["yanked"] is False
    patched = requests.patch(f"{live.url}{API}/repos/scratch", data='{"allow_overwrite": true}', auth=admin(live),
                             headers={"Content-Type": "application/merge-patch+json"}, timeout=10)
    assert patched.status_code == 200 and patched.json()["allow_overwrite"] is True
    assert requests.delete(f"{live.url}{API}/repos/local/projects/bodies/1.0", auth=admin(live), timeout=10).ok


# --- /login ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("site", ["cross-site", "same-site"])
@pytest.mark.parametrize("auth", [None, "admin"])
def test_another_sites_link_to_login_only_leads_home(live: LiveServer, site: str, auth) -> None:
    response = requests.get(f"{live.url}/login?next=/ui/local/", headers={"Sec-Fetch-Site": site},
                            auth=admin(live) if auth else None, allow_redirects=False, timeout=10)
    assert response.status_code == 302 and response.headers["Location"] == "./"
    assert "WWW-Authenticate" not in response.headers


@pytest.mark.parametrize("site", ["same-origin", "none", None])
def test_this_servers_own_link_to_login_still_logs_in(live: LiveServer, site) -> None:
    headers = {"Sec-Fetch-Site": site} if site else {}
    challenged = requests.get(f"{live.url}/login?next=/ui/local/", headers=headers, allow_redirects=False, timeout=10)
    assert challenged.status_code == 401 and challenged.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    logged_in = requests.get(f"{live.url}/login?next=/ui/local/", headers=headers, auth=admin(live),
                             allow_redirects=False, timeout=10)
    assert logged_in.status_code == 302 and logged_in.headers["Location"] == "ui/local/"
