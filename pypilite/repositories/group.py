"""Group repositories: several members behind one URL, safe from dependency confusion.

A project that any hosted member holds is served from hosted members only, so a public upstream can never
shadow (or outbid with a higher version) a name the team publishes itself. Same filename in two members:
the earlier member wins.
"""

from __future__ import annotations

import hashlib

from pypilite.errors import BadRequest
from pypilite.repositories.base import (
    BlobRef,
    DistFile,
    ProjectIndex,
    ProjectPage,
    Repository,
    sort_files,
)
from pypilite.repositories.hosted import HostedRepository


class GroupRepository(Repository):
    repository_type = "group"

    def __init__(self, id: int, name: str, public: bool, members: list[Repository], upload_to: str) -> None:
        super().__init__(id, name, public)
        self.members = members
        self.upload_to = upload_to

    def leaves(self) -> list[Repository]:
        """Members in order with nested groups flattened, each repository once."""
        seen: dict[str, Repository] = {}
        for member in self.members:
            for leaf in member.leaves() if isinstance(member, GroupRepository) else [member]:
                seen.setdefault(leaf.name, leaf)
        return list(seen.values())

    def project_index(self) -> ProjectIndex:
        indexes = [leaf.project_index() for leaf in self.leaves()]
        names = sorted({name for index in indexes for name in index.names})
        return ProjectIndex(names=tuple(names), etag=_combine(self.name, [i.etag for i in indexes]))

    def project_page(self, name: str) -> ProjectPage | None:
        leaves = self.leaves()
        hosted = [leaf for leaf in leaves if isinstance(leaf, HostedRepository)]
        pages = [page for page in (leaf.project_page(name) for leaf in hosted) if page is not None]
        if not pages:
            others = [leaf for leaf in leaves if not isinstance(leaf, HostedRepository)]
            pages = [page for page in (leaf.project_page(name) for leaf in others) if page is not None]
        if not pages:
            return None
        files: dict[str, DistFile] = {}
        for page in pages:
            for dist in page.files:
                files.setdefault(dist.filename, dist)
        return ProjectPage(name=name, files=sort_files(list(files.values())),
                           etag=_combine(self.name, [p.etag for p in pages]))

    def dist_file(self, filename: str) -> DistFile | None:
        return next((dist for dist in (leaf.dist_file(filename) for leaf in self.leaves()) if dist), None)

    def open_file(self, filename: str) -> BlobRef | None:
        return next((ref for ref in (leaf.open_file(filename) for leaf in self.leaves()) if ref), None)

    def open_metadata(self, filename: str) -> BlobRef | None:
        return next((ref for ref in (leaf.open_metadata(filename) for leaf in self.leaves()) if ref), None)

    def upload_target(self) -> HostedRepository:
        target = next((m for m in self.leaves() if m.name == self.upload_to), None)
        if not isinstance(target, HostedRepository):
            raise BadRequest(f"group {self.name!r} has no hosted upload_to repository; upload to a hosted repository")
        return target


def _combine(name: str, etags: list[str]) -> str:
    return hashlib.blake2b(f"{name}|{'|'.join(etags)}".encode(), digest_size=12).hexdigest()
