"""The rules every request meets before its view, in-process: which origins are this server's own, what
Sec-Fetch-Site values pass, that a refusal is audited and stays a 403 whatever happens to the credentials or
the audit trail, which API bodies are JSON, and the 1 MiB cap on bodies that are not uploads; then where
/login may send a browser back to, and who sees /health's free disk."""

from __future__ import annotations

import io
import json

import pytest

from pypilite import audit, tokens, users
from pypilite.audit import Actor
from pypilite.models import AuditEvent
from pypilite.web.crosssite import ACTION
from pypilite.web.forwarded import client_address
from tests.conftest import Index, basic
from tests.distfactory import wheel_bytes

ACTOR = Actor("test", "local")
MiB = 1024 * 1024
# The test client's request goes to http://localhost from 127.0.0.1.
PROXY = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "pkgs.example.test"}


def write(index: Index, headers: dict[str, str], remote: str = "127.0.0.1", auth: dict[str, str] | None = None):
    """A write that changes nothing when let through: deleting a user that does not exist (404)."""
    return index.client.delete("/api/v1/users/nobody", headers={**(index.auth if auth is None else auth), **headers},
                               environ_base={"REMOTE_ADDR": remote})


@pytest.mark.parametrize("headers", [
    {},
    {"Origin": "http://localhost"},
    {"Origin": "http://LocalHost:80"},
    {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    {"Sec-Fetch-Site": "none"},
    {"Sec-Fetch-Site": "Same-Origin"},
    {**PROXY, "Origin": "https://pkgs.example.test"},
    {**PROXY, "Origin": "https://pkgs.example.test:443"},
    {"X-Forwarded-Proto": "https", "Origin": "https://localhost"},
])
def test_own_origins_pass(index: Index, headers: dict[str, str]) -> None:
    assert write(index, headers).status_code == 404


@pytest.mark.parametrize("headers, remote", [
    ({"Origin": "null"}, "127.0.0.1"),
    ({"Origin": ""}, "127.0.0.1"),
    ({"Origin": "http://localhost:8080"}, "127.0.0.1"),
    ({"Origin": "https://localhost"}, "127.0.0.1"),
    ({"Origin": "http://localhost/"}, "127.0.0.1"),
    ({"Origin": "http://evil@localhost"}, "127.0.0.1"),
    ({"Origin": "http://localhost.evil.example"}, "127.0.0.1"),
    ({"Origin": "http://localhost:99999"}, "127.0.0.1"),
    ({"Origin": "file://"}, "127.0.0.1"),
    ({"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"}, "127.0.0.1"),
    ({"Sec-Fetch-Site": "same-site"}, "127.0.0.1"),
    ({"Sec-Fetch-Site": "something-new"}, "127.0.0.1"),
    ({**PROXY, "Origin": "https://pkgs.example.test"}, "192.0.2.7"),  # only a proxy on this machine is believed
    ({"X-Forwarded-Host": "evil.example/x", "Origin": "http://evil.example"}, "127.0.0.1"),
])
def test_other_origins_are_refused(index: Index, headers: dict[str, str], remote: str) -> None:
    response = write(index, headers, remote)
    assert response.status_code == 403 and response.json["error"].startswith("Cross-site request refused")


def test_public_url_is_an_own_origin(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"public_url": "https://pypi.corp.example/index/"}})
    assert write(index, {"Origin": "https://pypi.corp.example"}, remote="192.0.2.7").status_code == 404
    assert write(index, {"Origin": "https://corp.example"}, remote="192.0.2.7").status_code == 403


@pytest.mark.parametrize("method", ["get", "head", "options"])
def test_reading_is_never_refused(index: Index, method: str) -> None:
    response = getattr(index.client, method)("/api/v1/users", headers={**index.auth, "Sec-Fetch-Site": "cross-site",
                                                                       "Origin": "http://evil.example"})
    assert response.status_code in (200, 204)


def refusals(index: Index) -> list[AuditEvent]:
    return index.run(lambda: list(AuditEvent.select().where(AuditEvent.action == ACTION).order_by(AuditEvent.id)))


