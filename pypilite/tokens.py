"""API tokens: random secrets shown once, kept only as sha256 digests, narrowed and revocable.

A token made with another token is its child: never narrower in what it forbids, never longer-lived, and
revoked with it (its whole line of descendants goes at once).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import peewee as pw

from pypilite import access, audit
from pypilite.audit import Actor
from pypilite.auth import Principal, new_token_secret, token_digest
from pypilite.database import write_transaction
from pypilite.errors import BadRequest, NotFound
from pypilite.models import Repository, Token, TokenScope, User, api_time, user_key, utcnow
from pypilite.users import get_user

MAX_EXPIRY_DAYS = 3650
# What the database's integer column can hold: a larger id names no token.
MAX_ID = 2**63 - 1


def as_json(token: Token) -> dict[str, Any]:
    repos = [row.repository.name for row in
             TokenScope.select(TokenScope, Repository).join(Repository).where(TokenScope.token == token.id)]
    return {"id": token.id, "user": token.user.name, "repos": sorted(repos) if token.narrowed else None,
            "read_only": token.read_only, "parent": token.parent_id,
            "created": api_time(token.created), "expires": api_time(token.expires),
            "last_used": api_time(token.last_used),
            "revoked": api_time(token.revoked)}


def create_token(owner: str, actor: Actor, repos: Iterable[str] = (), read_only: bool = False,
                 expires_days: int | None = None, parent: int | None = None,
                 asker: Principal | None = None) -> tuple[Token, str]:
    """A new token and its secret: the only moment the secret exists outside the client. `parent`: the
    token whose secret asked for this one; `asker`: who asked over the web, to whom a repository they may
    not read does not exist either (None: the command line, which sees every repository)."""
    if expires_days is not None and not 1 <= expires_days <= MAX_EXPIRY_DAYS:
        raise BadRequest(f"expires_days must be between 1 and {MAX_EXPIRY_DAYS}")
    repos = sorted(set(repos))
    secret = new_token_secret()
    with write_transaction():
        user = get_user(owner)
        rows = []
        for name in repos:
            row = Repository.get_or_none(Repository.name == name)
            if row is None or (asker is not None and not access.allowed(asker, row.id, row.public, access.READ)):
                raise NotFound(f"repository {name!r} not found")
            rows.append(row)
        expires = utcnow() + timedelta(days=expires_days) if expires_days is not None else None
        if parent is not None:
            expires = _within_parent(get_token(parent), expires)
        token = Token.create(user=user.id, digest=token_digest(secret), read_only=read_only, narrowed=bool(rows),
                             expires=expires, parent=parent)
        for row in rows:
            TokenScope.create(token=token.id, repository=row.id)
        audit.record(actor, "token.create", "token", str(token.id), user=owner, repos=repos, read_only=read_only,
                     expires=api_time(expires), parent=parent)
    return token, secret


def _within_parent(parent: Token, expires: datetime | None) -> datetime | None:
    """The expiry of a child of `parent`: the parent's when none is asked for, refused when later."""
    access.require_token_parent(parent)
    if parent.expires is None:
        return expires
    if expires is None:
        return parent.expires
    if expires > parent.expires:
        raise BadRequest(f"a token created with a token cannot outlive it: the token used expires "
                         f"{api_time(parent.expires)}")
    return expires


def list_tokens(owner: str | None = None) -> list[Token]:
    query = Token.select(Token, User).join(User).order_by(Token.id)
    if owner is not None:
        query = query.where(pw.fn.LOWER(User.name) == user_key(owner))
    return list(query)


def get_token(token_id: int) -> Token:
    if not 0 <= token_id <= MAX_ID:
        raise NotFound(f"token {token_id} not found")
    token = Token.select(Token, User).join(User).where(Token.id == token_id).first()
    if token is None:
        raise NotFound(f"token {token_id} not found")
    return token


def revoke_token(token_id: int, actor: Actor) -> None:
    """Revoke a token and every token made with it, or with those, and so on."""
    with write_transaction():
        token = get_token(token_id)
        line = _descendants(token.id)
        Token.update(revoked=utcnow()).where(Token.id.in_([token.id, *line]) & Token.revoked.is_null()).execute()
        audit.record(actor, "token.revoke", "token", str(token_id), user=token.user.name, descendants=line)


def _descendants(token_id: int) -> list[int]:
    found, frontier = [], [token_id]
    while frontier:
        frontier = [child for (child,) in Token.select(Token.id).where(Token.parent.in_(frontier)).tuples()]
        found += frontier
    return found
