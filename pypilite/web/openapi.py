"""The OpenAPI 3.1 description of /api/v1, served at /api/v1/openapi.json.

Written as data next to the views it describes; a test walks the app's routes and fails when one is missing
here, and a schema-driven fuzz run checks that no request built from it gets a 500.
"""

from __future__ import annotations

from typing import Any

from pypilite.markers import MAX_REASON, STATUSES
from pypilite.version import __version__

JSON = "application/json"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": description, "schema": {"type": "string"}}


def _query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description, "schema": schema}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def _ok(schema: dict[str, Any], status: str = "200", description: str = "OK") -> dict[str, Any]:
    return {status: {"description": description, "content": {JSON: {"schema": schema}}}}


def _errors(*statuses: str) -> dict[str, Any]:
    return {status: {"description": _ERROR_TEXT[status], "content": {JSON: {"schema": _ref("Error")}}}
            for status in statuses}


_ERROR_TEXT = {"400": "Malformed request", "401": "Credentials missing or wrong", "403": "Not allowed",
               "404": "Not found", "409": "Conflicts with what exists", "413": "Body larger than 1 MiB",
               "415": "Body not sent as application/json", "429": "Too many failed logins: try again later",
               "502": "Upstream failed", "504": "Upstream timed out"}
_NO_CONTENT = {"204": {"description": "Done"}}


def _collection(item: str) -> dict[str, Any]:
    return {"type": "object", "required": ["items", "next"], "properties": {
        "items": {"type": "array", "items": _ref(item)},
        "next": {"type": ["string", "integer", "null"], "description": "cursor of the next page, or null"}}}


def _operation(summary: str, responses: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
               body: dict[str, Any] | None = None, secured: bool = True) -> dict[str, Any]:
    operation: dict[str, Any] = {"summary": summary, "responses": responses}
    if parameters:
        operation["parameters"] = parameters
    if body is not None:
        operation["requestBody"] = body
    if not secured:
        operation["security"] = []
    return operation


REPO = _path_param("name", "repository name")
PROJECT = _path_param("project", "project name")
VERSION = _path_param("version", "release version")
PAGING = [_query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
          _query_param("cursor", {"type": "string"}, "the `next` of the previous page")]

_REPOSITORY_FIELDS = {
    "name": {"type": "string", "pattern": "^[a-z0-9][a-z0-9._-]*$"},
    "repository_type": {"type": "string", "enum": ["hosted", "proxy", "group"]},
    "format": {"type": "string", "enum": ["pypi"], "description": "accepted and ignored"},
    "public": {"type": "boolean"},
    "allow_overwrite": {"type": "boolean", "description": "hosted"},
    "remote_url": {"type": "string", "description": "proxy: the upstream's simple root"},
    "cache_ttl": {"type": "integer", "minimum": 0, "description": "proxy"},
    "remote_timeout": {"type": "integer", "minimum": 1, "description": "proxy"},
    "offline": {"type": "boolean", "description": "proxy: serve the cache alone, never asking the upstream"},
    "members": {"type": "array", "items": {"type": "string"}, "description": "group"},
    "upload_to": {"type": "string", "description": "group"},
    "pass_through": {"type": "array", "items": {"type": "string"}, "description": "group"},
    "policy": {"oneOf": [{"$ref": "#/components/schemas/Policy"}, {"type": "null"}],
               "description": "the package firewall's rules; null: none"},
}
_STRINGS = {"type": "array", "items": {"type": "string"}}
_POLICY = {"type": "object", "additionalProperties": False, "properties": {
    "mode": {"type": "string", "enum": ["enforce", "report"]},
    "min_release_age": {"type": "string", "pattern": "^([0-9]{1,6}[mhd])?$", "description": "proxy and group"},
    "undated": {"type": "string", "enum": ["block", "allow"],
                "description": "a file without an upload time, under min_release_age"},
    "deny": {**_STRINGS, "description": "requirement strings; name globs allowed"},
    "allow": {**_STRINGS, "description": "exceptions to every rule"},
    "licenses_allow": {**_STRINGS, "description": "SPDX identifiers or expressions"},
    "licenses_deny": _STRINGS,
    "licenses_unknown": {"type": "string", "enum": ["block", "allow"],
                         "description": "a file whose core metadata could not be read, under licence rules"},
    "block_vulnerable": {"type": "string", "enum": ["critical", "high", "moderate", "low", "none"]},
    "block_malicious": {"type": "boolean"}}}