def test_a_refusal_is_audited_with_what_decided_it(index: Index) -> None:
    index.run(users.create_user, "dev", "dev-password", ACTOR)
    write(index, {"Origin": "http://evil.example", "Sec-Fetch-Site": "cross-site"}, auth=basic("dev", "dev-password"))
    write(index, {"Origin": "http://evil.example"}, auth=basic("dev", "wrong-password"))
    write(index, {"Sec-Fetch-Site": "same-site"}, auth={})
    # Only the refusal that came with a user's credentials is audited: anyone may send the others, endlessly.
    (user,) = refusals(index)
    assert (user.actor, user.resource_type, user.resource, user.address) == ("dev", "request", "/api/v1/users/nobody",
                                                                             "127.0.0.1")
    assert json.loads(user.detail) == {"method": "DELETE", "header": "Sec-Fetch-Site", "sec_fetch_site": "cross-site",
                                       "origin": "http://evil.example"}


def test_failing_credentials_and_a_failing_audit_leave_a_403(index: Index, monkeypatch, caplog) -> None:
    wrong = write(index, {"Origin": "http://evil.example"}, auth=basic("admin", "wrong-password"))
    assert wrong.status_code == 403 and "WWW-Authenticate" not in wrong.headers

    def broken(*args, **kwargs):
        raise OSError(28, "No space left on device")
    monkeypatch.setattr(audit, "record", broken)
    assert write(index, {"Origin": "http://evil.example"}, auth=index.auth).status_code == 403
    assert "could not record a refused cross-site DELETE /api/v1/users/nobody" in caplog.text


# --- JSON only to the API ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [
    {"data": {"name": "x"}},
    {"data": "", "content_type": "application/x-www-form-urlencoded"},
    {"data": {"name": (io.BytesIO(b"x"), "x.txt")}, "content_type": "multipart/form-data"},
    {"data": '{"name": "x", "password": "long-enough"}', "content_type": "text/plain"},
    {"data": '{"name": "x", "password": "long-enough"}'},
    {"data": '{"name": "x", "password": "long-enough"}', "content_type": "application/jsonx"},
], ids=["form", "empty-form", "multipart", "text-plain", "untyped", "not-quite-json"])
def test_api_bodies_that_are_not_json_are_415(index: Index, kwargs) -> None:
    response = index.client.post("/api/v1/users", headers=index.auth, **kwargs)
    assert response.status_code == 415 and "application/json" in response.json["error"]
    assert index.get("/api/v1/users", headers=index.auth).json["items"][-1]["name"] == "admin"


@pytest.mark.parametrize("content_type", ["application/json", "application/json; charset=utf-8",
                                          "application/merge-patch+json"])
def test_json_bodies_pass(index: Index, content_type: str) -> None:
    response = index.client.post("/api/v1/users", headers=index.auth, content_type=content_type,
                                 data='{"name": "jay", "password": "long-enough"}')
    assert response.status_code == 201, response.get_data(as_text=True)


def test_bodiless_writes_need_no_content_type(index: Index) -> None:
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    assert index.client.post("/api/v1/repos/local/projects/demo/1.0/yank", headers=index.auth).json["yanked"]
    assert index.client.post("/api/v1/repos/local/projects/demo/1.0/unyank", headers=index.auth).status_code == 200
    assert index.client.delete("/api/v1/repos/local/projects/demo/1.0", headers=index.auth).status_code == 204


# --- bodies past 1 MiB ---------------------------------------------------------------------------------------

class Counting(io.BytesIO):
    """A request body that counts what the server read of it."""

    taken = 0

    def read(self, size: int = -1) -> bytes:
        data = super().read(size)
        self.taken += len(data)
        return data

    def readinto(self, buffer) -> int:
        count = super().readinto(buffer)
        self.taken += count
        return count


