"""The UI's Account page: a user's own tokens (made, shown once, listed, revoked), their grants, their password,
and logging out. Plain forms over the same service functions and access rules as /api/v1; every write is a
POST, which the cross-site rule in crosssite.py already guards, whatever the route."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, redirect, render_template
from werkzeug.wrappers import Response as BaseResponse

from pypilite import access, catalog, grants, tokens, users
from pypilite.audit import Actor
from pypilite.auth import ANONYMOUS, CHALLENGE, Principal
from pypilite.errors import BadRequest, Unauthenticated, UserError
from pypilite.web.context import principal, services
from pypilite.web.ui import dress, notice, url
from pypilite.web.wrappers import request

bp = Blueprint("account", __name__)
dress(bp)


def _user() -> Principal:
    who = principal()
    access.require_user(who, "Log in with your user name and password, or __token__ and an API token")
    return who


def _actor(who: Principal) -> Actor:
    return Actor(who.name or "-", request.remote_addr or "")


def _page(who: Principal, status: int = 200, **extra: Any) -> Response:
    """The Account page; a token manager's tokens, or none (a read-only or narrowed token may not list them)."""
    try:
        listed: list[dict[str, Any]] | None = [
            tokens.as_json(t) for t in tokens.list_tokens(access.listed_token_owner(who, who.name))]
    except UserError as exc:
        listed, extra = None, {"tokens_refused": exc.message, **extra}
    try:
        access.require_grants_of(who, who.name or "")
        held: list[dict[str, Any]] | None = grants.list_grants(user=who.name)
    except UserError:  # a narrowed token: its owner's grants elsewhere are not its to show
        held = None
    body = render_template("ui/account.html", who=who, tokens=listed, grants=held, notice=notice(),
                           repositories=[r.name for r in catalog.repositories(who)],
                           robot=who.robot, **extra)
    return Response(body, status=status, content_type="text/html; charset=utf-8")


def _refused(who: Principal, exc: UserError) -> Response:
    """A refusal or mistake shown on the page it came from, in one line, with its status."""
    if isinstance(exc, Unauthenticated):
        raise exc
    return _page(who, exc.status, error=exc.message)


@bp.get("/ui/-/account")
def account() -> Response:
    return _page(_user())


@bp.post("/ui/-/account/tokens")
def create_token() -> Response:
    who = _user()
    try:
        access.require_tokens_of(who, who.name or "")
        expires = request.form.get("expires_days", "").strip()
        if expires and not expires.isdigit():
            raise BadRequest("expires_days must be a whole number of days")
        token, secret = tokens.create_token(
            who.name or "", _actor(who), repos=request.form.getlist("repos"),
            read_only=request.form.get("read_only") == "on", expires_days=int(expires) if expires else None,
            parent=who.token_id, asker=who)
    except UserError as exc:
        return _refused(who, exc)
    response = _page(who, 201, created=tokens.as_json(token), secret=secret)
    response.headers["Cache-Control"] = "no-store"  # the secret: kept by no cache, the browser's included
    return response


@bp.post("/ui/-/account/tokens/<int:token_id>/revoke")
def revoke_token(token_id: int) -> BaseResponse:
    who = _user()
    try:
        access.require_token_manager(who)
        access.require_tokens_of(who, tokens.get_token(token_id).user.name)
        tokens.revoke_token(token_id, _actor(who))
    except UserError as exc:
        return _refused(who, exc)
    return redirect(url("account.account", done="revoked"), 303)


@bp.post("/ui/-/account/password")
def change_password() -> BaseResponse:
    who = _user()
    form = request.form
    try:
        if form.get("password", "") != form.get("confirm", ""):
            raise BadRequest("the new password and its confirmation differ")
        old = form.get("old_password", "")
        access.require_password_change(who, who.name or "", old, services().authenticator,
                                       request.remote_addr or "")
        users.set_password(who.name or "", form.get("password", ""), _actor(who), services().config.data_dir)
    except UserError as exc:
        return _refused(who, exc)
    return redirect(url("account.account", done="password"), 303)


@bp.post("/ui/-/logout")
def logout() -> Response:
    """A browser keeps Basic credentials until it is answered 401 for them: this answer makes it drop them."""
    body = render_template("ui/logged_out.html", who=ANONYMOUS)
    return Response(body, status=401, headers={"WWW-Authenticate": CHALLENGE},
                    content_type="text/html; charset=utf-8")
