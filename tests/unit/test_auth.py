"""Authentication: passwords and tokens over HTTP Basic, the credential cache, throttling, and the trail."""

from __future__ import annotations

import base64
from datetime import timedelta

import pytest

from pypilite import audit, auth, grants, tokens, users
from pypilite.audit import Actor
from pypilite.errors import BadRequest, Conflict
from pypilite.models import Token, utcnow
from tests.conftest import Index, basic
from tests.distfactory import wheel_bytes

ACTOR = Actor("test", "local")
PRIVATE = {"repository": [{"name": "team", "repository_type": "hosted", "public": False},
                          {"name": "other", "repository_type": "hosted"}],
           "server": {"default_repository": "team"}}


@pytest.fixture
def team(tmp_path) -> Index:
    index = Index(tmp_path / "data", PRIVATE)
    index.run(users.create_user, "alice", "alice-password", ACTOR)
    index.run(grants.set_grant, "alice", "team", "upload", ACTOR)
    index.run(users.create_user, "reader", "reader-password", ACTOR)
    index.run(grants.set_grant, "reader", "team", "read", ACTOR)
    index.run(users.create_user, "ci", None, ACTOR, robot=True)
    index.run(grants.set_grant, "ci", "team", "upload", ACTOR)
    return index


def new_token(index: Index, owner: str, **options) -> tuple[int, str]:
    token, secret = index.run(tokens.create_token, owner, ACTOR, **options)
    return token.id, secret


def upload(index: Index, headers: dict[str, str], repo: str = "team", version: str = "1.0"):
    return index.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version), repo=repo, auth=headers)


def test_password_reads_and_uploads(team: Index) -> None:
    assert upload(team, basic("alice", "alice-password")).status_code == 200
    assert team.get("/team/simple/demo/", headers=basic("alice", "alice-password")).status_code == 200


@pytest.mark.parametrize("username", ["__token__", "alice"])
def test_token_with_either_username(team: Index, username: str) -> None:
    _, secret = new_token(team, "alice")
    assert upload(team, basic(username, secret)).status_code == 200


def test_token_of_another_owner_name_is_refused(team: Index) -> None:
    _, secret = new_token(team, "alice")
    assert upload(team, basic("reader", secret)).status_code == 401


def test_read_only_token_cannot_upload(team: Index) -> None:
    _, secret = new_token(team, "alice", read_only=True)
    assert team.get("/team/simple/", headers=basic("__token__", secret)).status_code == 200
    response = upload(team, basic("__token__", secret))
    assert response.status_code == 403


def test_narrowed_token_is_refused_elsewhere(team: Index) -> None:
    team.run(grants.set_grant, "alice", "other", "upload", ACTOR)
    _, secret = new_token(team, "alice", repos=["other"])
    assert upload(team, basic("__token__", secret), repo="other").status_code == 200
    assert upload(team, basic("__token__", secret), repo="team").status_code == 403
    assert team.get("/team/simple/", headers=basic("__token__", secret)).status_code == 403


def test_narrowed_token_stays_narrow_when_its_repository_goes(team: Index) -> None:
    from pypilite.repository_admin import remove_repository
    _, secret = new_token(team, "alice", repos=["other"])
    team.run(remove_repository, "other", ACTOR)
    assert upload(team, basic("__token__", secret)).status_code == 403


def test_revoked_and_expired_tokens_are_401(team: Index) -> None:
    revoked_id, revoked = new_token(team, "alice")
    team.run(tokens.revoke_token, revoked_id, ACTOR)
    expired_id, expired = new_token(team, "alice", expires_days=1)
    team.run(lambda: Token.update(expires=utcnow() - timedelta(seconds=1)).where(Token.id == expired_id).execute())
    for secret in (revoked, expired):
        response = upload(team, basic("__token__", secret))
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'


def test_token_records_when_it_was_last_used(team: Index) -> None:
    token_id, secret = new_token(team, "alice")
    assert team.run(tokens.get_token, token_id).last_used is None
    team.get("/team/simple/", headers=basic("__token__", secret))
    assert team.run(tokens.get_token, token_id).last_used is not None


def test_read_grantee_cannot_upload(team: Index) -> None:
    assert team.get("/team/simple/", headers=basic("reader", "reader-password")).status_code == 200
    assert upload(team, basic("reader", "reader-password")).status_code == 403


def test_robot_uses_tokens_only(team: Index) -> None:
    assert upload(team, basic("ci", "")).status_code == 401
    assert upload(team, basic("ci", "anything-at-all")).status_code == 401
    _, secret = new_token(team, "ci")
    assert upload(team, basic("ci", secret)).status_code == 200


def test_private_repository_reveals_nothing_to_the_unauthorised(team: Index) -> None:
    assert upload(team, basic("alice", "alice-password")).status_code == 200
    page = team.get("/team/simple/demo/", accept="application/vnd.pypi.simple.v1+json",
                    headers=basic("alice", "alice-password")).json
    file_url = "/" + page["files"][0]["url"].lstrip("./")
    team.run(users.create_user, "stranger", "stranger-password", ACTOR)
    for headers, status in (({}, 401), (basic("stranger", "stranger-password"), 403)):
        for url in ("/team/simple/", "/team/simple/demo/", "/team/simple/nothing-here/", file_url,
                    file_url + ".metadata", "/simple/demo/"):
            response = team.get(url, headers=headers)
            assert response.status_code == status, url
            assert b"demo" not in response.data


