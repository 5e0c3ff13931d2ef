"""Looking repositories up by name: one database read, then the right kind behind the common interface."""

from __future__ import annotations

from pypilite import models
from pypilite.errors import NotFound
from pypilite.repositories.base import Repository
from pypilite.repositories.group import GroupRepository
from pypilite.repositories.hosted import HostedRepository
from pypilite.repositories.proxy import ProxyRepository
from pypilite.storage import BlobStore

_STORED_KINDS = {"hosted": HostedRepository, "proxy": ProxyRepository}


class Repositories:
    def __init__(self, blobs: BlobStore, instance: str) -> None:
        self.blobs = blobs
        self.instance = instance

    def get(self, name: str) -> Repository:
        row = models.Repository.get_or_none(models.Repository.name == name)
        if row is None:
            raise NotFound(f"repository {name!r} not found")
        return self._build(row, depth=0)

    def _build(self, row: models.Repository, depth: int) -> Repository:
        if row.repository_type == "group":
            if depth > 16:
                raise RuntimeError(f"group nesting too deep at {row.name!r}; a cycle slipped past validation")
            links = (models.GroupMember.select(models.GroupMember, models.Repository)
                     .join(models.Repository, on=models.GroupMember.member)
                     .where(models.GroupMember.group == row.id)
                     .order_by(models.GroupMember.position))
            members = [self._build(link.member, depth + 1) for link in links]
            return GroupRepository(row.name, row.public, members, row.upload_to)
        return _STORED_KINDS[row.repository_type](row, self.blobs, self.instance)
