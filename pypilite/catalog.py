"""What the web UI lists: the repositories a reader may see with their sizes, a repository's projects a page
at a time, and a search over project names.

Each question is a fixed number of queries whatever the number of projects: counts and sizes come from
GROUP BY, pages from LIMIT/OFFSET. Nothing here asks an upstream: a proxy lists what it has cached.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime

import peewee as pw

from pypilite import access
from pypilite.auth import Principal
from pypilite.database import database, sql
from pypilite.errors import BadRequest, NotFound
from pypilite.groups import flatten
from pypilite.models import File, GroupMember, Project, Repository
from pypilite.repositories.base import Outline, version_key
from pypilite.repositories.base import Repository as RepositoryView

PAGE_SIZE = 50
MAX_SEARCH_LENGTH = 100
SORTS = ("newest", "name")
PROJECT = Project._meta.table_name
FILE = File._meta.table_name


@dataclass(frozen=True)
class RepositorySummary:
    name: str
    repository_type: str
    public: bool
    projects: int
    size: int | None  # bytes stored; None where nothing is stored (groups) or the count would mislead (proxies)
    members: tuple[str, ...]  # a group's members the reader may see, in order
    upload_to: str


@dataclass(frozen=True)
class ProjectSummary:
    name: str
    display_name: str
    repository: str  # where the UI's link goes
    latest_version: str
    last_upload: datetime | None
    files: int


@dataclass(frozen=True)
class Page:
    items: tuple[ProjectSummary, ...]
    number: int
    pages: int
    total: int


def parse_page(value: str | None) -> int:
    """A page number from a query string: a whole number from 1 (400 otherwise)."""
    if value is None:
        return 1
    if not re.fullmatch(r"[0-9]{1,9}", value) or int(value) < 1:
        raise BadRequest(f"page must be a whole number from 1, not {value[:40]!r}")
    return int(value)


def parse_sort(value: str | None) -> str:
    if value is None:
        return SORTS[0]
    if value not in SORTS:
        raise BadRequest(f"sort must be one of {', '.join(SORTS)}, not {value[:40]!r}")
    return value


def _bounds(number: int, total: int) -> tuple[int, int]:
    """The page count, and 404 for a page past the last (page 1 of nothing is an empty page)."""
    pages = max(1, math.ceil(total / PAGE_SIZE))
    if number > pages:
        raise NotFound(f"there is no page {number}: the last page is {pages}")
    return pages, (number - 1) * PAGE_SIZE


def repositories(who: Principal) -> list[RepositorySummary]:
    """Every repository `who` may read, with project counts and stored sizes: five queries at most."""
    rows = list(Repository.select(Repository.id, Repository.name, Repository.repository_type, Repository.public,
                                  Repository.upload_to).order_by(Repository.name))
    visible = access.readable(who, [(row.id, row.public) for row in rows])
    rows = [row for row in rows if row.id in visible]
    by_id = {row.id: row for row in rows}
    counts = dict(Project.select(Project.repository, pw.fn.COUNT(Project.id))
                  .where(Project.repository.in_(list(by_id))).group_by(Project.repository).tuples()) if rows else {}
    hosted = [row.id for row in rows if row.repository_type == "hosted"]
    sizes = dict(File.select(Project.repository, pw.fn.SUM(File.size)).join(Project)
                 .where(Project.repository.in_(hosted)).group_by(Project.repository).tuples()) if hosted else {}
    groups = [row for row in rows if row.repository_type == "group"]
    members, group_counts = _group_members(groups), {}
    if groups:
        group_counts = _group_project_counts({group.id: _leaf_ids(group.id, members, by_id) for group in groups})
    summaries = []
    for row in rows:
        is_group = row.repository_type == "group"
        summaries.append(RepositorySummary(
            name=row.name, repository_type=row.repository_type, public=row.public,
            projects=group_counts.get(row.id, 0) if is_group else counts.get(row.id, 0),
            size=(sizes.get(row.id) or 0) if row.repository_type == "hosted" else None,
            members=tuple(by_id[m].name for m in members.get(row.id, ()) if m in by_id),
            upload_to=row.upload_to,
        ))
    return summaries


def _group_members(groups: list[Repository]) -> dict[int, list[int]]:
    if not groups:
        return {}
    members: dict[int, list[int]] = defaultdict(list)
    for group_id, member_id in (GroupMember.select(GroupMember.group, GroupMember.member)
                                .order_by(GroupMember.group, GroupMember.position).tuples()):
        members[group_id].append(member_id)
    return members


def _leaf_ids(group_id: int, members: dict[int, list[int]], visible: dict[int, Repository]) -> list[int]:
    """The readable repositories a group reaches (an unreadable empty group, taken for a leaf, is left out)."""
    def members_of(repository: int) -> list[int] | None:
        is_group = repository in members or repository in visible and visible[repository].repository_type == "group"
        return members.get(repository, []) if is_group else None

    return [leaf for leaf in flatten(members.get(group_id, ()), members_of, key=lambda leaf: leaf)
            if leaf in visible]


def _group_project_counts(leaves: dict[int, list[int]]) -> dict[int, int]:
    """Distinct project names per group over its readable leaves, in one query."""
    pairs = [(group, leaf) for group, ids in leaves.items() for leaf in ids]
    if not pairs:
        return {}
    values = ", ".join("(?, ?)" for _ in pairs)
    cursor = database.execute_sql(sql(
        f"WITH pairs(group_id, repository_id) AS (VALUES {values}) "
        f'SELECT pairs.group_id, COUNT(DISTINCT p.name) FROM pairs JOIN "{PROJECT}" p '
        "ON p.repository_id = pairs.repository_id GROUP BY pairs.group_id"),
        [value for pair in pairs for value in pair])
    return dict(cursor.fetchall())


def projects(repository: RepositoryView, sort: str, number: int) -> Page:
    """One page of the projects `repository` serves its reader, each as its own page shows it (outlines: a
    group's through its guard, so the listing never shows what the Simple API hides). The order comes from
    its readable members' tables (newest: the last upload any of them holds); the page from the repository."""
    leaves = [leaf.id for leaf in repository.leaves()]
    where = Project.repository.in_(leaves) if leaves else pw.SQL("0 = 1")
    total = Project.select(pw.fn.COUNT(pw.fn.DISTINCT(Project.name))).where(where).scalar() or 0
    pages, offset = _bounds(number, total)
    latest = pw.fn.MAX(File.upload_time)
    order = (Project.name,) if sort == "name" else (pw.Case(None, [(latest.is_null(), 1)], 0), latest.desc(),
                                                     Project.name)
    rows = (Project.select(Project.name, pw.fn.MIN(Project.display_name))
            .join(File, pw.JOIN.LEFT_OUTER, on=(File.project == Project.id))
            .where(where).group_by(Project.name).order_by(*order).limit(PAGE_SIZE).offset(offset).tuples())
    rows = list(rows)
    shown = repository.outlines([name for name, _display_name in rows])
    items = tuple(_summary(repository, name, display_name, shown.get(name)) for name, display_name in rows)
    return Page(items=items, number=number, pages=pages, total=total)


def _summary(repository: RepositoryView, name: str, display_name: str, shown: Outline | None) -> ProjectSummary:
    """A project as the repository's page of it shows it; a name without a page to this reader shows none."""
    return ProjectSummary(
        name=name, display_name=display_name or name, repository=repository.name,
        latest_version=_highest(list(shown.releases)) if shown is not None and shown.releases else "",
        last_upload=shown.last_upload if shown is not None else None, files=shown.files if shown is not None else 0,
    )


def _highest(releases: list[tuple[str, bool]]) -> str:
    """The highest version, skipping yanked ones unless every one is yanked."""
    return max([v for v, yanked in releases if not yanked] or [v for v, _ in releases], key=version_key)


def normalize_search(text: str) -> str | None:
    """The text as a PEP 503 name fragment; None when it holds a character no project name has."""
    if len(text) > MAX_SEARCH_LENGTH:
        raise BadRequest(f"search text is too long: at most {MAX_SEARCH_LENGTH} characters")
    needle = re.sub(r"[-_.\s]+", "-", text.strip().lower())
    return needle if re.fullmatch(r"[a-z0-9-]*", needle) else None


def search(who: Principal, text: str, number: int) -> Page:
    """Projects whose normalized name contains `text`, in the repositories that hold them and `who` may read:
    exact matches first, then prefixes, then by name."""
    needle = normalize_search(text)
    rows = list(Repository.select(Repository.id, Repository.name, Repository.public)
                .where(Repository.repository_type != "group"))
    visible = access.readable(who, [(row.id, row.public) for row in rows])
    names = {row.id: row.name for row in rows if row.id in visible}
    if not needle or not names:
        return Page(items=(), number=1, pages=1, total=0)
    where = Project.repository.in_(list(names)) & Project.name.contains(needle)
    total = Project.select(pw.fn.COUNT(Project.id)).where(where).scalar() or 0
    pages, offset = _bounds(number, total)
    rank = pw.Case(None, [(Project.name == needle, 0), (Project.name.startswith(needle), 1)], 2)
    latest = pw.fn.MAX(File.upload_time)
    rows = list(Project.select(Project.id, Project.name, Project.display_name, Project.repository,
                               latest.alias("latest"), pw.fn.COUNT(File.id).alias("files"))
                .join(File, pw.JOIN.LEFT_OUTER, on=(File.project == Project.id))
                .where(where).group_by(Project.id).order_by(rank, Project.name, Project.repository)
                .limit(PAGE_SIZE).offset(offset).dicts())
    versions = _versions_by_project([row["id"] for row in rows])
    items = tuple(ProjectSummary(
        name=row["name"], display_name=row["display_name"] or row["name"], repository=names[row["repository"]],
        latest_version=versions.get(row["id"], ""), last_upload=File.upload_time.python_value(row["latest"]),
        files=row["files"],
    ) for row in rows)
    return Page(items=items, number=number, pages=pages, total=total)


def _versions_by_project(project_ids: list[int]) -> dict[int, str]:
    if not project_ids:
        return {}
    found: dict[int, list[tuple[str, bool]]] = defaultdict(list)
    for project_id, version, yanked in (File.select(File.project, File.version, File.yanked)
                                        .where(File.project.in_(project_ids)).distinct().tuples()):
        found[project_id].append((version, yanked))
    return {project_id: _highest(releases) for project_id, releases in found.items()}
