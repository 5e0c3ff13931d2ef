"""Managing repositories (create, list, update, remove, a proxy's cache): the service functions behind the
CLI and the REST API.

Repositories live in the database; the config's [[repository]] entries are created at start-up when
missing and never overwrite what an operator changed since.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Iterable, Mapping
from typing import Any

from packaging.utils import InvalidName, canonicalize_name

from pypilite import audit, groups, models, policies, serials
from pypilite.audit import Actor
from pypilite.config import (
    REPOSITORY_KEYS,
    ConfigError,
    RepositoryConfig,
    parse_repository,
    validate_repository_name,
)
from pypilite.database import write_transaction
from pypilite.errors import BadRequest, Conflict, NotFound
from pypilite.models import GroupMember, Repository
from pypilite.repositories import Repositories
from pypilite.repositories.proxy import ProxyRepository
from pypilite.upstream import redact

CONFIG_ACTOR = Actor("config", "local")


def describe(row: Repository) -> RepositoryConfig:
    members = tuple(link.member.name for link in
                    GroupMember.select().where(GroupMember.group == row.id).order_by(GroupMember.position))
    return RepositoryConfig(
        name=row.name, repository_type=row.repository_type, public=row.public,
        allow_overwrite=row.allow_overwrite, remote_url=row.remote_url, cache_ttl=row.cache_ttl,
        remote_timeout=row.remote_timeout, members=members, upload_to=row.upload_to,
        pass_through=tuple(row.pass_through.split()), offline=row.offline, policy=stored_policy(row),
    )


def stored_policy(row: Repository) -> policies.Policy | None:
    """The policy a repository row carries (written by this module, so valid)."""
    return policies.from_json(row.policy, row.name, row.repository_type) if row.policy else None


def get_repository(name: str) -> RepositoryConfig:
    row = Repository.get_or_none(Repository.name == name)
    if row is None:
        raise NotFound(f"repository {name!r} not found")
    return describe(row)


def list_repositories() -> list[RepositoryConfig]:
    return [describe(row) for row in Repository.select().order_by(Repository.name)]


def create_repository(spec: RepositoryConfig, actor: Actor) -> RepositoryConfig:
    with write_transaction():
        if Repository.get_or_none(Repository.name == spec.name) is not None:
            raise Conflict(f"repository {spec.name!r} already exists")
        _insert(spec, actor)
    return spec


def _insert(spec: RepositoryConfig, actor: Actor) -> None:
    try:
        validate_repository_name(spec.name)
    except ConfigError as exc:
        raise BadRequest(str(exc)) from None
    members = _member_rows(spec) if spec.repository_type == "group" else []
    row = Repository.create(
        name=spec.name, repository_type=spec.repository_type, public=spec.public,
        allow_overwrite=spec.allow_overwrite, remote_url=spec.remote_url, cache_ttl=spec.cache_ttl,
        remote_timeout=spec.remote_timeout, upload_to=spec.upload_to, pass_through="\n".join(spec.pass_through),
        offline=spec.offline, policy=policies.to_json(spec.policy),
    )
    for position, member in enumerate(members):
        GroupMember.create(group=row.id, member=member.id, position=position)
    audit.record(actor, "repository.create", "repository", spec.name, **_settings(spec))


def _settings(spec: RepositoryConfig) -> dict[str, object]:
    settings = dataclasses.asdict(spec)
    settings["members"] = list(spec.members)
    settings["pass_through"] = list(spec.pass_through)
    settings["remote_url"] = redact(spec.remote_url)
    settings["policy"] = policies.as_dict(spec.policy) if spec.policy is not None else None
    del settings["name"]
    return settings


def update_repository(name: str, changes: dict[str, Any], actor: Actor) -> RepositoryConfig:
    """Change a repository's settings; its name and kind stay (create another for those)."""
    with write_transaction():
        row = Repository.get_or_none(Repository.name == name)
        if row is None:
            raise NotFound(f"repository {name!r} not found")
        current = describe(row)
        for key in ("name", "repository_type"):
            if key in changes and changes[key] != getattr(current, key):
                raise BadRequest(f"a repository's {key} cannot change")
        allowed = REPOSITORY_KEYS[current.repository_type]
        entry = {key: list(value) if isinstance(value, tuple) else value
                 for key, value in dataclasses.asdict(current).items() if key in allowed}
        entry["policy"] = policies.as_dict(current.policy) if current.policy is not None else None
        entry.update(changes)
        if current.remote_url and changes.get("remote_url") == redact(current.remote_url):
            entry["remote_url"] = current.remote_url  # sent back as listed: the credentials stay as they were
        entry.update(name=name, repository_type=current.repository_type)
        try:
            spec = parse_repository(entry, f"repository {name!r}")
        except ConfigError as exc:
            raise BadRequest(str(exc)) from None
        members = _member_rows(spec) if spec.repository_type == "group" else []
        # Counted as a leaf, the group is among what its new members reach only if one of them reaches it.
        reached = groups.flatten(members, lambda member: None if member.id == row.id else _members_of(member),
                                 key=lambda member: member.id)
        if any(leaf.id == row.id for leaf in reached):
            raise BadRequest(f"group {name!r} cannot contain itself, directly or through another group")
        Repository.update(
            public=spec.public, allow_overwrite=spec.allow_overwrite, remote_url=spec.remote_url,
            cache_ttl=spec.cache_ttl, remote_timeout=spec.remote_timeout, upload_to=spec.upload_to,
            pass_through="\n".join(spec.pass_through), offline=spec.offline, policy=policies.to_json(spec.policy),
        ).where(Repository.id == row.id).execute()
        if spec.repository_type == "group":
            GroupMember.delete().where(GroupMember.group == row.id).execute()
            for position, member in enumerate(members):
                GroupMember.create(group=row.id, member=member.id, position=position)
        # Every page of the repository may render differently now.
        serials.repository_changed(row.id)
        audit.record(actor, "repository.update", "repository", name, **_settings(spec))
        return spec


