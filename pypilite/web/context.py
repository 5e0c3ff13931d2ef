"""What the app factory wires together, reachable from any view without module globals."""

from __future__ import annotations

from typing import Protocol, cast

import flask
from flask import current_app

from pypilite import access
from pypilite.auth import Principal
from pypilite.repositories.base import Repository
from pypilite.services import Services
from pypilite.web.pagecache import PageCache

SERVICES = "pypilite"
PAGES = "pypilite.pages"


class _Identified(Protocol):
    """What this module reads of a request (pypilite.web.wrappers.PypiliteRequest has it)."""

    @property
    def principal(self) -> Principal: ...


def services() -> Services:
    return current_app.extensions[SERVICES]


def page_cache() -> PageCache:
    """Rendered pages this process keeps: the web layer's own cache, not a service."""
    return current_app.extensions[PAGES]


def principal() -> Principal:
    """Who sent this request, authenticated once per request (see PypiliteRequest.principal)."""
    return cast(_Identified, flask.request).principal


def repository_for(name: str | None, action: str) -> Repository:
    """The named (or default) repository, if this request's principal may do `action` to it; 401/403/404
    otherwise. For reading, a group shows only the members the principal may read."""
    who = principal()
    repository = services().repositories.get(repository_name(name), who if action == access.READ else None)
    access.require(who, repository, action)
    return repository


def readable_repository(name: str | None) -> Repository:
    return repository_for(name, access.READ)


def repository_name(name: str | None) -> str:
    """The repository a URL names, or the configured default for the short URLs (/simple/, POST /)."""
    return name if name is not None else services().config.server.default_repository
