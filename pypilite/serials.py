"""The change counters in every page's ETag, moved in one place.

A write that changes what a page shows must move its counter, or the page's old ETag stays valid and a
client (or a worker's page cache) keeps the stale page for good: so every write calls these, inside its
transaction, and none spells `serial + 1` itself.
"""

from __future__ import annotations

from collections.abc import Iterable

import peewee as pw

from pypilite.models import Project, Repository


def projects_changed(projects: int | Iterable[int] | pw.SelectQuery) -> None:
    """The pages of these projects (an id, ids, or a query selecting ids) show something new."""
    ids = [projects] if isinstance(projects, int) else projects
    if not isinstance(ids, pw.SelectQuery):
        ids = list(ids)
    Project.update(serial=Project.serial + 1).where(Project.id.in_(ids)).execute()


def names_changed(repository: int) -> None:
    """A project appeared in or left the repository: its root index shows something new."""
    Repository.update(serial=Repository.serial + 1).where(Repository.id == repository).execute()


def repository_changed(repository: int) -> None:
    """The repository's settings changed: any of its pages, the root index included, may show something new."""
    names_changed(repository)
    Project.update(serial=Project.serial + 1).where(Project.repository == repository).execute()
