"""Looking repositories up by name: one database read, then the right kind behind the common interface.

A group is told which members the asking principal may read, so a private member's projects never show
through a public group to someone who may not see them.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pypilite import access, models
from pypilite.auth import Principal
from pypilite.errors import NotFound, UserError
from pypilite.metrics import Metrics
from pypilite.repositories.base import Repository
from pypilite.repositories.group import GroupRepository
from pypilite.repositories.hosted import HostedRepository
from pypilite.repositories.proxy import ProxyRepository
from pypilite.storage import BlobStore
from pypilite.upstream import Upstream, UpstreamError, make_session, pip_index_url


REPOSITORY = models.Repository._meta.table_name


class Repositories:
    def __init__(self, blobs: BlobStore, instance: str, locks: Path, metrics: Metrics) -> None:
        self.blobs = blobs
        self.instance = instance
        self.locks = locks
        self.metrics = metrics
        self.session = make_session()  # one connection pool per process for every proxy

    def get(self, name: str, principal: Principal | None) -> Repository:
        """The repository as `principal` may see it; None (for writes, which check their target) sees all."""
        row = models.first(models.Repository.raw(f'SELECT * FROM "{REPOSITORY}" WHERE name = ?', name))
        if row is None:
            raise NotFound(f"repository {name!r} not found")
        return self._build(row, principal, depth=0)

    def _build(self, row: models.Repository, principal: Principal | None, depth: int) -> Repository:
        if row.repository_type == "group":
            if depth > 16:
                raise RuntimeError(f"group nesting too deep at {row.name!r}; a cycle slipped past validation")
            links = (models.GroupMember.select(models.GroupMember, models.Repository)
                     .join(models.Repository, on=models.GroupMember.member)
                     .where(models.GroupMember.group == row.id)
                     .order_by(models.GroupMember.position))
            members = [self._build(link.member, principal, depth + 1) for link in links]
            return GroupRepository(row.id, row.name, row.public, members, row.upload_to,
                                   frozenset(row.pass_through.split()), _reader(principal))
        if row.repository_type == "proxy":
            try:
                root = row.remote_url or pip_index_url()
            except UpstreamError as exc:
                raise UserError(502, str(exc)) from None
            upstream = Upstream(self.session, root, row.remote_timeout)
            return ProxyRepository(row, self.blobs, self.instance, upstream, self.locks, self.metrics)
        return HostedRepository(row, self.blobs, self.instance)


def _reader(principal: Principal | None) -> Callable[[Repository], bool] | None:
    if principal is None:
        return None
    return lambda leaf: access.allowed(principal, leaf.id, leaf.public, access.READ)