_DECISION = {"type": "object", "properties": {
    "repository": {"type": "string"}, "rule": {"type": "string"}, "reason": {"type": "string"},
    "advisories": _STRINGS,
    "enforced": {"type": "boolean", "description": "false: report mode, the file is still offered"}}}

_UPSTREAM = {"type": "object", "description": "a proxy's upstream circuit breaker, shown by GET alone (ignored when "
              "sent back)", "properties": {"breaker": {"type": "string", "enum": ["closed", "open", "half-open"]},
                                           "failures": {"type": "integer"}, "retry_in": {"type": "integer"},
                                           "reason": {"type": "string"}}}

SCHEMAS: dict[str, Any] = {
    "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
    "Repository": {"type": "object", "required": ["name", "repository_type"],
                   "properties": {**_REPOSITORY_FIELDS, "upstream": _UPSTREAM}},
    "NewRepository": {"type": "object", "required": ["name", "repository_type"], "additionalProperties": False,
                      "properties": _REPOSITORY_FIELDS},
    "RepositoryChanges": {"type": "object", "additionalProperties": False,
                          "properties": {**_REPOSITORY_FIELDS, "upstream": _UPSTREAM}},
    "Policy": _POLICY,
    "PolicyState": {"type": "object", "required": ["policy"], "properties": {
        "policy": {"oneOf": [_ref("Policy"), {"type": "null"}]}}},
    "Explanation": {"type": "object", "properties": {
        "repository": {"type": "string"}, "project": {"type": "string"},
        "policy": {"oneOf": [_ref("Policy"), {"type": "null"}]},
        "versions": {"type": "array", "items": {"type": "object", "properties": {
            "version": {"type": "string"}, "allowed": {"type": "boolean"},
            "files": {"type": "array", "items": {"type": "object", "properties": {
                "filename": {"type": "string"}, "offered": {"type": "boolean"},
                "blocked": {"type": "array", "items": _DECISION}}}}}}}}},
    "ProjectName": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}},
    "File": {"type": "object", "properties": {
        "filename": {"type": "string"}, "packagetype": {"type": "string"}, "size": {"type": ["integer", "null"]},
        "sha256": {"type": "string"}, "upload_time": {"type": ["string", "null"]}, "uploader": {"type": "string"},
        "requires_python": {"type": "string"}, "yanked": {"type": "boolean"}, "yanked_reason": {"type": "string"},
        "repository": {"type": "string"}}},
    "Project": {"type": "object", "required": ["name", "versions"], "properties": {
        "name": {"type": "string"}, "status": {"type": "string", "enum": list(STATUSES)},
        "status_reason": {"type": "string"},
        "versions": {"type": "array", "items": {"type": "object", "properties": {
            "version": {"type": "string"}, "yanked": {"type": "boolean"}, "yanked_reason": {"type": "string"},
            "files": {"type": "array", "items": _ref("File")}}}}}},
    "Status": {"type": "object", "required": ["status"], "additionalProperties": False, "properties": {
        "status": {"type": "string", "enum": list(STATUSES)},
        "reason": {"type": "string", "maxLength": MAX_REASON}}},
    "StatusState": {"type": "object", "properties": {
        "project": {"type": "string"}, "status": {"type": "string"}, "status_reason": {"type": "string"}}},
    "CacheRefresh": {"type": "object", "properties": {
        "repository": {"type": "string"}, "project": {"type": "string"},
        "files": {"type": "integer", "description": "how many files the fresh page lists"}}},
    "PasswordChange": {"type": "object", "required": ["password"], "additionalProperties": False, "properties": {
        "password": {"type": "string", "minLength": 8},
        "old_password": {"type": "string", "description": "the current password: needed unless a global admin "
                                                           "sets it"}}},
    "Yank": {"type": "object", "additionalProperties": False, "properties": {"reason": {"type": "string"}}},
    "YankState": {"type": "object", "properties": {
        "project": {"type": "string"}, "version": {"type": "string"}, "yanked": {"type": "boolean"},
        "yanked_reason": {"type": "string"}}},
    "User": {"type": "object", "properties": {
        "name": {"type": "string"}, "admin": {"type": "boolean"}, "robot": {"type": "boolean"},
        "created": {"type": "string"}}},
    "NewUser": {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
        "name": {"type": "string"}, "password": {"type": ["string", "null"], "minLength": 8},
        "admin": {"type": "boolean"}, "robot": {"type": "boolean"}}},
    "Token": {"type": "object", "properties": {
        "id": {"type": "integer"}, "user": {"type": "string"},
        "repos": {"type": ["array", "null"], "items": {"type": "string"}}, "read_only": {"type": "boolean"},
        "created": {"type": "string"}, "expires": {"type": ["string", "null"]},
        "last_used": {"type": ["string", "null"]}, "revoked": {"type": ["string", "null"]},
        "token": {"type": "string", "description": "the secret: only in the answer to its creation"}}},
    "NewToken": {"type": "object", "additionalProperties": False, "properties": {
        "user": {"type": "string"}, "repos": {"type": "array", "items": {"type": "string"}},
        "read_only": {"type": "boolean"}, "expires_days": {"type": "integer", "minimum": 1, "maximum": 3650}}},
    "Permission": {"type": "object", "required": ["level"], "additionalProperties": False, "properties": {
        "level": {"type": "string", "enum": ["read", "upload", "admin"]}}},
    "Grant": {"type": "object", "properties": {
        "user": {"type": "string"}, "repository": {"type": "string"}, "level": {"type": "string"}}},
    "AdvisoriesStatus": {"type": "object", "properties": {
        "advisories": {"type": "integer"}, "malicious": {"type": "integer", "description": "OSV MAL- records"},
        "imported": {"type": ["string", "null"], "description": "when the last import ended"},
        "source": {"type": "string", "description": "the name of the file or directory imported"},
        "age_seconds": {"type": ["integer", "null"]}, "max_age_seconds": {"type": "integer"},
        "stale": {"type": "boolean"},
        "generation": {"type": "integer", "description": "changes whenever the advisories do"}}},
    "AuditEvent": {"type": "object", "properties": {
        "id": {"type": "integer"}, "time": {"type": "string"}, "actor": {"type": "string"},
        "action": {"type": "string"}, "resource_type": {"type": "string"}, "resource": {"type": "string"},
        "address": {"type": "string"}, "detail": {"type": "object"}}},
}

