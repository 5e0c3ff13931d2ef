"""A repository seen through its policy (the package firewall): pages without the files it blocks, a refusal
for a blocked file's URL or upload, and ETags that name the policy, the advisories and the moment the next
young file ages in, so that no page outlives a decision.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from datetime import datetime, timedelta

from pypilite import models
from pypilite.audit import Actor
from pypilite.database import database, sql
from pypilite.errors import BadRequest, UserError
from pypilite.firewall import Firewall
from pypilite.models import earliest, utcnow
from pypilite.policies import Decision, Facts, Policy
from pypilite.repositories.base import (
    BlobRef,
    DistFile,
    PageTag,
    ProjectIndex,
    ProjectPage,
    Repository,
    UploadOutcome,
    UploadTarget,
    VerifiedUpload,
)

# Core metadata files read for their licence per page build, newest first: what an installer looks at.
LEARN_PER_PAGE = 20
FILE = models.File._meta.table_name
PROJECT = models.Project._meta.table_name
_OLDEST_YOUNG = (f'SELECT MIN(f.upload_time) FROM "{FILE}" f JOIN "{PROJECT}" p ON p.id = f.project_id '
                 "WHERE p.name = ? AND p.repository_id IN ({}) AND f.upload_time > ?")


class PolicedRepository(UploadTarget):
    def __init__(self, inner: Repository, policy: Policy, firewall: Firewall, generation: str) -> None:
        super().__init__(inner.id, inner.name, inner.public)
        self.generation = generation  # the advisories' state as the repository's lookup read it
        self.inner = inner
        self.repository_type = inner.repository_type
        self.policy = policy
        self.firewall = firewall
        self.enforce = policy.mode == "enforce"
        # One moment per request (a repository object lives for one): the page's ETag and its files agree.
        self.now = utcnow()

    def underlying(self) -> Repository:
        return self.inner.underlying()

    def project_index(self) -> ProjectIndex:
        return self.inner.project_index()

    def index_etag(self) -> str | None:
        return self.inner.index_etag()

    def index_serial(self) -> int | None:
        return self.inner.index_serial()

    def leaves(self) -> list[Repository]:
        return self.inner.leaves()

    def has_project(self, name: str) -> bool:
        return self.inner.has_project(name)

    def project_status(self, name: str) -> str | None:
        return self.inner.project_status(name)

    def source(self, member: str, project: str) -> Repository | None:
        found = self.inner.source(member, project)
        return self if found is self.inner else found

    def page_tag(self, name: str) -> PageTag | None:
        tag = self.inner.page_tag(name)
        if tag is None or tag.etag is None:
            return tag
        etag, ages_in = self._etag(tag.etag, name)
        return PageTag(etag, earliest(tag.until, ages_in), tag.serial)

    def project_page(self, name: str) -> ProjectPage | None:
        page = self.inner.project_page(name)
        if page is not None and self.policy.licensed:
            self._learn_licenses(page)
        return self._filtered(page, name)

    def _learn_licenses(self, page: ProjectPage) -> None:
        """Read the core metadata of the newest files whose licence is unknown (a proxy fetches it, once), so
        that installers resolve around a refused licence instead of meeting a 403; a few per page build."""
        unknown = [dist for dist in reversed(page.files) if dist.metadata_sha256 is not None
                   and self.firewall.license(dist.metadata_sha256, dist.info_sha256) is None]
        learned = False
        for dist in unknown[:LEARN_PER_PAGE]:
            try:
                self.inner.open_metadata(dist.filename)
            except UserError:
                continue  # the upstream failed: the download decides, after trying again
            learned |= self.firewall.license(dist.metadata_sha256) is not None
        if learned and self.enforce:
            self.firewall.withdrawn([leaf.id for leaf in self.inner.leaves()], page.name)

    def cached_page(self, name: str) -> ProjectPage | None:
        return self._filtered(self.inner.cached_page(name), name)

    def decisions(self, name: str, cached: bool = True) -> list[tuple[Repository, DistFile, Decision]]:
        page = self.inner.cached_page(name) if cached else self.inner.project_page(name)
        own = [(self.underlying(), dist, decision) for dist, decision in self._decided(page, final=False)]
        return own + self.inner.decisions(name, cached)

    def _decided(self, page: ProjectPage | None, final: bool) -> list[tuple[DistFile, Decision]]:
        if page is None:
            return []
        found = []
        known = self.firewall.advisories(self.policy, page.name)
        for dist in page.files:
            decision = self.firewall.decide(self.policy, self._facts(page.name, dist), self.now, known, final)
            if decision is not None:
                found.append((dist, decision))
        return found

    def _facts(self, project: str, dist: DistFile) -> Facts:
        return Facts(project, dist.version, dist.filename, dist.upload_time, dist.repository in self._upstreams,
                     lambda: self.firewall.license(dist.metadata_sha256, dist.info_sha256))

    @functools.cached_property
    def _upstreams(self) -> dict[str, int]:
        """The proxies among the repositories whose tables the pages read, by name: their ids."""
        return {leaf.name: leaf.id for leaf in self.inner.leaves() if leaf.repository_type == "proxy"}

    def _filtered(self, page: ProjectPage | None, name: str) -> ProjectPage | None:
        if page is None:
            return None
        blocked = self._decided(page, final=False)
        self.firewall.record(self.id, self.name, self.policy, "page", [(d.filename, why) for d, why in blocked])
        withheld = {dist.filename for dist, _why in blocked} if self.enforce else set()
        return dataclasses.replace(page, files=tuple(f for f in page.files if f.filename not in withheld),
                                   etag=self._etag(page.etag, name)[0])

    def _etag(self, etag: str, name: str) -> tuple[str, datetime | None]:
        """The page's ETag under this policy, and when it changes with nothing else changing (a young file
        ages in). The young files are named by the upload time of the oldest of them: time only removes them."""
        parts = [etag, self.policy.key]
        if self.policy.uses_advisories:
            parts.append(self.generation)
        ages_in = None
        age = self.policy.age
        if age is not None:
            oldest_young = self._oldest_young(name, etag, age)
            parts.append(oldest_young.isoformat() if oldest_young is not None else "")
            ages_in = oldest_young + age if oldest_young is not None else None
        return hashlib.blake2b("|".join(parts).encode(), digest_size=16).hexdigest(), ages_in

    def _oldest_young(self, name: str, etag: str, age: timedelta) -> datetime | None:
        """The upload time of the project's oldest file still too young, in the proxies' tables the page reads.
        Kept per process under those tables' ETag: it holds until that file ages in."""
        ids = list(self._upstreams.values())
        if not ids:
            return None
        key = (self.id, name, etag, age)
        kept = self.firewall.young.get(key)
        if kept is not None and (kept[0] is None or self.now < kept[0] + age):
            return kept[0]
        row = database.execute_sql(sql(_OLDEST_YOUNG.format(", ".join("?" for _ in ids))),
                                   (name, *ids, models.File.upload_time.db_value(self.now - age))).fetchone()
        oldest = models.File.upload_time.python_value(row[0]) if row and row[0] is not None else None
        self.firewall.young.put(key, (oldest,))
        return oldest

    def refusal(self, dist: DistFile, project: str, metadata: bool = False) -> str | None:
        """Why the file may not be handed out; a licence not known yet is learned from the core metadata
        first (a proxy fetches it), and only the file itself waits for it."""
        facts = self._facts(project, dist)
        known = self.firewall.advisories(self.policy, project)
        decision = self.firewall.decide(self.policy, facts, self.now, known, final=False)
        if decision is None and not metadata and self.policy.licensed and facts.license() is None:
            if dist.metadata_sha256 is not None:
                self.inner.open_metadata(dist.filename)
            decision = self.firewall.decide(self.policy, facts, self.now, known, final=True)
            if decision is not None and facts.license() is not None and self.enforce:
                self.firewall.withdrawn([leaf.id for leaf in self.inner.leaves()], project)
        if decision is None:
            return None
        self.firewall.record(self.id, self.name, self.policy, "file", [(dist.filename, decision)])
        return f"{decision.reason}; blocked by the policy of repository {self.name!r}" if self.enforce else None

    def dist_file(self, filename: str) -> DistFile | None:
        return self.inner.dist_file(filename)

    def open_file(self, filename: str) -> BlobRef | None:
        return self.inner.open_file(filename)

    def open_metadata(self, filename: str) -> BlobRef | None:
        return self.inner.open_metadata(filename)

    def open_provenance(self, filename: str) -> bytes | None:
        return self.inner.open_provenance(filename)

    def stored_blob(self, filename: str, metadata: bool = False) -> BlobRef | None:
        return self.inner.stored_blob(filename, metadata)

    def upload_target(self) -> UploadTarget:
        target = self.inner.upload_target()
        return self if target is self.inner else Through(self, target)

    def upload(self, dist: VerifiedUpload, actor: Actor) -> UploadOutcome:
        """An upload the policy's deny list or licence rules refuse is not stored; one they accept goes on to
        the target (a group's upload_to, which applies its own policy too)."""
        target = self.inner.upload_target()
        expression = self.firewall.license_of(dist.metadata.raw)
        facts = Facts(dist.info.project, str(dist.info.version), dist.filename, None, False, lambda: expression)
        decision = self.firewall.decide(self.policy, facts, self.now, None, final=True)
        if decision is not None:
            self.firewall.record(self.id, self.name, self.policy, "upload", [(dist.filename, decision)])
            if self.enforce:
                raise BadRequest(f"{decision.reason}; refused by the policy of repository {self.name!r}")
        return target.upload(dist, actor)


class Through(PolicedRepository):
    """Where an upload addressed to a policed group lands: its upload_to repository (whose id, name and grants
    the caller checks), once the group's own policy accepts the file."""

    def __init__(self, group: PolicedRepository, target: UploadTarget) -> None:
        super().__init__(target, group.policy, group.firewall, group.generation)
        self.group = group

    def upload(self, dist: VerifiedUpload, actor: Actor) -> UploadOutcome:
        return self.group.upload(dist, actor)