def _member_rows(spec: RepositoryConfig) -> list[Repository]:
    """A group's members, checked: they exist, none twice, not itself, and upload_to is hosted among them."""
    members = []
    for name in spec.members:
        member = Repository.get_or_none(Repository.name == name)
        if member is None:
            raise BadRequest(f"group {spec.name!r}: member {name!r} does not exist")
        if name == spec.name:
            raise BadRequest(f"group {spec.name!r} cannot contain itself")
        members.append(member)
    if len(set(spec.members)) != len(spec.members):
        raise BadRequest(f"group {spec.name!r} lists a member twice")
    if spec.upload_to:
        leaves = groups.flatten(members, _members_of, key=lambda member: member.id)
        target = next((m for m in leaves if m.name == spec.upload_to), None)
        if target is None or target.repository_type != "hosted":
            raise BadRequest(f"group {spec.name!r}: upload_to must name a hosted member (or a hosted member of "
                             f"a member group), not {spec.upload_to!r}")
    return members


def _members_of(row: Repository) -> list[Repository] | None:
    """A group's members in order; None for another kind."""
    if row.repository_type != "group":
        return None
    return [link.member for link in GroupMember.select().where(GroupMember.group == row.id)
            .order_by(GroupMember.position)]


def remove_repository(name: str, actor: Actor) -> None:
    with write_transaction():
        row = Repository.get_or_none(Repository.name == name)
        if row is None:
            raise NotFound(f"repository {name!r} not found")
        groups = [link.group.name for link in GroupMember.select().where(GroupMember.member == row.id)]
        if groups:
            raise Conflict(f"repository {name!r} is a member of group {groups[0]!r}; remove it from the group first")
        # Rows only: blobs may be shared with other repositories; unreferenced ones are garbage for a later sweep.
        models.File.delete().where(models.File.project.in_(
            models.Project.select(models.Project.id).where(models.Project.repository == row.id))).execute()
        models.Project.delete().where(models.Project.repository == row.id).execute()
        GroupMember.delete().where(GroupMember.group == row.id).execute()
        row.delete_instance(recursive=True)
        audit.record(actor, "repository.delete", "repository", name)


def ensure_configured(specs: Iterable[RepositoryConfig]) -> list[str]:
    """Create the configured repositories that do not exist yet, members before the groups that list them."""
    created = []
    pending = list(specs)
    with write_transaction():
        existing = {row.name for row in Repository.select(Repository.name)}
        pending = [spec for spec in pending if spec.name not in existing]
        while pending:
            ready = [s for s in pending if all(m in existing for m in s.members)]
            if not ready:
                _explain_unready(pending, existing)
            for spec in ready:
                _insert(spec, CONFIG_ACTOR)
                existing.add(spec.name)
                created.append(spec.name)
                pending.remove(spec)
    return created


