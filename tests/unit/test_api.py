"""/api/v1 for users, tokens, permissions and the audit log: rights, shapes, and malformed bodies."""

from __future__ import annotations

import pytest

from pypilite import audit, cli, grants, users
from pypilite.audit import Actor
from pypilite.auth import ADDRESS_FAILURES
from tests.conftest import Index, basic
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

ACTOR = Actor("test", "local")


@pytest.fixture
def api(tmp_path) -> Index:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "team", "repository_type": "hosted", "public": False}], "server": {"default_repository": "team"}})
    index.run(users.create_user, "alice", "alice-password", ACTOR)
    index.run(users.create_user, "boss", "boss-password", ACTOR)
    index.run(grants.set_grant, "boss", "team", "admin", ACTOR)
    return index


ALICE = basic("alice", "alice-password")
BOSS = basic("boss", "boss-password")


def call(index: Index, method: str, url: str, headers=None, **kwargs):
    return getattr(index.client, method)(url, headers=index.auth if headers is None else headers, **kwargs)


def assert_error(response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json"
    assert words in response.json["error"]


def test_user_lifecycle(api: Index) -> None:
    created = call(api, "post", "/api/v1/users", json={"name": "carol", "password": "carol-password"})
    assert created.status_code == 201
    assert created.json == {"name": "carol", "admin": False, "robot": False, "created": created.json["created"]}
    names = [u["name"] for u in call(api, "get", "/api/v1/users").json["items"]]
    assert names == ["admin", "alice", "boss", "carol"]
    assert call(api, "get", "/api/v1/users").json["next"] is None
    assert call(api, "delete", "/api/v1/users/carol").status_code == 204
    assert_error(call(api, "delete", "/api/v1/users/carol"), 404, "not found")


@pytest.mark.parametrize("body, status, words", [
    ({"name": "alice", "password": "another-password"}, 409, "already exists"),
    ({"name": "bad name", "password": "long-enough"}, 400, "invalid user name"),
    ({"name": "__token__", "password": "long-enough"}, 400, "invalid user name"),
    ({"name": "r2", "password": "long-enough", "robot": True}, 400, "tokens only"),
    ({"name": "short", "password": "x"}, 400, "at least 8"),
    ({"name": "nopass"}, 400, "password is required"),
    ({"password": "long-enough"}, 400, "missing field 'name'"),
    ({"name": "x", "password": "long-enough", "admin": "yes"}, 400, "wrong type"),
    ({"name": 5, "password": "long-enough"}, 400, "wrong type"),
    ({"name": "x", "password": "long-enough", "colour": "red"}, 400, "unknown field 'colour'"),
    ([1, 2], 400, "JSON object"),
])
def test_create_user_refusals(api: Index, body, status: int, words: str) -> None:
    assert_error(call(api, "post", "/api/v1/users", json=body), status, words)


def test_a_write_whose_fields_are_all_optional_needs_no_body(api: Index) -> None:
    created = call(api, "post", "/api/v1/tokens", headers=ALICE)
    assert created.status_code == 201 and created.json["user"] == "alice" and created.json["read_only"] is False
    assert_error(call(api, "post", "/api/v1/users"), 400, "missing field 'name'")


def test_a_json_body_that_does_not_parse_says_so(api: Index) -> None:
    response = call(api, "post", "/api/v1/tokens", headers=ALICE, data="{", content_type="application/json")
    assert_error(response, 400, "not valid JSON")


def test_create_user_with_a_body_that_is_not_json(api: Index) -> None:
    response = call(api, "post", "/api/v1/users", data="name=x", content_type="application/x-www-form-urlencoded")
    assert_error(response, 415, "application/json")


def test_robot_creation(api: Index) -> None:
    response = call(api, "post", "/api/v1/users", json={"name": "ci-bot", "robot": True})
    assert response.status_code == 201 and response.json["robot"] is True


@pytest.mark.parametrize("method, url", [("get", "/api/v1/users"), ("post", "/api/v1/users"),
                                         ("delete", "/api/v1/users/alice"), ("get", "/api/v1/admin/audit")])
def test_admin_only_endpoints(api: Index, method: str, url: str) -> None:
    kwargs = {"json": {"name": "x", "password": "long-enough"}} if method == "post" else {}
    anonymous = call(api, method, url, headers={}, **kwargs)
    assert_error(anonymous, 401)
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    assert_error(call(api, method, url, headers=ALICE, **kwargs), 403)
    assert_error(call(api, method, url, headers=BOSS, **kwargs), 403)


def test_the_last_admin_cannot_be_removed(api: Index) -> None:
    assert_error(call(api, "delete", "/api/v1/users/admin"), 409, "last administrator")


def test_token_lifecycle_for_oneself(api: Index) -> None:
    created = call(api, "post", "/api/v1/tokens", headers=ALICE, json={"read_only": True, "expires_days": 30})
    assert created.status_code == 201
    body = created.json
    assert body["token"].startswith("pypl_") and body["user"] == "alice" and body["read_only"] is True
    assert body["expires"] is not None and body["repos"] is None
    listed = call(api, "get", "/api/v1/tokens", headers=ALICE).json["items"]
    assert [t["id"] for t in listed] == [body["id"]] and "token" not in listed[0]
    # A read-only token may read packages, not see or manage tokens.
    assert_error(call(api, "get", "/api/v1/tokens", headers=basic("__token__", body["token"])), 403, "read-only")
    assert call(api, "delete", f"/api/v1/tokens/{body['id']}", headers=ALICE).status_code == 204
    assert call(api, "get", "/api/v1/tokens", headers=basic("__token__", body["token"])).status_code == 401


def test_tokens_for_others_need_an_admin(api: Index) -> None:
    assert_error(call(api, "post", "/api/v1/tokens", headers=ALICE, json={"user": "boss"}), 403)
    robot = call(api, "post", "/api/v1/users", json={"name": "ci", "robot": True})
    assert robot.status_code == 201
    made = call(api, "post", "/api/v1/tokens", json={"user": "ci", "repos": ["team"]})
    assert made.status_code == 201 and made.json["repos"] == ["team"] and made.json["user"] == "ci"
    assert_error(call(api, "get", "/api/v1/tokens?user=ci", headers=ALICE), 403)
    assert [t["user"] for t in call(api, "get", "/api/v1/tokens?user=ci").json["items"]] == ["ci"]
    assert_error(call(api, "delete", f"/api/v1/tokens/{made.json['id']}", headers=ALICE), 403)


@pytest.mark.parametrize("body, status, words", [
    ({"repos": ["nope"]}, 404, "not found"),
    ({"repos": "team"}, 400, "wrong type"),
    ({"repos": [1]}, 400, "list of repository names"),
    ({"expires_days": 0}, 400, "expires_days"),
    ({"expires_days": True}, 400, "wrong type"),
    ({"user": "ghost"}, 404, "not found"),
    ({"scope": "all"}, 400, "unknown field"),
])
def test_create_token_refusals(api: Index, body, status: int, words: str) -> None:
    assert_error(call(api, "post", "/api/v1/tokens", json=body), status, words)


def test_a_token_narrowed_to_a_private_repository_tells_no_outsider_it_exists(api: Index) -> None:
    hidden = call(api, "post", "/api/v1/tokens", headers=ALICE, json={"repos": ["team"]})
    missing = call(api, "post", "/api/v1/tokens", headers=ALICE, json={"repos": ["maet"]})
    assert (hidden.status_code, hidden.json["error"].replace("team", "maet")) == (404, missing.json["error"])


def test_restricted_tokens_cannot_mint_tokens(api: Index) -> None:
    secret = call(api, "post", "/api/v1/tokens", headers=ALICE, json={"read_only": True}).json["token"]
    assert_error(call(api, "post", "/api/v1/tokens", headers=basic("alice", secret), json={}), 403)


def test_revoking_an_unknown_token_is_404(api: Index) -> None:
    assert_error(call(api, "delete", "/api/v1/tokens/999"), 404)


def test_permissions_by_repository_admin(api: Index) -> None:
    url = "/api/v1/repos/team/permissions/alice"
    assert_error(call(api, "put", url, headers=ALICE, json={"level": "admin"}), 403)
    created = call(api, "put", url, headers=BOSS, json={"level": "read"})
    assert created.status_code == 201 and created.json == {"user": "alice", "repository": "team", "level": "read"}
    assert call(api, "get", "/team/simple/", headers=ALICE).status_code == 200
    assert call(api, "put", url, headers=BOSS, json={"level": "upload"}).status_code == 200
    upload = api.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="team", auth=ALICE)
    assert upload.status_code == 200
    assert call(api, "delete", url, headers=BOSS).status_code == 204
    assert call(api, "get", "/team/simple/", headers=ALICE).status_code == 403
    assert_error(call(api, "delete", url, headers=BOSS), 404, "no grant")


