"""The one place that decides whether a principal may do something to a repository.

Until per-repository grants exist: anyone may read a public repository, any authenticated user may read
and upload everywhere.
"""

from __future__ import annotations

from werkzeug.exceptions import Forbidden

from pypilite.auth import Principal, challenge
from pypilite.repositories.base import Repository

READ = "read"
UPLOAD = "upload"


def allowed(principal: Principal, repository: Repository, action: str) -> bool:
    if action == READ and repository.public:
        return True
    return principal.authenticated


def require(principal: Principal, repository: Repository, action: str) -> None:
    """Raise 401 (with the Basic challenge pip needs to consult keyring) or 403 unless allowed."""
    if allowed(principal, repository, action):
        return
    if not principal.authenticated:
        raise challenge()
    raise Forbidden(f"{principal.name!r} may not {action} repository {repository.name!r}")
