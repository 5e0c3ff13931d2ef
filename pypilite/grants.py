"""Per-repository grants (read, upload, admin): the service functions behind `app.py grant|revoke`,
/api/v1/repos/<name>/permissions and the UI's Access section."""

from __future__ import annotations

from typing import Any

from pypilite import audit
from pypilite.access import LEVELS
from pypilite.audit import Actor
from pypilite.database import write_transaction
from pypilite.errors import BadRequest, NotFound
from pypilite.models import Grant, Repository, User
from pypilite.users import get_user


def _repository(name: str) -> Repository:
    row = Repository.get_or_none(Repository.name == name)
    if row is None:
        raise NotFound(f"repository {name!r} not found")
    return row


def as_json(user: str, repository: str, level: str) -> dict[str, Any]:
    return {"user": user, "repository": repository, "level": level}


def list_grants(repository: str | None = None, user: str | None = None) -> list[dict[str, Any]]:
    """Who holds which level, on one repository, of one user, or everywhere; by repository, then user."""
    query = (Grant.select(Grant.level, User.name, Repository.name.alias("repository_name"))
             .join(User).switch(Grant).join(Repository)
             .order_by(Repository.name, User.name))
    if repository is not None:
        query = query.where(Repository.id == _repository(repository).id)
    if user is not None:
        query = query.where(User.id == get_user(user).id)
    return [as_json(user_name, repository_name, level) for level, user_name, repository_name in query.tuples()]


def set_grant(user: str, repository: str, level: str, actor: Actor) -> bool:
    """Give `user` exactly `level` on `repository`; True when the grant is new."""
    if level not in LEVELS:
        raise BadRequest(f"level must be one of {', '.join(LEVELS)}, not {level!r}")
    with write_transaction():
        owner, repo = get_user(user), _repository(repository)
        existing = Grant.get_or_none((Grant.user == owner.id) & (Grant.repository == repo.id))
        if existing is None:
            Grant.create(user=owner.id, repository=repo.id, level=level)
        else:
            Grant.update(level=level).where(Grant.id == existing.id).execute()
        audit.record(actor, "grant.set", "repository", repository, user=owner.name, level=level)
    return existing is None


def remove_grant(user: str, repository: str, actor: Actor) -> None:
    with write_transaction():
        owner, repo = get_user(user), _repository(repository)
        removed = Grant.delete().where((Grant.user == owner.id) & (Grant.repository == repo.id)).execute()
        if not removed:
            raise NotFound(f"{user!r} has no grant on repository {repository!r}")
        audit.record(actor, "grant.remove", "repository", repository, user=owner.name)
