"""Proxy repositories: an upstream index, cached so installs keep working when it is slow or down.

Pages are fetched into the same tables hosted repositories use (so they render through the same code) and
count as fresh for `cache_ttl`; after that they are revalidated with a conditional GET. When the upstream
fails, the cached page is served and marked stale, at once while the upstream's breaker is open
(breakers.py); an offline proxy serves its cache alone. A file the upstream gives no sha256 for is not offered at
all, since nothing could vouch for its bytes; the files themselves are proxy_files.py's.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from datetime import datetime, timedelta
from pathlib import Path

from pypilite import markers, models, serials
from pypilite.breakers import Breaker, Refused
from pypilite.database import database, first, sql, write_transaction
from pypilite.dists import WHEEL, InvalidDistribution, parse_filename
from pypilite.errors import BadRequest, Conflict, NotFound, UserError
from pypilite.locks import LockTimeout, named_lock
from pypilite.metrics import Metrics
from pypilite.models import File, Project, UpstreamPage, utcnow
from pypilite.repositories.base import BlobRef, PageTag, ProjectPage
from pypilite.repositories.hosted import HostedRepository
from pypilite.repositories.proxy_files import ProxyFiles
from pypilite.repositories.stored import PROJECT, StoredRepository
from pypilite.storage import BlobStore
from pypilite.upstream import NOT_FOUND, NOT_MODIFIED, FetchedPage, Upstream, UpstreamError, UpstreamFile

log = logging.getLogger(__name__)

UPSTREAM_PAGE = UpstreamPage._meta.table_name
# An upstream "no such project" is remembered this long at most (or cache_ttl, if shorter).
NOT_FOUND_TTL = timedelta(seconds=60)
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
# The columns of a new file row, in the order _insert_files gives them: every field but the id.
_FILE_FIELDS = [field for field in File._meta.sorted_fields if field is not File.id]


class ProxyRepository(StoredRepository):
    repository_type = "proxy"

    def __init__(self, row: models.Repository, blobs: BlobStore, etag_key: bytes, upstream: Upstream,
                 locks: Path, metrics: Metrics, breaker: Breaker) -> None:
        super().__init__(row, blobs, etag_key)
        self.upstream = upstream
        self.breaker = breaker
        self.offline = row.offline
        self.locks = locks
        self.metrics = metrics
        self.ttl = timedelta(seconds=row.cache_ttl)
        # Waiting for another worker's fetch or download beyond this would outlast the client's patience.
        self.lock_wait = 3.0 * upstream.timeout
        self.files = ProxyFiles(row.id, row.name, blobs, upstream, locks, self.lock_wait, metrics, breaker,
                                self.offline)

    def upload_target(self) -> HostedRepository:
        raise BadRequest(f"repository {self.name!r} is a proxy of an upstream index; upload to a hosted repository")

    def project_page(self, name: str) -> ProjectPage | None:
        state = self._state(name)
        if state is not None and self._fresh(state.fetched, state.not_found):
            self.metrics.proxy("page", "hit")
            return self._cached(name, state)
        if self.offline:
            self.metrics.proxy("page", "stale")
            return self._offline(name, state)
        result = "hit"
        try:
            refused = self.breaker.refusal()
            if refused is not None:
                raise refused
            with named_lock(self.locks, f"page/{self.row.id}/{name}").acquire(self.lock_wait):
                state = self._state(name)  # another worker may have fetched it while this one waited
                if state is None or not self._fresh(state.fetched, state.not_found):
                    result = "miss"
                    refused = self.breaker.opened()  # by the fetch this one waited for
                    if refused is not None:
                        raise refused
                    state = self._fetch(name, state)
        except (UpstreamError, LockTimeout) as exc:
            page = self._stale(name, state, exc)
            self.metrics.proxy("page", "stale")
            return page
        self.metrics.proxy("page", result)
        return self._cached(name, state)

    def cached_page(self, name: str) -> ProjectPage | None:
        return super().project_page(name)

    def refresh(self, name: str) -> ProjectPage | None:
        """Fetch the project's page from upstream now, whatever its age or the upstream's breaker."""
        if self.offline:
            raise Conflict(f"repository {self.name!r} is offline: it serves its cache alone and asks no upstream")
        try:
            with named_lock(self.locks, f"page/{self.row.id}/{name}").acquire(self.lock_wait):
                state = self._fetch(name, self._state(name), conditional=False)
        except (UpstreamError, LockTimeout) as exc:
            raise UserError(504 if getattr(exc, "timeout", True) else 502, str(exc)) from None
        return self._cached(name, state)

    def forget(self, name: str) -> None:
        """Drop the cached page and file records of one project (their blobs stay in the store)."""
        with write_transaction():
            UpstreamPage.delete().where((UpstreamPage.repository == self.row.id)
                                        & (UpstreamPage.name == name)).execute()
            project = Project.get_or_none((Project.repository == self.row.id) & (Project.name == name))
            if project is None:
                raise NotFound(f"project {name!r} is not cached in repository {self.name!r}")
            project.delete_instance(recursive=True)
            serials.names_changed(self.row.id)

    def page_tag(self, name: str) -> PageTag | None:
        """Known without a fetch only while the cached answer (a page, or the upstream's 404) is fresh."""
        row = database.execute_sql(sql(
            f'SELECT u.fetched, u.not_found, p.id, p.serial FROM "{UPSTREAM_PAGE}" u LEFT JOIN "{PROJECT}" p '
            "ON p.repository_id = u.repository_id AND p.name = u.name WHERE u.repository_id = ? AND u.name = ?"),
            (self.id, name)).fetchone()
        if row is None:
            return None
        fetched, not_found = UpstreamPage.fetched.python_value(row[0]), bool(row[1])
        if not self._fresh(fetched, not_found):
            return None
        until = fetched + self._ttl(not_found)
        if not_found:
            return PageTag(None, until)
        return PageTag(self._page_etag(row[2], row[3]), until, row[3]) if row[2] is not None else None

    def _state(self, name: str) -> UpstreamPage | None:
        return first(UpstreamPage.raw(sql(f'SELECT * FROM "{UPSTREAM_PAGE}" WHERE repository_id = ? AND name = ?'),
                                      self.id, name))

    def _ttl(self, not_found: bool) -> timedelta:
        return min(self.ttl, NOT_FOUND_TTL) if not_found else self.ttl

    def _fresh(self, fetched: datetime, not_found: bool) -> bool:
        return utcnow() - fetched < self._ttl(not_found)

    def _cached(self, name: str, state: UpstreamPage) -> ProjectPage | None:
        return None if state.not_found else super().project_page(name)

    def _stale(self, name: str, state: UpstreamPage | None, exc: Exception) -> ProjectPage | None:
        page = super().project_page(name) if state is not None and not state.not_found else None
        if page is None or state is None:
            timeout = isinstance(exc, LockTimeout) or getattr(exc, "timeout", False)
            raise UserError(504 if timeout else 502, f"{exc}; and {name!r} is not cached")
        reason = f"{exc}; serving the page fetched at {state.fetched:%Y-%m-%dT%H:%M:%SZ}"
        if not isinstance(exc, Refused):
            log.warning("%s: %s: %s", self.name, name, reason)
        return dataclasses.replace(page, stale=reason)

    def _offline(self, name: str, state: UpstreamPage | None) -> ProjectPage | None:
        page = super().project_page(name) if state is not None and not state.not_found else None
        if page is None or state is None:
            raise NotFound(f"repository {self.name!r} is offline (it serves its cache alone) and has not cached "
                           f"{name!r}")
        return dataclasses.replace(page, stale=f"repository {self.name!r} is offline; serving the page fetched "
                                                f"at {state.fetched:%Y-%m-%dT%H:%M:%SZ}")

    def _fetch(self, name: str, state: UpstreamPage | None, conditional: bool = True) -> UpstreamPage:
        """_refetch, its outcome told to the upstream's breaker."""
        try:
            saved = self._refetch(name, state, conditional)
        except UpstreamError as exc:
            self.metrics.upstream_error("page")
            self.breaker.failed(exc)
            raise
        self.breaker.succeeded()
        return saved

    def _refetch(self, name: str, state: UpstreamPage | None, conditional: bool = True) -> UpstreamPage:
        validators = {}
        if conditional and state is not None and not state.not_found:
            validators = {"etag": state.etag, "last_modified": state.last_modified}
        fetched = self.upstream.fetch_page(name, **validators)
        if fetched is NOT_MODIFIED and not validators:
            raise UpstreamError(f"upstream answered 304 Not Modified to an unconditional request for {name!r}")
        with write_transaction():
            if isinstance(fetched, FetchedPage):
                self._store(name, fetched)
                self._save_state(name, etag=fetched.etag, last_modified=fetched.last_modified)
            elif fetched is NOT_FOUND:
                self._save_state(name, not_found=True)
            else:  # NOT_MODIFIED, to this state's validators
                assert state is not None
                UpstreamPage.update(fetched=utcnow()).where(UpstreamPage.id == state.id).execute()
            saved = self._state(name)
        assert saved is not None
        return saved

    def _save_state(self, name: str, etag: str = "", last_modified: str = "", not_found: bool = False) -> None:
        (UpstreamPage.insert(repository=self.row.id, name=name, fetched=utcnow(), etag=etag,
                             last_modified=last_modified, not_found=not_found)
         .on_conflict(conflict_target=(UpstreamPage.repository, UpstreamPage.name),
                      update={UpstreamPage.fetched: utcnow(), UpstreamPage.etag: etag,
                              UpstreamPage.last_modified: last_modified, UpstreamPage.not_found: not_found})
         .execute())

    def _store(self, name: str, fetched: FetchedPage) -> None:
        """Make the project's file rows say what the upstream page says; bump its serial only on a change."""
        wanted = {}
        for upstream_file in fetched.files:
            values = _file_values(upstream_file, name)
            if values is not None:
                wanted[upstream_file.filename] = values
        said = fetched.markers
        project_values = {"status": said.status, "status_reason": said.status_reason,
                          "tracks": markers.lines(said.tracks),
                          "alternate_locations": markers.lines(said.alternate_locations)}
        project = Project.get_or_none((Project.repository == self.row.id) & (Project.name == name))
        existing: dict[str, File] = {}
        changed = False
        if project is None:
            project = Project.create(repository=self.row.id, name=name, display_name=name, **project_values)
            serials.names_changed(self.row.id)
        else:
            existing = {row.filename: row for row in File.select().where(File.project == project.id)}
            if any(getattr(project, key) != value for key, value in project_values.items()):
                Project.update(**project_values).where(Project.id == project.id).execute()
                changed = True
        new = [dict(values, project=project.id) for filename, values in wanted.items() if filename not in existing]
        _insert_files(new)
        changed |= bool(new)
        for filename, values in wanted.items():
            row = existing.get(filename)
            if row is not None and _differs(row, values):
                other_bytes = (row.sha256, row.metadata_sha256) != (values["sha256"], values["metadata_sha256"])
                # What the UI shows was read from the old bytes: it goes with them, and stays otherwise.
                changes = values if other_bytes else {k: v for k, v in values.items() if k != "info_sha256"}
                File.update(**changes).where(File.id == row.id).execute()
                changed = True
        gone = [row.id for filename, row in existing.items() if filename not in wanted]
        if gone:
            File.delete().where(File.id.in_(gone)).execute()
            changed = True
        if changed:
            serials.projects_changed(project.id)

    def stored_blob(self, filename: str, metadata: bool = False) -> BlobRef | None:
        ref = super().stored_blob(filename, metadata)
        return ref if ref is not None and self.files.fetched(ref.sha256) else None

    def open_file(self, filename: str) -> BlobRef | None:
        row = self._file_row(filename)
        return self.files.open_file(row) if row is not None else None

    def _core_metadata(self, row: File) -> str | None:
        """The upstream's PEP 658 file; for a wheel whose upstream offers none, its METADATA, once the proxy
        has fetched the wheel and taken it out (ProxyFiles._describe), so later resolves need not download the
        wheel."""
        if row.metadata_sha256 is None and row.packagetype == WHEEL:
            return row.info_sha256
        return row.metadata_sha256

    def open_metadata(self, filename: str) -> BlobRef | None:
        row = self._file_row(filename)
        if row is None or self._core_metadata(row) is None:
            return None
        local = self.stored_blob(filename, metadata=True)
        if local is not None or row.metadata_sha256 is None:  # one taken out of the wheel is there or nowhere
            return local
        return self.files.open_metadata(row)

    def open_provenance(self, filename: str) -> bytes | None:
        row = self._file_row(filename)
        return self.files.open_provenance(row) if row is not None and row.provenance_url else None


def _differs(row: File, values: dict[str, object]) -> bool:
    """Whether the upstream changed anything about a file; a size learned on download, or the metadata the UI
    shows, is not a change."""
    return any(getattr(row, key) != value for key, value in values.items()
               if key != "info_sha256" and not (key == "size" and value is None))


def _insert_files(rows: list[dict[str, object]]) -> None:
    """New file rows, one statement run once per row (a listing can have thousands; see bench/README.md):
    peewee builds it from the first row only. Through execute_sql, so a driver's error (a full disk) is peewee's."""
    if not rows:
        return
    statement, _ = File.insert_many([tuple(rows[0][field.name] for field in _FILE_FIELDS)], fields=_FILE_FIELDS).sql()
    for row in rows:
        database.execute_sql(statement, [field.db_value(row[field.name]) for field in _FILE_FIELDS])


def _file_values(upstream_file: UpstreamFile, project: str) -> dict[str, object] | None:
    """The File columns for one upstream file, or None for a file pypilite will not offer."""
    if not _SHA256.match(upstream_file.sha256 or ""):
        log.info("upstream file %r has no sha256; not offered", upstream_file.filename[:300])
        return None
    try:
        info = parse_filename(upstream_file.filename)
    except InvalidDistribution:
        return None  # eggs, installers, names packaging cannot read or with characters no distribution has
    if info.project != project:
        return None
    metadata_sha256 = upstream_file.metadata_sha256 if _SHA256.match(upstream_file.metadata_sha256 or "") else None
    return {
        "filename": upstream_file.filename,
        "version": str(info.version),
        "packagetype": info.packagetype,
        "sha256": upstream_file.sha256,
        "size": upstream_file.size,
        "upload_time": upstream_file.upload_time,
        "requires_python": upstream_file.requires_python,
        "yanked": upstream_file.yanked,
        "yanked_reason": upstream_file.yanked_reason,
        "metadata_sha256": metadata_sha256,
        "origin_url": upstream_file.url,
        "uploader": "",
        "info_sha256": None,
        "provenance_url": upstream_file.provenance_url,
    }
