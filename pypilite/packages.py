"""Projects, versions and files of a repository: listing them, yanking (PEP 592), marking a project's status
(PEP 792) and deleting. The service functions behind /api/v1/repos/<name>/projects/… and /files/…

Only a hosted repository's packages can be yanked or deleted: a proxy mirrors what its upstream says, and a
group owns nothing. A deleted filename leaves a tombstone, so it can never come back with other bytes.
"""

from __future__ import annotations

from itertools import groupby
from typing import Any

from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from pypilite import audit, markers, serials
from pypilite.audit import Actor
from pypilite.database import write_transaction
from pypilite.errors import BadRequest, NotFound
from pypilite.models import File, Project, Tombstone, api_time, utcnow
from pypilite.repositories.base import DistFile, Repository
from pypilite.repositories.hosted import HostedRepository

MAX_PAGE = 1000


def _normalized(project: str) -> str:
    try:
        return canonicalize_name(project, validate=True)
    except InvalidName:
        raise BadRequest(f"invalid project name {project!r}") from None


def _version(version: str) -> str:
    try:
        return str(Version(version))
    except InvalidVersion:
        raise BadRequest(f"invalid version {version!r}") from None


def list_projects(repository: Repository, limit: int = 100, after: str = "") -> tuple[list[dict[str, Any]], str | None]:
    """One page of project names after the cursor `after`, and the cursor of the next page (or None)."""
    limit = min(max(limit, 1), MAX_PAGE)
    names = [name for name in repository.project_index().names if name > after]
    page = names[:limit]
    return [{"name": name} for name in page], (page[-1] if len(names) > limit else None)


def file_json(dist: DistFile) -> dict[str, Any]:
    return {"filename": dist.filename, "packagetype": dist.packagetype, "size": dist.size, "sha256": dist.sha256,
            "upload_time": api_time(dist.upload_time), "uploader": dist.uploader,
            "requires_python": dist.requires_python,
            "yanked": dist.yanked, "yanked_reason": dist.yanked_reason, "repository": dist.repository}


def show_project(repository: Repository, project: str) -> dict[str, Any]:
    name = _normalized(project)
    page = repository.project_page(name)
    if page is None:
        raise NotFound(f"project {project!r} not found in repository {repository.name!r}")
    by_version = {version: list(files) for version, files in groupby(page.files, key=lambda f: f.version)}
    return {"name": page.name, "status": page.markers.status or markers.ACTIVE,
            "status_reason": page.markers.status_reason, "versions": [{
        "version": version,
        "yanked": all(f.yanked for f in by_version[version]),
        "yanked_reason": next((f.yanked_reason for f in by_version[version] if f.yanked_reason), ""),
        "files": [file_json(f) for f in by_version[version]],
    } for version in page.versions]}


def _hosted(repository: Repository) -> HostedRepository:
    repository = repository.underlying()
    if not isinstance(repository, HostedRepository):
        raise BadRequest(f"repository {repository.name!r} is a {repository.repository_type} repository: only a "
                         "hosted repository's packages can be yanked, deleted or given a status")
    return repository


def current_status(repository: Repository, project: str) -> str:
    """A hosted project's PEP 792 status."""
    hosted = _hosted(repository)
    row = Project.get_or_none((Project.repository == hosted.id) & (Project.name == _normalized(project)))
    if row is None:
        raise NotFound(f"project {project!r} not found in repository {hosted.name!r}")
    return row.status


def set_status(repository: Repository, project: str, status: str, reason: str, actor: Actor) -> dict[str, str]:
    """Mark a hosted project active, archived, deprecated or quarantined (PEP 792). Archived and quarantined
    projects take no uploads; a quarantined one offers no files to anyone until it is marked otherwise."""
    hosted = _hosted(repository)
    status, reason = markers.parse_status(status, reason)
    name = _normalized(project)
    with write_transaction():
        row = Project.get_or_none((Project.repository == hosted.id) & (Project.name == name))
        if row is None:
            raise NotFound(f"project {project!r} not found in repository {hosted.name!r}")
        Project.update(status=status, status_reason=reason).where(Project.id == row.id).execute()
        serials.projects_changed(row.id)
        audit.record(actor, "project.status", "project", f"{hosted.name}/{name}", status=status, reason=reason)
    return {"project": name, "status": status, "status_reason": reason}


def _release_files(repository: HostedRepository, project: str, version: str) -> tuple[Project, list[File]]:
    name, normalized_version = _normalized(project), _version(version)
    row = Project.get_or_none((Project.repository == repository.id) & (Project.name == name))
    files = list(File.select().where((File.project == row.id) & (File.version == normalized_version))) if row else []
    if not files:
        raise NotFound(f"{project} {version} not found in repository {repository.name!r}")
    return row, files


def set_yanked(repository: Repository, project: str, version: str, yanked: bool, reason: str,
               actor: Actor) -> None:
    """Yank (or unyank) every file of a release: pip and uv then skip it unless pinned with ==."""
    hosted = _hosted(repository)
    with write_transaction():
        row, files = _release_files(hosted, project, version)
        File.update(yanked=yanked, yanked_reason=reason if yanked else "").where(
            File.id.in_([f.id for f in files])).execute()
        serials.projects_changed(row.id)
        audit.record(actor, "release.yank" if yanked else "release.unyank", "release",
                     f"{hosted.name}/{row.name}/{files[0].version}", reason=reason)


def _delete(hosted: HostedRepository, project: Project, files: list[File]) -> None:
    for file in files:
        (Tombstone.insert(repository=hosted.id, filename=file.filename, sha256=file.sha256, deleted=utcnow())
         .on_conflict(conflict_target=[Tombstone.repository, Tombstone.filename],
                      preserve=[Tombstone.sha256, Tombstone.deleted]).execute())
    File.delete().where(File.id.in_([f.id for f in files])).execute()
    if File.select().where(File.project == project.id).exists():
        serials.projects_changed(project.id)
    else:
        project.delete_instance()
        serials.names_changed(hosted.id)


def delete_release(repository: Repository, project: str, version: str, actor: Actor) -> list[str]:
    """Delete every file of a release; returns their names. Blobs stay until `check --gc`."""
    hosted = _hosted(repository)
    with write_transaction():
        row, files = _release_files(hosted, project, version)
        _delete(hosted, row, files)
        audit.record(actor, "release.delete", "release", f"{hosted.name}/{row.name}/{files[0].version}",
                     files=[f.filename for f in files])
    return [f.filename for f in files]


def delete_file(repository: Repository, filename: str, actor: Actor) -> None:
    hosted = _hosted(repository)
    with write_transaction():
        file = (File.select(File, Project).join(Project)
                .where((Project.repository == hosted.id) & (File.filename == filename)).first())
        if file is None:
            raise NotFound(f"file {filename!r} not found in repository {hosted.name!r}")
        _delete(hosted, file.project, [file])
        audit.record(actor, "file.delete", "file", f"{hosted.name}/{filename}", sha256=file.sha256)