def test_grants_are_listed_per_repository_to_its_admins_and_per_user_to_themselves(api: Index) -> None:
    api.run(grants.set_grant, "alice", "team", "read", ACTOR)
    by_repo = call(api, "get", "/api/v1/repos/team/permissions", headers=BOSS)
    assert by_repo.status_code == 200 and by_repo.json == {"items": [
        {"user": "alice", "repository": "team", "level": "read"},
        {"user": "boss", "repository": "team", "level": "admin"}], "next": None}
    assert call(api, "get", "/api/v1/repos/team/permissions").json == by_repo.json  # a global admin
    assert_error(call(api, "get", "/api/v1/repos/team/permissions", headers=ALICE), 403, "may not administer")
    assert_error(call(api, "get", "/api/v1/repos/team/permissions", headers={}), 401)
    assert_error(call(api, "get", "/api/v1/repos/nope/permissions"), 404, "repository 'nope'")
    own = call(api, "get", "/api/v1/users/alice/permissions", headers=ALICE)
    assert own.json["items"] == [{"user": "alice", "repository": "team", "level": "read"}]
    assert call(api, "get", "/api/v1/users/alice/permissions").json == own.json
    assert_error(call(api, "get", "/api/v1/users/boss/permissions", headers=ALICE), 403, "other users' grants")
    assert_error(call(api, "get", "/api/v1/users/alice/permissions", headers={}), 401)
    assert_error(call(api, "get", "/api/v1/users/ghost/permissions"), 404, "user 'ghost'")