PATHS: dict[str, Any] = {
    "/api/v1/openapi.json": {"get": _operation("This description", {"200": {"description": "OpenAPI 3.1"}},
                                               secured=False)},
    "/api/v1/repos": {
        "get": _operation("List repositories (global admin)", {**_ok(_collection("Repository")),
                                                               **_errors("401", "403")}),
        "post": _operation("Create a repository (global admin)",
                           {**_ok(_ref("Repository"), "201", "Created"), **_errors("400", "401", "403", "409")},
                           body=_body(_ref("NewRepository"))),
    },
    "/api/v1/repos/{name}": {
        "get": _operation("Show a repository (its admins)", {**_ok(_ref("Repository")),
                                                             **_errors("401", "403", "404")}, [REPO]),
        "patch": _operation("Change a repository's settings (global admin)",
                            {**_ok(_ref("Repository")), **_errors("400", "401", "403", "404")}, [REPO],
                            _body(_ref("RepositoryChanges"))),
        "delete": _operation("Delete a repository and its file records (global admin)",
                             {**_NO_CONTENT, **_errors("401", "403", "404", "409")}, [REPO]),
    },
    "/api/v1/repos/{name}/policy": {
        "get": _operation("A repository's policy (its admins)", {**_ok(_ref("PolicyState")),
                                                                 **_errors("401", "403", "404")}, [REPO]),
        "put": _operation("Replace a repository's policy; pages change on the next request (global admin)",
                          {**_ok(_ref("PolicyState")), **_errors("400", "401", "403", "404")}, [REPO],
                          _body(_ref("Policy"))),
        "delete": _operation("Remove a repository's policy (global admin)",
                             {**_NO_CONTENT, **_errors("401", "403", "404")}, [REPO]),
    },
    "/api/v1/repos/{name}/policy/explain/{project}": {
        "get": _operation("What the policies let through of a project, and why not (its admins)",
                          {**_ok(_ref("Explanation")), **_errors("400", "401", "403", "404", "502", "504")},
                          [REPO, PROJECT, _query_param("version", {"type": "string"}, "one version only")]),
    },
    "/api/v1/repos/{name}/projects": {
        "get": _operation("List projects (read rights)", {**_ok(_collection("ProjectName")),
                                                          **_errors("400", "401", "403", "404", "502", "504")},
                          [REPO, *PAGING]),
    },
    "/api/v1/repos/{name}/projects/{project}": {
        "get": _operation("Versions and files of a project (read rights)",
                          {**_ok(_ref("Project")), **_errors("400", "401", "403", "404", "502", "504")},
                          [REPO, PROJECT]),
    },
    "/api/v1/repos/{name}/projects/{project}/status": {
        "put": _operation("Mark a project active, archived, deprecated or quarantined (PEP 792; upload rights; "
                          "hosted only)", {**_ok(_ref("StatusState")), **_errors("400", "401", "403", "404")},
                          [REPO, PROJECT], _body(_ref("Status"))),
    },
    "/api/v1/repos/{name}/projects/{project}/{version}": {
        "delete": _operation("Delete a release (upload rights; hosted only)",
                             {**_NO_CONTENT, **_errors("400", "401", "403", "404")}, [REPO, PROJECT, VERSION]),
    },
    "/api/v1/repos/{name}/projects/{project}/{version}/yank": {
        "post": _operation("Yank a release (PEP 592; upload rights)",
                           {**_ok(_ref("YankState")), **_errors("400", "401", "403", "404")},
                           [REPO, PROJECT, VERSION], _body(_ref("Yank"), required=False)),
    },
    "/api/v1/repos/{name}/projects/{project}/{version}/unyank": {
        "post": _operation("Unyank a release (upload rights)",
                           {**_ok(_ref("YankState")), **_errors("400", "401", "403", "404")},
                           [REPO, PROJECT, VERSION]),
    },
    "/api/v1/repos/{name}/files/{filename}": {
        "delete": _operation("Delete one file (upload rights; hosted only)",
                             {**_NO_CONTENT, **_errors("400", "401", "403", "404")},
                             [REPO, _path_param("filename", "distribution filename")]),
    },
    "/api/v1/repos/{name}/cache/{project}/refresh": {
        "post": _operation("Fetch a project's page from a proxy's upstream now (its admins; proxy only)",
                           {**_ok(_ref("CacheRefresh")), **_errors("400", "401", "403", "404", "502", "504")},
                           [REPO, PROJECT]),
    },
    "/api/v1/repos/{name}/cache/{project}": {
        "delete": _operation("Drop a project from a proxy's cache; its next request fetches it afresh (its admins; "
                             "proxy only)", {**_NO_CONTENT, **_errors("400", "401", "403", "404")}, [REPO, PROJECT]),
    },
    "/api/v1/repos/{name}/permissions": {
        "get": _operation("Who holds which level on the repository (its admins)",
                          {**_ok(_collection("Grant")), **_errors("401", "403", "404")}, [REPO]),
    },
    "/api/v1/users/{name}/permissions": {
        "get": _operation("The user's grants (the user, or a global admin)",
                          {**_ok(_collection("Grant")), **_errors("401", "403", "404")},
                          [_path_param("name", "user name")]),
    },
    "/api/v1/repos/{name}/permissions/{user}": {
        "put": _operation("Grant a level on the repository (its admins)",
                          {**_ok(_ref("Grant")), **_ok(_ref("Grant"), "201", "Created"),
                           **_errors("400", "401", "403", "404")},
                          [REPO, _path_param("user", "user name")], _body(_ref("Permission"))),
        "delete": _operation("Remove a user's grant (its admins)",
                             {**_NO_CONTENT, **_errors("401", "403", "404")},
                             [REPO, _path_param("user", "user name")]),
    },
    "/api/v1/users": {
        "get": _operation("List users (global admin)", {**_ok(_collection("User")), **_errors("401", "403")}),
        "post": _operation("Create a user (global admin); a robot has no password; a name taken in another case: 409",
                           {**_ok(_ref("User"), "201", "Created"), **_errors("400", "401", "403", "409")},
                           body=_body(_ref("NewUser"))),
    },
    "/api/v1/users/{name}/password": {
        "put": _operation("Change your own password (with the old one), or anyone's as a global admin",
                          {**_NO_CONTENT, **_errors("400", "401", "403", "404", "429")},
                          [_path_param("name", "user name, in any case")], _body(_ref("PasswordChange"))),
    },
    "/api/v1/users/{name}": {
        "delete": _operation("Delete a user with their tokens and grants (global admin)",
                             {**_NO_CONTENT, **_errors("401", "403", "404", "409")},
                             [_path_param("name", "user name, in any case")]),
    },
    "/api/v1/tokens": {
        "get": _operation("Your tokens (all, or ?user=, for a global admin)",
                          {**_ok(_collection("Token")), **_errors("401", "403")},
                          [_query_param("user", {"type": "string"}, "whose tokens")]),
        "post": _operation("Create a token (for yourself; for others as a global admin); the secret is shown once",
                           {**_ok(_ref("Token"), "201", "Created"), **_errors("400", "401", "403", "404")},
                           body=_body(_ref("NewToken"), required=False)),
    },
    "/api/v1/tokens/{token_id}": {
        "delete": _operation("Revoke a token (yours, or any as a global admin)",
                             {**_NO_CONTENT, **_errors("401", "403", "404")},
                             [{"name": "token_id", "in": "path", "required": True, "schema": {"type": "integer"}}]),
    },
    "/api/v1/advisories": {
        "get": _operation("How many advisories are imported and how old they are (any signed-in user)",
                          {**_ok(_ref("AdvisoriesStatus")), **_errors("401")}),
    },
    "/api/v1/admin/audit": {
        "get": _operation("The audit trail, newest first (global admin)",
                          {**_ok(_collection("AuditEvent")), **_errors("400", "401", "403")},
                          [_query_param("resource_type", {"type": "string"}, "only this kind of resource"),
                           _query_param("q", {"type": "string"}, "text to look for"),
                           _query_param("limit", {"type": "integer", "minimum": 1, "maximum": 1000}, "page size"),
                           _query_param("cursor", {"type": "integer"}, "the `next` of the previous page")]),
    },
}


def _refusable_writes(paths: dict[str, Any]) -> dict[str, Any]:
    """Every write may be refused before its view runs (web/__init__.py): 403 when another site's page sent
    it, 413 for a body too large, 415 for one that is not JSON."""
    refusals = _errors("403", "413", "415")
    refusals["403"] = {**refusals["403"], "description": "Not allowed, or sent by another site's page "
                                                         "(its Sec-Fetch-Site or Origin says so)"}
    return {path: {method: {**operation, "responses": {**operation["responses"], **refusals}}
                   if method != "get" else operation for method, operation in operations.items()}
            for path, operations in paths.items()}


PATHS = _refusable_writes(PATHS)

DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "pypilite management API", "version": __version__,
             "description": "Repositories, packages, users, tokens, permissions and the audit trail. "
                            "Errors are {\"error\": \"…\"} with the HTTP status that says why."},
    "servers": [{"url": "/"}],
    "security": [{"basic": []}],
    "components": {"securitySchemes": {"basic": {"type": "http", "scheme": "basic",
                                                 "description": "a password, or an API token"}},
                   "schemas": SCHEMAS},
    "paths": PATHS,
}
