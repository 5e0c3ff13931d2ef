"""Tokens made with tokens, against the real server: a child never outlives its parent (in time or past a
revocation), and a token that may do less can neither see, make nor take away tokens."""

from __future__ import annotations

from datetime import datetime

import requests

from tests.integration.conftest import LiveServer

API = "/api/v1/tokens"


def _admin(live: LiveServer) -> tuple[str, str]:
    return ("admin", live.admin_password)


def _token(live: LiveServer, auth: tuple[str, str], **body) -> dict:
    response = requests.post(f"{live.url}{API}", json=body, auth=auth, timeout=30)
    assert response.status_code == 201, response.text
    return response.json()


def _works(live: LiveServer, secret: str) -> int:
    """Whether a token still authenticates: the status of a request that needs credentials."""
    return requests.get(f"{live.url}/api/v1/repos/local/projects", auth=("__token__", secret), timeout=30).status_code


def test_a_token_made_with_a_token_dies_with_it(live: LiveServer) -> None:
    parent = _token(live, _admin(live), expires_days=2)
    child = _token(live, ("__token__", parent["token"]))
    assert child["expires"] == parent["expires"]  # not "never", which it would be on its own
    assert child["parent"] == parent["id"]
    grandchild = _token(live, ("__token__", child["token"]), expires_days=1)
    assert datetime.fromisoformat(grandchild["expires"]) <= datetime.fromisoformat(parent["expires"])

    longer = requests.post(f"{live.url}{API}", json={"expires_days": 30}, auth=("__token__", parent["token"]),
                           timeout=30)
    assert longer.status_code == 400 and "cannot outlive" in longer.json()["error"]

    assert _works(live, grandchild["token"]) == 200
    revoked = requests.delete(f"{live.url}{API}/{parent['id']}", auth=_admin(live), timeout=30)
    assert revoked.status_code == 204
    for token in (parent, child, grandchild):
        assert _works(live, token["token"]) == 401, token["id"]


def test_a_restricted_token_cannot_touch_tokens(live: LiveServer) -> None:
    upload = _token(live, _admin(live))
    for restricted in (_token(live, _admin(live), read_only=True, repos=["local"]),
                       _token(live, _admin(live), read_only=True),
                       _token(live, _admin(live), repos=["local"])):
        auth = ("__token__", restricted["token"])
        listed = requests.get(f"{live.url}{API}", auth=auth, timeout=30)
        assert listed.status_code == 403 and "items" not in listed.json()
        minted = requests.post(f"{live.url}{API}", json={}, auth=auth, timeout=30)
        assert minted.status_code == 403
        taken = requests.delete(f"{live.url}{API}/{upload['id']}", auth=auth, timeout=30)
        assert taken.status_code == 403
        assert _works(live, upload["token"]) == 200  # the owner's upload token is untouched