def test_a_narrowed_or_read_only_token_lists_grants_only_as_far_as_it_reaches(api: Index) -> None:
    def token(**body) -> dict[str, str]:
        secret = call(api, "post", "/api/v1/tokens", headers=BOSS, json=body).json["token"]
        return basic("__token__", secret)

    narrowed, read_only = token(repos=["team"]), token(read_only=True)
    assert_error(call(api, "get", "/api/v1/users/boss/permissions", headers=narrowed), 403, "narrowed token")
    assert call(api, "get", "/api/v1/users/boss/permissions", headers=read_only).status_code == 200
    assert_error(call(api, "get", "/api/v1/repos/team/permissions", headers=read_only), 403, "read-only")


@pytest.mark.parametrize("url, body, status, words", [
    ("/api/v1/repos/team/permissions/alice", {"level": "owner"}, 400, "level must be one of"),
    ("/api/v1/repos/team/permissions/alice", {}, 400, "missing field 'level'"),
    ("/api/v1/repos/team/permissions/alice", {"level": 3}, 400, "wrong type"),
    ("/api/v1/repos/team/permissions/ghost", {"level": "read"}, 404, "user 'ghost'"),
    ("/api/v1/repos/nope/permissions/alice", {"level": "read"}, 404, "repository 'nope'"),
])
def test_permission_refusals(api: Index, url: str, body, status: int, words: str) -> None:
    assert_error(call(api, "put", url, json=body), status, words)


def test_audit_log_records_who_what_where(api: Index) -> None:
    call(api, "get", "/team/simple/", headers=basic("alice", "nope"), environ_base={"REMOTE_ADDR": "10.2.3.4"})
    call(api, "put", "/api/v1/repos/team/permissions/alice", headers=BOSS, json={"level": "upload"},
         environ_base={"REMOTE_ADDR": "10.5.5.5"})
    api.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="team", auth=ALICE)
    events = call(api, "get", "/api/v1/admin/audit").json["items"]
    actions = [e["action"] for e in events]
    assert actions[:3] == ["file.upload", "grant.set", "login.failed"]
    upload, grant, failed = events[:3]
    assert (upload["actor"], upload["resource_type"], upload["resource"]) == ("alice", "file",
                                                                             "team/demo-1.0-py3-none-any.whl")
    assert (grant["actor"], grant["address"], grant["detail"]) == ("boss", "10.5.5.5",
                                                                  {"level": "upload", "user": "alice"})
    assert (failed["actor"], failed["address"]) == ("alice", "10.2.3.4")
    assert set(upload) == {"id", "time", "actor", "action", "resource_type", "resource", "address", "detail"}


