"""Group repositories: several members behind one URL, safe from dependency confusion.

A project any hosted member holds is served from hosted members only, unless the group passes it through.
The guard counts members the reader cannot see; such a reader is answered, after the same members were
asked, as for a name nobody holds. Same filename in two members: the earlier member wins.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable, Collection
from typing import TypeVar

from pypilite import markers
from pypilite.errors import BadRequest, NotFound, UserError
from pypilite.markers import Markers
from pypilite.models import earliest
from pypilite.policies import Decision
from pypilite.repositories.base import (
    BlobRef,
    DistFile,
    Outline,
    PageTag,
    ProjectIndex,
    ProjectPage,
    Repository,
    UploadTarget,
    outline,
    sort_files,
)

_T = TypeVar("_T")


class GroupRepository(Repository):
    repository_type = "group"

    def __init__(self, id: int, name: str, public: bool, all_leaves: list[Repository], upload_to: str,
                 pass_through: frozenset[str] = frozenset(), visible: Callable[[Repository], bool] | None = None
                 ) -> None:
        super().__init__(id, name, public)
        # What its members reach (groups.flatten), readable or not.
        self.all_leaves = all_leaves
        self.upload_to = upload_to
        self.pass_through = pass_through
        self._visible = visible or (lambda _leaf: True)

    def leaves(self) -> list[Repository]:
        """The members this group's reader may read (worked out once: a group lives for one request)."""
        return self._readable

    @functools.cached_property
    def _readable(self) -> list[Repository]:
        return [leaf for leaf in self.all_leaves if self._visible(leaf)]

    def index_etag(self) -> str | None:
        etags = [leaf.index_etag() for leaf in self.leaves()]
        known = [etag for etag in etags if etag is not None]
        return _combine(self.name, known) if len(known) == len(etags) else None

    def project_index(self) -> ProjectIndex:
        indexes = [leaf.project_index() for leaf in self.leaves()]
        names = sorted({name for index in indexes for name in index.names})
        return ProjectIndex(names=tuple(names), etag=_combine(self.name, [i.etag for i in indexes]))

    def _split(self) -> tuple[list[Repository], list[Repository]]:
        """The readable members in order: the hosted ones, and the others."""
        leaves = self.leaves()
        return ([leaf for leaf in leaves if leaf.repository_type == "hosted"],
                [leaf for leaf in leaves if leaf.repository_type != "hosted"])

    def page_tag(self, name: str) -> PageTag | None:
        """The members' own page tags, chosen by the same rules as project_page, so a repeated group page
        costs one indexed read per member asked and no merging."""
        hosted, others = self._split()
        if name in self.pass_through:
            tags = _tags(hosted + others, name)
        else:
            tags = _tags(hosted, name)
            if tags is not None and not _held(tags):
                # Asked as for a name nobody holds, then hidden if a member the reader cannot see holds it.
                tags = _tags(others, name)
                if tags is not None and self._held_privately(name):
                    tags = [PageTag(None, tag.until) for tag in tags]
        if tags is None:
            return None
        until = earliest(*(tag.until for tag in tags))
        etags = _held(tags)
        return PageTag(self._page_etag(name, etags) if etags else None, until)

    def _page_etag(self, name: str, member_etags: list[str]) -> str:
        return _combine(f"{self.name}:{name in self.pass_through}", member_etags)

    def project_page(self, name: str) -> ProjectPage | None:
        return self._merged(name, cached=False)

    def cached_page(self, name: str) -> ProjectPage | None:
        return self._merged(name, cached=True)

    def outlines(self, names: Collection[str]) -> dict[str, Outline]:
        """Each member's outlines read at once, the members serving each name chosen by the same guard as
        cached_page; a name several members serve is outlined from its merged page."""
        held = {leaf.name: leaf.outlines(names) for leaf in self.all_leaves
                if leaf in self._readable or leaf.repository_type == "hosted"}
        privately = [held[leaf.name] for leaf in self._private_hosted]
        found = {}

        def holding(name: str, members: list[Repository], _merging: bool) -> list[tuple[Repository, Outline]]:
            return [(m, held[m.name][name]) for m in members if name in held[m.name]]

        for name in names:
            serving = self._serving(name, functools.partial(holding, name),
                                    held_privately=any(name in outlines for outlines in privately))
            if len(serving) == 1:
                found[name] = serving[0][1]
            elif serving:
                pages = [(m, page) for m, _outline in serving if (page := m.cached_page(name)) is not None]
                found[name] = outline(self._merge(name, pages))
        return found

    def _merged(self, name: str, cached: bool) -> ProjectPage | None:
        held = self._serving(name, lambda members, merging: _pages(members, name, cached, tolerate_failures=merging))
        return self._merge(name, held) if held else None

    def _merge(self, name: str, held: list[tuple[Repository, ProjectPage]]) -> ProjectPage:
        """One page from the pages of the members that serve `name`, in member order."""
        passed_through = name in self.pass_through
        pages = [page for _member, page in held]
        said = _merged_markers(pages)
        files: dict[str, DistFile] = {}
        for page in pages if said.status != markers.QUARANTINED else ():
            for dist in page.files:
                files.setdefault(dist.filename, dist)
        if passed_through:  # PEP 708: the members' pages are one project, merged on purpose
            own = tuple(f"/{member.name}/simple/{name}/" for member, _page in held)
            said = dataclasses.replace(said, alternate_locations=_union(own, said.alternate_locations))
        return ProjectPage(name=name, files=sort_files(list(files.values())),
                           etag=self._page_etag(name, [p.etag for p in pages]),
                           stale="; ".join(page.stale for page in pages if page.stale), markers=said)

    def _serving(self, name: str, find: Callable[[list[Repository], bool], list[_T]],
                 held_privately: bool | None = None) -> list[_T]:
        """What `find(members, merging)` finds in the members that serve project `name` to this reader, in
        member order: every member for a pass-through name; else the hosted ones if any holds it; else the
        others, unless a member the reader cannot see holds it (`held_privately`, if known already). Pages,
        listings and file URLs all obey this guard."""
        hosted, others = self._split()
        if name in self.pass_through:
            return find(hosted + others, True)
        found = find(hosted, False)
        if not found:
            found = find(others, False)
            if held_privately if held_privately is not None else self._held_privately(name):
                return []
        return found

    def source(self, member: str, project: str) -> Repository | None:
        """The member whose files of `project` this group's pages list, if `member` is one of them (a file
        that an earlier member's namesake shadows stays served: the reader may read both, the URL names its bytes)."""
        held = self._serving(project, lambda members, _merging: [
            (m, status) for m in members if (status := m.project_status(project)) is not None])
        if any(status == markers.QUARANTINED for _member, status in held):
            return None  # as the merged page: a quarantine in any part offers no files
        return next((leaf for leaf, _status in held if leaf.name == member), None)

    def _held_privately(self, name: str) -> bool:
        return any(leaf.has_project(name) for leaf in self._private_hosted)

    @property
    def _private_hosted(self) -> list[Repository]:
        """The hosted members the reader cannot see: the guard counts them all the same."""
        return [leaf for leaf in self.all_leaves if leaf.repository_type == "hosted" and leaf not in self._readable]

    def decisions(self, name: str, cached: bool = True) -> list[tuple[Repository, DistFile, Decision]]:
        return [found for leaf in self.leaves() for found in leaf.decisions(name, cached)]

    def dist_file(self, filename: str) -> DistFile | None:
        return next((dist for dist in (leaf.dist_file(filename) for leaf in self.leaves()) if dist), None)

    def open_file(self, filename: str) -> BlobRef | None:
        return next((ref for ref in (leaf.open_file(filename) for leaf in self.leaves()) if ref), None)

    def open_metadata(self, filename: str) -> BlobRef | None:
        return next((ref for ref in (leaf.open_metadata(filename) for leaf in self.leaves()) if ref), None)

    def stored_blob(self, filename: str, metadata: bool = False) -> BlobRef | None:
        """The stored blob of the member whose file dist_file describes, the first readable one holding it."""
        leaf = next((leaf for leaf in self.leaves() if leaf.dist_file(filename) is not None), None)
        return leaf.stored_blob(filename, metadata) if leaf is not None else None

    def upload_target(self) -> UploadTarget:
        target = next((m for m in self.all_leaves if m.name == self.upload_to), None)
        if target is None or target.repository_type != "hosted":
            raise BadRequest(f"group {self.name!r} has no hosted upload_to repository; upload to a hosted repository")
        return target.upload_target()


