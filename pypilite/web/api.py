"""/api/v1: the REST management API, JSON in and out, over the same service functions as the CLI."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from types import NoneType
from typing import Any, cast, overload

from flask import Blueprint, Response, jsonify, request

from pypilite import (
    access,
    advisories,
    audit,
    breakers,
    grants,
    packages,
    policies,
    policy_admin,
    repository_admin,
    tokens,
    users,
)
from pypilite.audit import Actor
from pypilite.auth import Principal
from pypilite.config import REPOSITORY_KEYS, ConfigError, RepositoryConfig, parse_repository
from pypilite.errors import BadRequest, NotFound
from pypilite.models import api_time
from pypilite.upstream import redact
from pypilite.web import openapi
from pypilite.web.context import principal, readable_repository, repository_for, services

bp = Blueprint("api", __name__, url_prefix="/api/v1")

# What the database can hold in an integer column: larger cursors and ids can name nothing.
MAX_INTEGER = 2**63 - 1


def _actor(who: Principal) -> Actor:
    return Actor(who.name or "-", request.remote_addr or "")


def _body(fields: Mapping[str, type | tuple[type, ...]], required: tuple[str, ...] = ()) -> dict[str, Any]:
    """The JSON object sent, with exactly the fields allowed and each of the right type; no body at all is an
    empty object, so a write whose fields are all optional needs none."""
    if not request.get_data():
        data: Any = {}
    else:
        data = request.get_json(silent=True)
        if data is None:
            raise BadRequest("the body is not valid JSON")
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


def _global_admin() -> Principal:
    who = principal()
    access.require_global_admin(who)
    return who


def _repo_json(spec: RepositoryConfig) -> dict[str, Any]:
    fields = dataclasses.asdict(spec)
    fields.update(members=list(spec.members), pass_through=list(spec.pass_through),
                  remote_url=redact(spec.remote_url), format="pypi",
                  policy=policies.as_dict(spec.policy) if spec.policy is not None else None)
    return {key: fields[key] for key in ("name", "repository_type", "format", *sorted(
        REPOSITORY_KEYS[spec.repository_type]))}


def _repository_body(required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A repository in the shape of the config file (and other registries' APIs: "format" is accepted)."""
    fields: dict[str, type | tuple[type, ...]] = {
        "name": str, "repository_type": str, "format": str, "public": bool, "allow_overwrite": bool,
        "remote_url": str, "cache_ttl": int, "remote_timeout": int, "members": list, "upload_to": str,
        "pass_through": list, "offline": bool, "upstream": dict, "policy": (dict, NoneType)}
    body = _body(fields, required)
    body.pop("upstream", None)  # a proxy's breaker, which GET shows: sent back by a read-modify-write, and ignored
    return body


@bp.get("/repos")
def list_repos() -> Response:
    _global_admin()
    return _collection([_repo_json(spec) for spec in repository_admin.list_repositories()])


@bp.post("/repos")
def create_repo() -> Response:
    who = _global_admin()
    body = _repository_body(required=("name", "repository_type"))
    try:
        spec = parse_repository(body, "repository")
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    repository_admin.create_repository(spec, _actor(who))
    return _created(_repo_json(spec))


@bp.get("/repos/<name>")
def show_repo(name: str) -> Response:
    repository_for(name, access.ADMIN)
    shown = _repo_json(repository_admin.get_repository(name))
    if shown["repository_type"] == "proxy":
        shown["upstream"] = breakers.summary(services().repositories.breaker_state(name))
    return jsonify(shown)


@bp.patch("/repos/<name>")
def update_repo(name: str) -> Response:
    who = _global_admin()
    return jsonify(_repo_json(repository_admin.update_repository(name, _repository_body(), _actor(who))))


@bp.delete("/repos/<name>")
def delete_repo(name: str) -> Response:
    who = _global_admin()
    repository_admin.remove_repository(name, _actor(who))
    return _no_content()


@bp.get("/repos/<name>/policy")
def show_policy(name: str) -> Response:
    repository_for(name, access.ADMIN)
    return jsonify({"policy": policy_admin.show_policy(name)})