def test_audit_filters_and_pages(api: Index) -> None:
    for n in range(5):
        call(api, "post", "/api/v1/users", json={"name": f"user{n}", "password": "long-enough"})
    assert {e["resource_type"] for e in call(api, "get", "/api/v1/admin/audit?resource_type=repository")
            .json["items"]} == {"repository"}
    assert [e["resource"] for e in call(api, "get", "/api/v1/admin/audit?q=user3").json["items"]] == ["user3"]
    first = call(api, "get", "/api/v1/admin/audit?resource_type=user&limit=2").json
    assert len(first["items"]) == 2 and first["next"] is not None
    second = call(api, "get", f"/api/v1/admin/audit?resource_type=user&limit=2&cursor={first['next']}").json
    assert second["items"][0]["id"] < first["items"][-1]["id"]
    assert_error(call(api, "get", "/api/v1/admin/audit?limit=ten"), 400, "limit")


def test_unknown_api_urls_answer_json(api: Index) -> None:
    assert_error(call(api, "get", "/api/v1/nothing"), 404)


def test_integers_beyond_the_database_are_refused_not_crashed(api: Index) -> None:
    assert_error(call(api, "get", f"/api/v1/admin/audit?cursor={2**63}"), 400, "between")
    assert_error(call(api, "get", "/api/v1/admin/audit?limit=-5"), 400, "between")
    assert_error(call(api, "delete", f"/api/v1/tokens/{2**64}"), 404)


def test_a_user_changes_their_own_password_with_the_old_one(api: Index) -> None:
    url = "/api/v1/users/alice/password"
    assert call(api, "put", url, headers=ALICE, json={"password": "alice-new-password",
                                                      "old_password": "alice-password"}).status_code == 204
    assert call(api, "get", "/api/v1/tokens", headers=ALICE).status_code == 401
    assert call(api, "get", "/api/v1/tokens", headers=basic("alice", "alice-new-password")).status_code == 200
    [event] = [e for e in call(api, "get", "/api/v1/admin/audit").json["items"] if e["action"] == "user.password"]
    assert (event["actor"], event["resource"]) == ("alice", "alice")


def test_a_global_admin_sets_anyones_password(api: Index) -> None:
    assert call(api, "put", "/api/v1/users/alice/password", json={"password": "set-by-admin"}).status_code == 204
    assert call(api, "get", "/api/v1/tokens", headers=basic("alice", "set-by-admin")).status_code == 200
    assert_error(call(api, "put", "/api/v1/users/ghost/password", json={"password": "set-by-admin"}), 404, "ghost")


@pytest.mark.parametrize("user, body, status, words", [
    ("alice", {"password": "alice-new-password", "old_password": "wrong-password"}, 403, "old password is wrong"),
    ("alice", {"password": "alice-new-password"}, 403, "old_password"),
    ("boss", {"password": "boss-new-password", "old_password": "boss-password"}, 403, "only administrators"),
    ("ghost", {"password": "ghost-password", "old_password": "alice-password"}, 403, "only administrators"),
    ("alice", {"password": "short", "old_password": "alice-password"}, 400, "at least 8"),
    ("alice", {"old_password": "alice-password"}, 400, "missing field 'password'"),
    ("alice", {"password": "alice-new-password", "admin": True}, 400, "unknown field"),
])
def test_password_change_refusals(api: Index, user: str, body, status: int, words: str) -> None:
    assert_error(call(api, "put", f"/api/v1/users/{user}/password", headers=ALICE, json=body), status, words)
    assert call(api, "get", "/api/v1/tokens", headers=ALICE).status_code == 200  # unchanged


def test_password_change_needs_credentials_and_a_full_token(api: Index) -> None:
    body = {"password": "alice-new-password", "old_password": "alice-password"}
    anonymous = call(api, "put", "/api/v1/users/alice/password", headers={}, json=body)
    assert_error(anonymous, 401)
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    secret = call(api, "post", "/api/v1/tokens", headers=ALICE, json={"read_only": True}).json["token"]
    assert_error(call(api, "put", "/api/v1/users/alice/password", headers=basic("__token__", secret), json=body),
                 403, "read-only")