def _merged_markers(pages: list[ProjectPage]) -> Markers:
    """A merged page's status is its most severe part's (quarantined over archived over deprecated over
    active), with that part's reason: a group is one index to its clients, and a name one member quarantines
    is unsafe whichever member's files would be installed. The PEP 708 URLs are every part's."""
    worst = max(pages, key=lambda page: markers.SEVERITY[page.markers.status]).markers
    return Markers(worst.status, worst.status_reason,
                   _union(*(page.markers.tracks for page in pages)),
                   _union(*(page.markers.alternate_locations for page in pages)))


def _union(*lists: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(url for urls in lists for url in urls))[:markers.MAX_URLS]


def _pages(members: list[Repository], name: str, cached: bool,
           tolerate_failures: bool = False) -> list[tuple[Repository, ProjectPage]]:
    """The members holding a page for a project, with it, in member order. Merging a pass-through project, one
    member's upstream failing must not hide what the others have: its failure becomes a stale note instead."""
    pages, failures = [], []
    for member in members:
        try:
            page = member.cached_page(name) if cached else member.project_page(name)
        except NotFound:
            continue  # an offline proxy that has not cached the name: it is not there
        except UserError as exc:
            if not tolerate_failures or exc.status < 500:
                raise
            failures.append(exc)
            continue
        if page is not None:
            pages.append((member, page))
    if failures and not pages:
        raise failures[0]
    if failures:
        member, page = pages[0]
        pages[0] = (member, dataclasses.replace(page, stale="; ".join(f.message for f in failures)))
    return pages


def _tags(members: list[Repository], name: str) -> list[PageTag] | None:
    """The members' page tags, in member order; None when one cannot tell."""
    tags = [member.page_tag(name) for member in members]
    known = [tag for tag in tags if tag is not None]
    return known if len(known) == len(tags) else None


def _held(tags: list[PageTag]) -> list[str]:
    """The ETags of the members that hold the page."""
    return [tag.etag for tag in tags if tag.etag is not None]


def _combine(name: str, etags: list[str]) -> str:
    return hashlib.blake2b(f"{name}|{'|'.join(etags)}".encode(), digest_size=12).hexdigest()
