"""/api/v1: the REST management API, JSON in and out, over the same service functions as the CLI."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify, request
from werkzeug.exceptions import Forbidden

from pypilite import access, audit, grants, tokens, users
from pypilite.audit import Actor
from pypilite.auth import Principal
from pypilite.errors import BadRequest
from pypilite.web.context import principal, services

bp = Blueprint("api", __name__, url_prefix="/api/v1")


def _actor(who: Principal) -> Actor:
    return Actor(who.name or "-", request.remote_addr or "")


def _body(fields: dict[str, type | tuple[type, ...]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object sent, with exactly the fields allowed and each of the right type."""
    data = request.get_json(silent=True)
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise BadRequest(f"unknown field {unknown[0]!r}")
    for name in required:
        if name not in data:
            raise BadRequest(f"missing field {name!r}")
    for name, value in data.items():
        expected = fields[name]
        # JSON true is a Python bool, which is also an int: an int field must not take it.
        if not isinstance(value, expected) or (isinstance(value, bool) and bool not in _as_tuple(expected)):
            raise BadRequest(f"field {name!r} has the wrong type")
    return data


def _as_tuple(expected: type | tuple[type, ...]) -> tuple[type, ...]:
    return expected if isinstance(expected, tuple) else (expected,)


def _collection(items: list[dict[str, Any]], next_cursor: Any = None) -> Response:
    return jsonify({"items": items, "next": next_cursor})


def _created(item: dict[str, Any]) -> Response:
    response = jsonify(item)
    response.status_code = 201
    return response


def _no_content() -> Response:
    return Response(status=204)


def _repository_admin(name: str) -> Principal:
    who = principal()
    repository = services().repositories.get(name, None)
    access.require(who, repository, access.ADMIN)
    return who


@bp.get("/users")
def list_users() -> Response:
    access.require_global_admin(principal())
    return _collection([users.as_json(u) for u in users.list_users()])


@bp.post("/users")
def create_user() -> Response:
    who = principal()
    access.require_global_admin(who)
    body = _body({"name": str, "password": (str, type(None)), "admin": bool, "robot": bool}, required=("name",))
    user = users.create_user(body["name"], body.get("password"), _actor(who), admin=body.get("admin", False),
                             robot=body.get("robot", False))
    return _created(users.as_json(user))


@bp.delete("/users/<name>")
def delete_user(name: str) -> Response:
    who = principal()
    access.require_global_admin(who)
    users.remove_user(name, _actor(who))
    return _no_content()


@bp.post("/tokens")
def create_token() -> Response:
    who = principal()
    access.require_user(who)
    body = _body({"user": str, "repos": list, "read_only": bool, "expires_days": int})
    owner = body.get("user", who.name)
    if owner != who.name:
        access.require_global_admin(who)
    if who.token_id is not None and (who.read_only or who.scope is not None):
        raise Forbidden("a read-only or narrowed token cannot create tokens")
    repos = body.get("repos", [])
    if not all(isinstance(r, str) for r in repos):
        raise BadRequest("field 'repos' must be a list of repository names")
    token, secret = tokens.create_token(owner, _actor(who), repos=repos, read_only=body.get("read_only", False),
                                        expires_days=body.get("expires_days"))
    return _created({**tokens.as_json(token), "token": secret})


@bp.get("/tokens")
def list_tokens() -> Response:
    who = principal()
    access.require_user(who)
    owner = request.args.get("user") or None
    if access.is_global_admin(who):
        rows = tokens.list_tokens(owner)
    elif owner not in (None, who.name):
        raise Forbidden("only administrators see other users' tokens")
    else:
        rows = tokens.list_tokens(who.name)
    return _collection([tokens.as_json(t) for t in rows])


@bp.delete("/tokens/<int:token_id>")
def revoke_token(token_id: int) -> Response:
    who = principal()
    access.require_user(who)
    token = tokens.get_token(token_id)
    if token.user.name != who.name:
        access.require_global_admin(who)
    tokens.revoke_token(token_id, _actor(who))
    return _no_content()


@bp.put("/repos/<name>/permissions/<user>")
def set_permission(name: str, user: str) -> Response:
    who = _repository_admin(name)
    body = _body({"level": str}, required=("level",))
    created = grants.set_grant(user, name, body["level"], _actor(who))
    response = jsonify(grants.as_json(user, name, body["level"]))
    response.status_code = 201 if created else 200
    return response


@bp.delete("/repos/<name>/permissions/<user>")
def delete_permission(name: str, user: str) -> Response:
    who = _repository_admin(name)
    grants.remove_grant(user, name, _actor(who))
    return _no_content()


@bp.get("/admin/audit")
def audit_log() -> Response:
    access.require_global_admin(principal())
    limit = _int_arg("limit", 100)
    before = _int_arg("cursor", None)
    events = audit.query(resource_type=request.args.get("resource_type", ""), q=request.args.get("q", ""),
                         limit=limit, before=before)
    full_page = len(events) == min(max(limit, 1), audit.MAX_LIMIT)
    return _collection([audit.as_json(e) for e in events], events[-1].id if events and full_page else None)


def _int_arg(name: str, default: int | None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer") from None