def config_drift(specs: Iterable[RepositoryConfig], written: Mapping[str, frozenset[str]],
                 current: Mapping[str, RepositoryConfig]) -> list[str]:
    """One line per key a config file sets otherwise than the database has it. The database is what is served
    (the API and the CLI change it), so an edited config entry changes nothing until it is applied."""
    lines = []
    for spec in specs:
        have, keys = current.get(spec.name), written.get(spec.name, frozenset())
        if have is None or not keys:
            continue
        where = f"repository {spec.name!r}"
        if spec.repository_type != have.repository_type:
            lines.append(f"{where}: the config says repository_type = {spec.repository_type!r}, the database has "
                         f"{have.repository_type!r}; a type cannot change: remove the repository and add it again")
            continue
        for key in sorted(keys & REPOSITORY_KEYS[have.repository_type]):
            wanted, served = getattr(spec, key), getattr(have, key)
            if wanted != served:
                command = (f"policy set {spec.name} --from-config" if key == "policy"
                           else f"repo update {spec.name} {_option(key, wanted)}")
                lines.append(f"{where}: the config sets {key} = {_shown(key, wanted)}, the database has "
                             f"{_shown(key, served)}, which is served; apply the config with "
                             f"`python app.py {command}`")
    return lines


def _shown(key: str, value: object) -> str:
    if key == "remote_url":
        return repr(redact(str(value)))
    if key == "policy":
        return policies.to_json(value) if isinstance(value, policies.Policy) else "none"
    if isinstance(value, tuple):
        return repr(list(value))
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _option(key: str, value: Any) -> str:
    """The `repo update` option that sets `key` to `value`."""
    flag = "--" + key.replace("_", "-")
    if key == "public":
        return "--public" if value else "--private"
    if key == "offline":
        return f"{flag} {str(value).lower()}"
    if key == "allow_overwrite":
        return flag if value else "--no-allow-overwrite"
    if key in ("members", "pass_through"):
        singular = "--member" if key == "members" else flag
        return " ".join(f"{singular} {shlex.quote(item)}" for item in value) or f"--no-{flag[2:]}"
    if key == "remote_url" and redact(value) != value:
        return f"{flag} URL  (the config's, with its credentials)"
    return f"{flag} {shlex.quote(str(value))}"


def _explain_unready(pending: list[RepositoryConfig], existing: set[str]) -> None:
    known = existing | {spec.name for spec in pending}
    for spec in pending:
        for member in spec.members:
            if member not in known:
                raise BadRequest(f"group {spec.name!r}: member {member!r} does not exist")
    raise BadRequest(f"groups {', '.join(spec.name for spec in pending)} form a cycle")


def _proxy(repositories: Repositories, name: str) -> ProxyRepository:
    repository = repositories.get(name, None).underlying()
    if not isinstance(repository, ProxyRepository):
        raise BadRequest(f"repository {name!r} is not a proxy")
    return repository


def _project_name(project: str) -> str:
    try:
        return canonicalize_name(project, validate=True)
    except InvalidName:
        raise BadRequest(f"invalid project name {project!r}") from None


def refresh_cached_project(repositories: Repositories, name: str, project: str, actor: Actor) -> int:
    """Refetch one project's page from the proxy's upstream now; the number of files it lists. A project the
    upstream does not have is a 404, not a refresh of nothing."""
    project = _project_name(project)
    page = _proxy(repositories, name).refresh(project)
    with write_transaction():
        audit.record(actor, "cache.refresh", "repository", name, project=project)
    if page is None:
        raise NotFound(f"the upstream of repository {name!r} has no project {project!r}")
    return len(page.files)


def forget_cached_project(repositories: Repositories, name: str, project: str, actor: Actor) -> None:
    """Drop one project from a proxy's cache: its next request fetches it afresh."""
    project = _project_name(project)
    _proxy(repositories, name).forget(project)
    with write_transaction():
        audit.record(actor, "cache.forget", "repository", name, project=project)
