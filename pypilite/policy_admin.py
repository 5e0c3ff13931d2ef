"""The package firewall's management: a repository's policy set, shown and explained; the service functions
behind `python app.py policy …` and /api/v1/repos/<name>/policy."""

from __future__ import annotations

from typing import Any

from packaging.utils import InvalidName, canonicalize_name

from pypilite import policies, repository_admin
from pypilite.audit import Actor
from pypilite.config import RepositoryConfig
from pypilite.errors import BadRequest
from pypilite.repositories import Repositories
from pypilite.repositories.base import version_key


def show_policy(name: str) -> dict[str, Any] | None:
    spec = repository_admin.get_repository(name)
    return policies.as_dict(spec.policy) if spec.policy is not None else None


def set_policy(name: str, policy: dict[str, Any] | None, actor: Actor) -> RepositoryConfig:
    """Replace a repository's policy (None: remove it); every page of the repository changes at once."""
    return repository_admin.update_repository(name, {"policy": policy}, actor)


def explain(repositories: Repositories, name: str, project: str, version: str | None = None) -> dict[str, Any]:
    """What the repository offers of a project, version by version, and for each file it does not offer (or,
    in report mode, would not: `enforced` false, the file still offered), the repository whose policy decided,
    the rule and the reason. A version is allowed when any of its files is offered."""
    try:
        project = canonicalize_name(project, validate=True)
    except InvalidName:
        raise BadRequest(f"invalid project name {project!r}") from None
    repository = repositories.get(name, None)
    offered = repository.project_page(project)
    decided = repository.decisions(project, cached=False)
    blocked: dict[str, list[dict[str, Any]]] = {}
    files: dict[str, str] = {dist.filename: dist.version for dist in offered.files} if offered else {}
    offered_files = set(files)
    for holder, dist, decision in decided:
        files[dist.filename] = dist.version
        blocked.setdefault(dist.filename, []).append({
            "repository": holder.name, "rule": decision.rule, "reason": decision.reason,
            "advisories": list(decision.advisories), "enforced": decision.enforced})
    versions = sorted({v for v in files.values() if version is None or v == version}, key=version_key)
    return {
        "repository": name, "project": project, "policy": show_policy(name),
        "versions": [{
            "version": v,
            "allowed": any(f in offered_files for f, fv in files.items() if fv == v),
            "files": [{"filename": f, "offered": f in offered_files, "blocked": blocked.get(f, [])}
                      for f, fv in sorted(files.items()) if fv == v],
        } for v in versions],
    }