def test_guessing_the_old_password_with_a_token_is_throttled_as_logins_are(api: Index) -> None:
    secret = call(api, "post", "/api/v1/tokens", headers=ALICE, json={}).json["token"]
    token = basic("__token__", secret)
    for n in range(ADDRESS_FAILURES):
        guess = {"password": "alice-new-password", "old_password": f"guess-{n:04d}"}
        assert_error(call(api, "put", "/api/v1/users/alice/password", headers=token, json=guess), 403, "wrong")
    guess = {"password": "alice-new-password", "old_password": "one-guess-more"}
    assert_error(call(api, "put", "/api/v1/users/alice/password", headers=token, json=guess), 429, "Too many")
    events = api.run(audit.query, resource_type="user", q="alice")
    assert sum(e.action == "login.failed" for e in events) == ADDRESS_FAILURES


@pytest.fixture
def proxied(tmp_path):
    upstream = Upstream(tmp_path / "upstream", [wheel("demo", "1.0"), wheel("demo", "2.0")], json_api=True).start()
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1}]})
    index.run(users.create_user, "boss", "boss-password", ACTOR)
    index.run(grants.set_grant, "boss", "local", "admin", ACTOR)
    yield index, upstream
    upstream.stop()


def test_cache_refresh_and_forget_through_the_api(proxied) -> None:
    index, upstream = proxied
    refreshed = call(index, "post", "/api/v1/repos/pypi/cache/Demo/refresh")
    assert refreshed.status_code == 200 and refreshed.json == {"repository": "pypi", "project": "Demo", "files": 2}
    assert upstream.log.count("/demo/") == 1
    assert call(index, "delete", "/api/v1/repos/pypi/cache/demo").status_code == 204
    assert_error(call(index, "delete", "/api/v1/repos/pypi/cache/demo"), 404, "not cached")
    events = call(index, "get", "/api/v1/admin/audit?resource_type=repository").json["items"]
    assert [(e["action"], e["actor"], e["detail"]) for e in events[:2]] == [
        ("cache.forget", "admin", {"project": "demo"}), ("cache.refresh", "admin", {"project": "demo"})]


@pytest.mark.parametrize("method, url, headers, status, words", [
    ("post", "/api/v1/repos/pypi/cache/demo/refresh", {}, 401, "Authentication required"),
    ("delete", "/api/v1/repos/pypi/cache/demo", {}, 401, "Authentication required"),
    ("post", "/api/v1/repos/pypi/cache/demo/refresh", BOSS, 403, "may not administer repository 'pypi'"),
    ("delete", "/api/v1/repos/pypi/cache/demo", BOSS, 403, "may not administer repository 'pypi'"),
    ("post", "/api/v1/repos/local/cache/demo/refresh", BOSS, 400, "not a proxy"),
    ("post", "/api/v1/repos/pypi/cache/-bad-/refresh", None, 400, "invalid project name"),
    ("delete", "/api/v1/repos/ghost/cache/demo", None, 404, "repository 'ghost' not found"),
])
def test_cache_refusals(proxied, method: str, url: str, headers, status: int, words: str) -> None:
    index, upstream = proxied
    assert_error(call(index, method, url, headers=headers), status, words)
    assert upstream.log.count("/demo/") == 0


def test_cache_refresh_of_a_project_the_upstream_lacks_is_a_404(proxied, capsys) -> None:
    index, _upstream = proxied
    assert_error(call(index, "post", "/api/v1/repos/pypi/cache/nothing-here/refresh"), 404,
                 "the upstream of repository 'pypi' has no project 'nothing-here'")
    config = index.data_dir.parent / "pypilite.toml"
    config.write_text(f'[storage]\ndata_dir = "{index.data_dir}"\n')
    assert cli.main(["cache", "refresh", "pypi", "nothing-here", "--config", str(config)]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "pypilite: the upstream of repository 'pypi' has no project 'nothing-here'\n")


def test_cache_refresh_says_when_the_upstream_fails(proxied) -> None:
    index, upstream = proxied
    upstream.stop()
    assert_error(call(index, "post", "/api/v1/repos/pypi/cache/demo/refresh"), 502)


def test_a_revoked_or_restricted_parent_makes_no_token(api: Index) -> None:
    from pypilite import tokens
    from pypilite.errors import Forbidden
    read_only, _ = api.run(tokens.create_token, "alice", ACTOR, read_only=True)
    full, _ = api.run(tokens.create_token, "alice", ACTOR)
    api.run(tokens.revoke_token, full.id, ACTOR)
    for parent in (read_only.id, full.id):
        with pytest.raises(Forbidden, match="cannot create tokens"):
            api.run(tokens.create_token, "alice", ACTOR, parent=parent)
