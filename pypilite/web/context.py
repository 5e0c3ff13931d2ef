"""What the app factory wires together, reachable from any view without module globals."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, request

from pypilite import access
from pypilite.auth import Authenticator, Principal
from pypilite.config import Config
from pypilite.metrics import Metrics
from pypilite.repositories import Repositories
from pypilite.repositories.base import Repository
from pypilite.storage import BlobStore
from pypilite.web.pagecache import PageCache


@dataclass(frozen=True)
class Services:
    config: Config
    blobs: BlobStore
    repositories: Repositories
    authenticator: Authenticator
    pages: PageCache
    metrics: Metrics
    loop_marker: str  # what this index's own upstream requests carry (pypilite/loops.py)


def services() -> Services:
    return current_app.extensions["pypilite"]


def principal() -> Principal:
    """Who sent this request, authenticated once per request (see PypiliteRequest.principal)."""
    return request.principal


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
