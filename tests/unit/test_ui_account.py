"""The UI's Account page with Flask's test client: tokens made (shown once), listed and revoked, the password
changed with the old one, logging out, and each form's refusals (no right, another site's page, mistakes)
shown in one line on the page, with what was asked left undone."""

from __future__ import annotations

import re

import pytest

from pypilite import audit, grants, tokens, users
from pypilite.audit import Actor
from tests.conftest import Index, basic

ACTOR = Actor("test", "local")
ALICE = basic("alice", "alice-password")
EVIL = {"Origin": "http://evil.example"}


@pytest.fixture
def index(tmp_path) -> Index:
    index = Index(tmp_path / "data")
    index.run(users.create_user, "alice", "alice-password", ACTOR)
    index.run(users.create_user, "bob", "bob-password", ACTOR)
    index.run(grants.set_grant, "alice", "local", "upload", ACTOR)
    return index


def post(index: Index, url: str, data=None, headers=None):
    return index.client.post(url, data=data or {}, headers={**ALICE, **(headers or {})})


def alert(html: str) -> str:
    found = re.search(r'<p class="form-error" role="alert">([^<]*)</p>', html)
    return found.group(1) if found else ""


def tokens_of(index: Index, name: str) -> list[dict]:
    return [tokens.as_json(t) for t in index.run(tokens.list_tokens, name)]


def actions(index: Index) -> list[str]:
    return [e.action for e in index.run(audit.query, limit=100)]


def test_the_account_page_asks_for_credentials_and_shows_the_users_grants(index: Index) -> None:
    anonymous = index.get("/ui/-/account")
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    html = index.get("/ui/-/account", headers=ALICE).get_data(as_text=True)
    assert "<h1>alice" in html and "No tokens yet." in html
    assert re.search(r"<td><a [^>]*>local</a></td><td>upload</td>", html)
    assert 'href="ui/-/account"' in index.get("/", headers=ALICE).get_data(as_text=True)


def test_a_token_is_created_shown_once_listed_and_revoked(index: Index) -> None:
    created = post(index, "/ui/-/account/tokens", {"read_only": "on", "repos": ["local"], "expires_days": "7"})
    assert created.status_code == 201 and created.headers["Cache-Control"] == "no-store"
    secret = re.search(r"pypl_[A-Za-z0-9_-]+", created.get_data(as_text=True)).group(0)
    [token] = tokens_of(index, "alice")
    assert (token["repos"], token["read_only"], token["expires"] is not None) == (["local"], True, True)
    # The secret works, and is never on the page again.
    assert index.get("/local/simple/", headers=basic("__token__", secret)).status_code == 200
    assert "pypl_" not in index.get("/ui/-/account", headers=ALICE).get_data(as_text=True)
    revoked = post(index, f"/ui/-/account/tokens/{token['id']}/revoke")
    assert revoked.status_code == 303 and revoked.headers["Location"].endswith("ui/-/account?done=revoked")
    assert tokens_of(index, "alice")[0]["revoked"] is not None
    assert index.get("/local/simple/", headers=basic("__token__", secret)).status_code == 401
    assert "Token revoked" in index.get("/ui/-/account?done=revoked", headers=ALICE).get_data(as_text=True)
    assert [a for a in actions(index) if a.startswith("token.")] == ["token.revoke", "token.create"]


@pytest.mark.parametrize("form, status, words", [
    ({"expires_days": "0"}, 400, "expires_days must be between 1 and 3650"),
    ({"expires_days": "soon"}, 400, "whole number of days"),
    ({"repos": ["nowhere"]}, 404, "repository &#39;nowhere&#39; not found"),
])
def test_a_token_form_with_a_mistake_says_so_and_makes_none(index: Index, form, status: int, words: str) -> None:
    response = post(index, "/ui/-/account/tokens", form)
    assert response.status_code == status and words in alert(response.get_data(as_text=True))
    assert tokens_of(index, "alice") == []


def test_another_users_token_is_not_revoked(index: Index) -> None:
    token, _ = index.run(tokens.create_token, "bob", ACTOR)
    response = post(index, f"/ui/-/account/tokens/{token.id}/revoke")
    assert response.status_code == 403 and "global administrator" in alert(response.get_data(as_text=True))
    assert tokens_of(index, "bob")[0]["revoked"] is None
    assert post(index, "/ui/-/account/tokens/99999999999999999999/revoke").status_code == 404


def test_a_read_only_token_in_the_browser_neither_lists_nor_makes_tokens(index: Index) -> None:
    _, secret = index.run(tokens.create_token, "alice", ACTOR, read_only=True)
    as_token = basic("__token__", secret)
    html = index.get("/ui/-/account", headers=as_token).get_data(as_text=True)
    assert "cannot list, create or revoke tokens" in html and "Create token" not in html
    response = index.client.post("/ui/-/account/tokens", headers=as_token)
    assert response.status_code == 403 and len(tokens_of(index, "alice")) == 1


def test_the_password_changes_with_the_old_one_only(index: Index) -> None:
    wrong = post(index, "/ui/-/account/password", {"old_password": "guess-guess", "password": "new-password-1",
                                                    "confirm": "new-password-1"})
    assert wrong.status_code == 403 and alert(wrong.get_data(as_text=True)) == "the old password is wrong"
    differ = post(index, "/ui/-/account/password", {"old_password": "alice-password", "password": "new-password-1",
                                                     "confirm": "new-password-2"})
    assert differ.status_code == 400 and "differ" in alert(differ.get_data(as_text=True))
    short = post(index, "/ui/-/account/password", {"old_password": "alice-password", "password": "short",
                                                    "confirm": "short"})
    assert short.status_code == 400 and "at least 8" in alert(short.get_data(as_text=True))
    assert index.get("/ui/-/account", headers=ALICE).status_code == 200  # nothing changed yet
    done = post(index, "/ui/-/account/password", {"old_password": "alice-password", "password": "new-password-1",
                                                   "confirm": "new-password-1"})
    assert done.status_code == 303 and done.headers["Location"].endswith("?done=password")
    assert index.get("/ui/-/account", headers=ALICE).status_code == 401
    assert index.get("/ui/-/account", headers=basic("alice", "new-password-1")).status_code == 200
    assert "user.password" in actions(index)


def test_logging_out_answers_401_so_the_browser_drops_its_credentials(index: Index) -> None:
    response = post(index, "/ui/-/logout")
    assert response.status_code == 401 and response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    assert "Logged out" in response.get_data(as_text=True)


@pytest.mark.parametrize("url, form", [
    ("/ui/-/account/tokens", {}),
    ("/ui/-/account/tokens/1/revoke", {}),
    ("/ui/-/account/password", {"old_password": "alice-password", "password": "taken-over", "confirm": "taken-over"}),
])
@pytest.mark.parametrize("headers", [EVIL, {"Sec-Fetch-Site": "cross-site"}], ids=["origin", "sec-fetch-site"])
def test_another_sites_form_is_refused_and_changes_nothing(index: Index, url: str, form, headers) -> None:
    index.run(tokens.create_token, "alice", ACTOR)
    response = post(index, url, form, headers)
    assert response.status_code == 403 and "Cross-site request refused" in response.get_data(as_text=True)
    assert [t["revoked"] for t in tokens_of(index, "alice")] == [None]
    assert index.get("/ui/-/account", headers=ALICE).status_code == 200