def test_a_body_over_the_cap_is_refused_unread(index: Index) -> None:
    body = Counting(b"{" + b" " * MiB + b"}")
    response = index.client.post("/api/v1/tokens", headers=index.auth, input_stream=body,
                                 content_type="application/json", content_length=MiB + 2)
    assert response.status_code == 413 and response.json == {
        "error": "Request body too large: at most 1 MiB outside uploads"}
    assert body.taken == 0
    page = index.client.get("/simple/", environ_overrides={"CONTENT_LENGTH": str(MiB + 1)})
    assert page.status_code == 413 and page.mimetype == "text/plain"


def test_a_long_body_from_another_site_is_still_audited_as_such(index: Index) -> None:
    body = Counting(b"x" * (MiB + 1))
    response = index.client.post("/api/v1/tokens", headers={**index.auth, "Origin": "http://evil.example"},
                                 input_stream=body, content_type="text/plain", content_length=MiB + 1)
    assert response.status_code == 403 and body.taken == 0
    assert [e.resource for e in refusals(index)] == ["/api/v1/tokens"]


def test_a_chunked_body_is_read_no_further_than_the_cap(index: Index) -> None:
    body = Counting(b'{"read_only": "' + b"x" * (8 * MiB))
    response = index.client.post("/api/v1/tokens", headers={**index.auth, "Transfer-Encoding": "chunked"},
                                 input_stream=body, content_type="application/json",
                                 environ_overrides={"wsgi.input_terminated": True})
    assert response.status_code in (400, 413) and body.taken <= MiB


def test_uploads_keep_their_own_limit(index: Index) -> None:
    data = wheel_bytes("big", "1.0", payload=b"\0" * (3 * MiB))
    assert index.upload("big-1.0-py3-none-any.whl", data).status_code == 200


# --- the login link and /health ------------------------------------------------------------------------------

@pytest.mark.parametrize("target, location", [
    ("/?q=hello", "./?q=hello"), ("/ui/local/", "ui/local/"), ("/https:evil.example", "./https:evil.example"),
    ("/ui/a:b/", "ui/a:b/"), ("/#top", "./#top"), ("/\tx", "./"), ("/ü", "./"),
])
def test_login_goes_back_to_a_path_on_this_server(index: Index, target: str, location: str) -> None:
    response = index.get("/login", query_string={"next": target}, headers=index.auth)
    assert response.headers["Location"] == location


def test_private_health_tells_the_free_disk_to_full_power_admins_only(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"public_metrics": False}})
    index.run(users.create_user, "dev", "dev-password", ACTOR)
    read_only = index.run(tokens.create_token, "admin", ACTOR, read_only=True)[1]
    narrowed = index.run(tokens.create_token, "admin", ACTOR, repos=("local",))[1]
    for auth, sees in ((index.auth, True), (basic("__token__", read_only), True), ({}, False),
                       (basic("__token__", narrowed), False), (basic("dev", "dev-password"), False),
                       (basic("admin", "wrong"), False)):
        body = index.get("/health", headers=auth).json
        assert body["status"] == "ok" and body["disk"] == "ok"
        assert ("free_bytes" in body and "min_free_bytes" in body) is sees, auth


@pytest.mark.parametrize("peer, forwarded, address", [
    ("127.0.0.1", "198.51.100.7", "198.51.100.7"),  # nginx on this machine appended the client's address
    ("127.0.0.1", "10.0.0.1, 198.51.100.7", "198.51.100.7"),  # the hops before are the client's own word
    ("::1", "2001:db8::5", "2001:db8::5"),
    ("::ffff:127.0.0.1", "198.51.100.7", "198.51.100.7"),  # gunicorn bound to "::" sees IPv4 peers so
    ("127.0.0.1", "198.51.100.7, not-an-address", "127.0.0.1"),
    ("127.0.0.1", None, "127.0.0.1"),
    ("203.0.113.9", "198.51.100.7", "203.0.113.9"),  # a peer elsewhere is not believed
])
def test_the_client_address_is_the_hop_a_proxy_on_this_machine_appended(peer, forwarded, address) -> None:
    environ = {"REMOTE_ADDR": peer, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})}
    assert client_address(environ) == address