@bp.put("/repos/<name>/policy")
def set_policy(name: str) -> Response:
    """The body is the policy itself; PUT replaces it whole."""
    who = _global_admin()
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object: the policy's rules")
    spec = policy_admin.set_policy(name, body, _actor(who))
    return jsonify({"policy": policies.as_dict(spec.policy) if spec.policy is not None else None})


@bp.delete("/repos/<name>/policy")
def remove_policy(name: str) -> Response:
    who = _global_admin()
    policy_admin.set_policy(name, None, _actor(who))
    return _no_content()


@bp.get("/repos/<name>/policy/explain/<project>")
def explain_policy(name: str, project: str) -> Response:
    repository_for(name, access.ADMIN)
    return jsonify(policy_admin.explain(services().repositories, name, project, request.args.get("version")))


@bp.get("/repos/<name>/projects")
def list_projects(name: str) -> Response:
    repository = readable_repository(name)
    items, next_cursor = packages.list_projects(repository, _int_arg("limit", 100), request.args.get("cursor", ""))
    return _collection(items, next_cursor)


@bp.get("/repos/<name>/projects/<project>")
def show_project(name: str, project: str) -> Response:
    return jsonify(packages.show_project(readable_repository(name), project))


@bp.delete("/repos/<name>/projects/<project>/<version>")
def delete_release(name: str, project: str, version: str) -> Response:
    repository = repository_for(name, access.UPLOAD)
    who = principal()
    packages.delete_release(repository, project, version, _actor(who))
    return _no_content()


@bp.delete("/repos/<name>/files/<filename>")
def delete_file(name: str, filename: str) -> Response:
    repository = repository_for(name, access.UPLOAD)
    who = principal()
    packages.delete_file(repository, filename, _actor(who))
    return _no_content()


@bp.put("/repos/<name>/projects/<project>/status")
def set_project_status(name: str, project: str) -> Response:
    repository = repository_for(name, access.UPLOAD)
    who = principal()
    body = _body({"status": str, "reason": str}, required=("status",))
    current = packages.current_status(repository, project)
    access.require(who, repository, access.level_to_set_status(current, body["status"]))
    return jsonify(packages.set_status(repository, project, body["status"], body.get("reason", ""), _actor(who)))


@bp.post("/repos/<name>/projects/<project>/<version>/yank")
def yank(name: str, project: str, version: str) -> Response:
    repository = repository_for(name, access.UPLOAD)
    who = principal()
    reason = _body({"reason": str}).get("reason", "")
    packages.set_yanked(repository, project, version, True, reason, _actor(who))
    return jsonify({"project": project, "version": version, "yanked": True, "yanked_reason": reason})


@bp.post("/repos/<name>/projects/<project>/<version>/unyank")
def unyank(name: str, project: str, version: str) -> Response:
    repository = repository_for(name, access.UPLOAD)
    who = principal()
    packages.set_yanked(repository, project, version, False, "", _actor(who))
    return jsonify({"project": project, "version": version, "yanked": False, "yanked_reason": ""})


@bp.post("/repos/<name>/cache/<project>/refresh")
def refresh_cached_project(name: str, project: str) -> Response:
    repository_for(name, access.ADMIN)
    who = principal()
    files = repository_admin.refresh_cached_project(services().repositories, name, project, _actor(who))
    return jsonify({"repository": name, "project": project, "files": files})


@bp.delete("/repos/<name>/cache/<project>")
def forget_cached_project(name: str, project: str) -> Response:
    repository_for(name, access.ADMIN)
    who = principal()
    repository_admin.forget_cached_project(services().repositories, name, project, _actor(who))
    return _no_content()


@bp.get("/openapi.json")
def openapi_document() -> Response:
    return jsonify(openapi.DOCUMENT)


@bp.get("/users")
def list_users() -> Response:
    _global_admin()
    return _collection([users.as_json(u) for u in users.list_users()])


@bp.post("/users")
def create_user() -> Response:
    who = _global_admin()
    body = _body({"name": str, "password": (str, type(None)), "admin": bool, "robot": bool}, required=("name",))
    user = users.create_user(body["name"], body.get("password"), _actor(who), admin=body.get("admin", False),
                             robot=body.get("robot", False))
    return _created(users.as_json(user))


@bp.delete("/users/<name>")
def delete_user(name: str) -> Response:
    who = _global_admin()
    users.remove_user(name, _actor(who))
    return _no_content()


