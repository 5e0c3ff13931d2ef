"""What the app factory wires together, reachable from any view without module globals."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from pypilite.config import Config
from pypilite.repositories import Repositories
from pypilite.storage import BlobStore


@dataclass(frozen=True)
class Services:
    config: Config
    blobs: BlobStore
    repositories: Repositories


def services() -> Services:
    return current_app.extensions["pypilite"]


def repository_name(name: str | None) -> str:
    """The repository a URL names, or the configured default for the short URLs (/simple/, POST /)."""
    return name if name is not None else services().config.server.default_repository