def test_public_group_hides_private_members_from_those_who_may_not_read_them(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "open", "repository_type": "hosted"},
        {"name": "all", "repository_type": "group", "members": ["team", "open"], "upload_to": "open"}]})
    index.upload("secret-1.0-py3-none-any.whl", wheel_bytes("secret", "1.0"), repo="team")
    index.upload("shared-1.0-py3-none-any.whl", wheel_bytes("shared", "1.0"), repo="open")
    anonymous = index.get("/simple/", accept="application/vnd.pypi.simple.v1+json").json
    assert [p["name"] for p in anonymous["projects"]] == ["shared"]
    assert index.get("/simple/secret/").status_code == 404
    admin = index.get("/simple/", accept="application/vnd.pypi.simple.v1+json", headers=index.auth)
    assert [p["name"] for p in admin.json["projects"]] == ["secret", "shared"]
    assert "private" in admin.headers["Cache-Control"]


def test_credential_cache_skips_the_slow_hash_and_follows_password_changes(team: Index, monkeypatch) -> None:
    calls = []
    real = auth.check_password_hash
    monkeypatch.setattr(auth, "check_password_hash", lambda h, p: calls.append(p) or real(h, p))
    headers = basic("alice", "alice-password")
    for _ in range(5):
        assert team.get("/team/simple/", headers=headers).status_code == 200
    assert calls == ["alice-password"]
    team.run(users.set_password, "alice", "brand-new-password", ACTOR, team.data_dir)
    assert team.get("/team/simple/", headers=headers).status_code == 401
    assert team.get("/team/simple/", headers=basic("alice", "brand-new-password")).status_code == 200


def test_failed_logins_are_audited_with_user_and_address(team: Index) -> None:
    team.get("/team/simple/", headers=basic("alice", "wrong"), environ_base={"REMOTE_ADDR": "10.1.2.3"})
    [event] = team.run(audit.query, q="login.failed")
    assert (event.actor, event.resource, event.address) == ("alice", "alice", "10.1.2.3")


def test_a_burst_from_one_address_is_throttled_without_locking_out_others(team: Index) -> None:
    attacker = {"REMOTE_ADDR": "10.0.0.66"}
    for _ in range(auth.ADDRESS_FAILURES):
        assert team.get("/team/simple/", headers=basic("alice", "guess"), environ_base=attacker).status_code == 401
    throttled = team.get("/team/simple/", headers=basic("alice", "alice-password"), environ_base=attacker)
    assert throttled.status_code == 429 and "Retry-After" not in throttled.headers  # pip would sleep it out
    elsewhere = team.get("/team/simple/", headers=basic("alice", "alice-password"),
                         environ_base={"REMOTE_ADDR": "10.0.0.7"})
    assert elsewhere.status_code == 200


def test_a_distributed_attack_on_one_user_spares_the_user(team: Index, monkeypatch) -> None:
    monkeypatch.setattr(auth, "USER_FAILURES", 4)
    for n in range(4):
        team.get("/team/simple/", headers=basic("alice", "guess"), environ_base={"REMOTE_ADDR": f"10.9.0.{n}"})
    again = team.get("/team/simple/", headers=basic("alice", "guess"), environ_base={"REMOTE_ADDR": "10.9.0.1"})
    assert again.status_code == 429
    owner = team.get("/team/simple/", headers=basic("alice", "alice-password"),
                     environ_base={"REMOTE_ADDR": "10.0.0.8"})
    assert owner.status_code == 200


@pytest.mark.parametrize("header", ["Basic !!!notbase64", "Bearer abc",
                                    "Basic " + base64.b64encode(b"nocolon").decode()])
def test_malformed_authorization_headers(team: Index, header: str) -> None:
    response = team.get("/team/simple/", headers={"Authorization": header})
    assert response.status_code == 401


def test_user_names_ignore_case_and_keep_their_spelling(team: Index) -> None:
    """As on PyPI: ALICE logs in as alice, and is alice everywhere a name is taken."""
    assert team.get("/team/simple/", headers=basic("ALICE", "alice-password")).status_code == 200
    assert team.run(auth.Authenticator().check, "Alice", "alice-password", "10.0.0.1").name == "alice"
    with pytest.raises(Conflict, match="user 'alice' already exists: names differ in more than case"):
        team.run(users.create_user, "Alice", "another-password", ACTOR)
    with pytest.raises(BadRequest, match="invalid user name"):
        team.run(users.create_user, "__TOKEN__", "another-password", ACTOR)
    team.run(grants.set_grant, "READER", "team", "upload", ACTOR)
    assert team.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="team",
                       auth=basic("Reader", "reader-password")).status_code == 200
    _row, secret = team.run(tokens.create_token, "CI", ACTOR)
    assert team.get("/team/simple/", headers=basic("Ci", secret)).status_code == 200
    assert [t.user.name for t in team.run(tokens.list_tokens, "cI")] == ["ci"]


def test_failed_logins_count_for_the_user_whatever_the_case(team: Index, monkeypatch) -> None:
    """Otherwise each spelling of a name would get its own allowance of guesses."""
    monkeypatch.setattr(auth, "USER_FAILURES", 4)
    for n, spelling in enumerate(("alice", "Alice", "aLice", "ALICE")):
        team.get("/team/simple/", headers=basic(spelling, "guess"), environ_base={"REMOTE_ADDR": f"10.9.1.{n}"})
    again = team.get("/team/simple/", headers=basic("alIce", "guess"), environ_base={"REMOTE_ADDR": "10.9.1.1"})
    assert again.status_code == 429