@bp.put("/users/<name>/password")
def set_password(name: str) -> Response:
    who = principal()
    access.require_user(who)
    body = _body({"password": str, "old_password": str}, required=("password",))
    address = request.remote_addr or ""
    access.require_password_change(who, name, body.get("old_password"), services().authenticator, address)
    users.set_password(name, body["password"], _actor(who), services().config.data_dir)
    return _no_content()


@bp.post("/tokens")
def create_token() -> Response:
    who = principal()
    access.require_token_manager(who)
    body = _body({"user": str, "repos": list, "read_only": bool, "expires_days": int})
    owner: str = body.get("user", cast(str, who.name))  # a token manager is a user, with a name
    access.require_tokens_of(who, owner)
    repos = body.get("repos", [])
    if not all(isinstance(r, str) for r in repos):
        raise BadRequest("field 'repos' must be a list of repository names")
    token, secret = tokens.create_token(owner, _actor(who), repos=repos, read_only=body.get("read_only", False),
                                        expires_days=body.get("expires_days"), parent=who.token_id, asker=who)
    return _created({**tokens.as_json(token), "token": secret})


@bp.get("/tokens")
def list_tokens() -> Response:
    owner = access.listed_token_owner(principal(), request.args.get("user") or None)
    return _collection([tokens.as_json(t) for t in tokens.list_tokens(owner)])


@bp.delete("/tokens/<int:token_id>")
def revoke_token(token_id: int) -> Response:
    who = principal()
    access.require_token_manager(who)
    if token_id > MAX_INTEGER:
        raise NotFound(f"token {token_id} not found")
    access.require_tokens_of(who, tokens.get_token(token_id).user.name)
    tokens.revoke_token(token_id, _actor(who))
    return _no_content()


@bp.get("/repos/<name>/permissions")
def list_repository_permissions(name: str) -> Response:
    repository_for(name, access.ADMIN)
    return _collection(grants.list_grants(repository=name))


@bp.get("/users/<name>/permissions")
def list_user_permissions(name: str) -> Response:
    access.require_grants_of(principal(), name)
    return _collection(grants.list_grants(user=name))


@bp.put("/repos/<name>/permissions/<user>")
def set_permission(name: str, user: str) -> Response:
    repository_for(name, access.ADMIN)
    who = principal()
    body = _body({"level": str}, required=("level",))
    created = grants.set_grant(user, name, body["level"], _actor(who))
    response = jsonify(grants.as_json(user, name, body["level"]))
    response.status_code = 201 if created else 200
    return response


@bp.delete("/repos/<name>/permissions/<user>")
def delete_permission(name: str, user: str) -> Response:
    repository_for(name, access.ADMIN)
    who = principal()
    grants.remove_grant(user, name, _actor(who))
    return _no_content()


@bp.get("/admin/audit")
def audit_log() -> Response:
    _global_admin()
    limit = _int_arg("limit", 100)
    before = _int_arg("cursor", None)
    events = audit.query(resource_type=request.args.get("resource_type", ""), q=request.args.get("q", ""),
                         limit=limit, before=before)
    full_page = len(events) == min(max(limit, 1), audit.MAX_LIMIT)
    return _collection([audit.as_json(e) for e in events], events[-1].id if events and full_page else None)


@bp.get("/advisories")
def advisories_status() -> Response:
    access.require_advisories_reader(principal())
    current = advisories.status()
    age = current.age_seconds()
    max_age = services().config.advisories_max_age
    return jsonify({"advisories": current.advisories, "malicious": current.malicious,
                    "imported": api_time(current.imported), "source": current.source, "age_seconds": age,
                    "max_age_seconds": max_age, "stale": bool(age is not None and max_age and age > max_age),
                    "generation": advisories.generation()})


@overload
def _int_arg(name: str, default: int) -> int: ...
@overload
def _int_arg(name: str, default: None) -> int | None: ...


def _int_arg(name: str, default: int | None) -> int | None:
    value = request.args.get(name)
    if value is None or value == "":
        return default
    try:
        number = int(value)
    except ValueError:
        raise BadRequest(f"query parameter {name!r} must be an integer") from None
    if not 0 <= number <= MAX_INTEGER:
        raise BadRequest(f"query parameter {name!r} must be between 0 and {MAX_INTEGER}")
    return number
