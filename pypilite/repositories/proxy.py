"""Proxy repositories: an upstream index, cached so installs keep working when it is slow or down.

Pages are fetched into the same tables hosted repositories use (so they render through the same code) and
count as fresh for `cache_ttl`; after that they are revalidated with a conditional GET. When the upstream
fails, the cached page is served and marked stale. Files are fetched on first request, streamed to the
client while they are stored, and kept only if their sha256 is the one the upstream declared; a file the
upstream gives no sha256 for is not offered at all, since nothing could vouch for its bytes.

A proxy hands out only blobs it fetched from its own upstream and verified (models.FetchedBlob): an upstream
page may name the sha256 of any file, a private one stored for another repository included, and the same
bytes being in the store prove nothing about who may have them.
"""

from __future__ import annotations

import dataclasses
import hmac
import logging
import re
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

from pypilite import markers, models, serials
from pypilite.database import database, first, write_transaction
from pypilite.dists import MAX_METADATA_BYTES, WHEEL, InvalidDistribution, metadata_bytes, parse_filename
from pypilite.errors import BadRequest, InsufficientStorage, NotFound, UserError
from pypilite.locks import FileLock, LockTimeout
from pypilite.metrics import Metrics
from pypilite.models import FetchedBlob, File, Project, UpstreamPage, utcnow
from pypilite.repositories.base import BlobRef, PageTag, ProjectPage
from pypilite.repositories.hosted import HostedRepository
from pypilite.repositories.stored import PROJECT, StoredRepository
from pypilite.storage import BlobStore, BlobTooLarge, TempBlob
from pypilite.upstream import NOT_FOUND, NOT_MODIFIED, FetchedPage, Upstream, UpstreamError, UpstreamFile, redact

log = logging.getLogger(__name__)

UPSTREAM_PAGE = UpstreamPage._meta.table_name
# An upstream "no such project" is remembered this long at most (or cache_ttl, if shorter).
NOT_FOUND_TTL = timedelta(seconds=60)
# A file that ends within this many bytes is read and checked before the answer starts, so a mismatch is a 502;
# a longer one can only break off once its status is sent.
READ_AHEAD = 1024 * 1024
_SHA256 = re.compile(r"[0-9a-f]{64}\Z")
# A provenance is passed on, never stored: its signatures vouch for it, not pypilite. Real ones are a few KB.
MAX_PROVENANCE_BYTES = 1024 * 1024
# The columns of a new file row, in the order _insert_files gives them: every field but the id.
_FILE_FIELDS = [field for field in File._meta.sorted_fields if field is not File.id]


class ProxyRepository(StoredRepository):
    repository_type = "proxy"

    def __init__(self, row: models.Repository, blobs: BlobStore, etag_key: bytes, upstream: Upstream,
                 locks: Path, metrics: Metrics) -> None:
        super().__init__(row, blobs, etag_key)
        self.upstream = upstream
        self.locks = locks
        self.metrics = metrics
        self.ttl = timedelta(seconds=row.cache_ttl)
        # Waiting for another worker's fetch or download beyond this would outlast the client's patience.
        self.lock_wait = 3.0 * upstream.timeout

    def upload_target(self) -> HostedRepository:
        raise BadRequest(f"repository {self.name!r} is a proxy of an upstream index; upload to a hosted repository")

    def project_page(self, name: str) -> ProjectPage | None:
        state = self._state(name)
        if state is not None and self._fresh(state.fetched, state.not_found):
            self.metrics.proxy("page", "hit")
            return self._cached(name, state)
        result = "hit"
        try:
            with FileLock(self.locks, f"page/{self.row.id}/{name}").acquire(self.lock_wait):
                state = self._state(name)  # another worker may have fetched it while this one waited
                if state is None or not self._fresh(state.fetched, state.not_found):
                    result = "miss"
                    state = self._refetch(name, state)
        except (UpstreamError, LockTimeout) as exc:
            if isinstance(exc, UpstreamError):
                self.metrics.upstream_error("page")
            page = self._stale(name, state, exc)
            self.metrics.proxy("page", "stale")
            return page
        self.metrics.proxy("page", result)
        return self._cached(name, state)

    def cached_page(self, name: str) -> ProjectPage | None:
        return super().project_page(name)

    def refresh(self, name: str) -> ProjectPage | None:
        """Fetch the project's page from upstream now, whatever its age."""
        try:
            with FileLock(self.locks, f"page/{self.row.id}/{name}").acquire(self.lock_wait):
                state = self._refetch(name, self._state(name), conditional=False)
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
        row = database.execute_sql(
            f'SELECT u.fetched, u.not_found, p.id, p.serial FROM "{UPSTREAM_PAGE}" u LEFT JOIN "{PROJECT}" p '
            "ON p.repository_id = u.repository_id AND p.name = u.name WHERE u.repository_id = ? AND u.name = ?",
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
        return first(UpstreamPage.raw(f'SELECT * FROM "{UPSTREAM_PAGE}" WHERE repository_id = ? AND name = ?',
                                      self.id, name))

    def _ttl(self, not_found: bool) -> timedelta:
        return min(self.ttl, NOT_FOUND_TTL) if not_found else self.ttl

    def _fresh(self, fetched: datetime, not_found: bool) -> bool:
        return utcnow() - fetched < self._ttl(not_found)

    def _cached(self, name: str, state: UpstreamPage) -> ProjectPage | None:
        return None if state.not_found else super().project_page(name)

    def _stale(self, name: str, state: UpstreamPage | None, exc: Exception) -> ProjectPage | None:
        page = super().project_page(name) if state is not None and not state.not_found else None
        if page is None:
            timeout = isinstance(exc, LockTimeout) or getattr(exc, "timeout", False)
            raise UserError(504 if timeout else 502, f"{exc}; and {name!r} is not cached")
        reason = f"{exc}; serving the page fetched at {state.fetched:%Y-%m-%dT%H:%M:%SZ}"
        log.warning("%s: %s: %s", self.name, name, reason)
        return dataclasses.replace(page, stale=reason)

    def _refetch(self, name: str, state: UpstreamPage | None, conditional: bool = True) -> UpstreamPage:
        validators = {}
        if conditional and state is not None and not state.not_found:
            validators = {"etag": state.etag, "last_modified": state.last_modified}
        fetched = self.upstream.fetch_page(name, **validators)
        if fetched is NOT_MODIFIED and not validators:
            raise UpstreamError(f"upstream answered 304 Not Modified to an unconditional request for {name!r}")
        with write_transaction():
            if fetched is NOT_MODIFIED:
                UpstreamPage.update(fetched=utcnow()).where(UpstreamPage.id == state.id).execute()
            elif fetched is NOT_FOUND:
                self._save_state(name, not_found=True)
            else:
                self._store(name, fetched)
                self._save_state(name, etag=fetched.etag, last_modified=fetched.last_modified)
        return self._state(name)

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
        return ref if ref is not None and self._fetched(ref.sha256) else None

    def _fetched(self, sha256: str) -> bool:
        return FetchedBlob.select().where((FetchedBlob.repository == self.id)
                                          & (FetchedBlob.sha256 == sha256)).exists()

    def open_file(self, filename: str) -> BlobRef | None:
        row = self._file_row(filename)
        if row is None:
            return None
        local = self.stored_blob(filename)
        if local is not None:
            self.metrics.proxy("file", "hit")
            return local
        lock = self._lock_blob(row.sha256)
        local = self.stored_blob(filename)
        if local is not None:  # fetched by whoever held the lock before
            lock.release()
            self.metrics.proxy("file", "hit")
            return local
        self.metrics.proxy("file", "miss")
        try:
            blob = self.blobs.temp()
        except InsufficientStorage:
            lock.release()
            raise
        try:
            chunks, length = self.upstream.download(row.origin_url, row.size)
        except UpstreamError as exc:
            blob.discard()
            lock.release()
            self.metrics.upstream_error("file")
            raise UserError(504 if exc.timeout else 502, str(exc)) from None
        stream = _StoringStream(self, chunks, row, lock, blob)
        try:
            stream.read_ahead()
        except UpstreamError as exc:
            stream.close()
            self.metrics.upstream_error("file")
            raise UserError(504 if exc.timeout else 502, str(exc)) from None
        except BaseException:
            stream.close()
            raise
        return BlobRef(self.blobs.path(row.sha256), row.sha256, row.filename, stream=stream,
                       size=row.size if row.size is not None else length)

    def _core_metadata(self, row: File) -> str | None:
        """The upstream's PEP 658 file; for a wheel whose upstream offers none, its METADATA, once the proxy
        has fetched the wheel and taken it out (_describe), so later resolves need not download the wheel."""
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
        with self._lock_blob(row.metadata_sha256):
            if self.stored_blob(filename, metadata=True) is None:
                self._fetch_metadata(row)
        return self.stored_blob(filename, metadata=True)

    def open_provenance(self, filename: str) -> bytes | None:
        """The upstream's PEP 740 provenance of a file, fetched through the upstream's guarded session and
        passed on whole, never stored: clients check its signatures against the file's hash themselves."""
        row = self._file_row(filename)
        if row is None or not row.provenance_url:
            return None
        try:
            chunks, _length = self.upstream.download(row.provenance_url)
            body = bytearray()
            for chunk in chunks:
                body += chunk
                if len(body) > MAX_PROVENANCE_BYTES:
                    chunks.close()  # the generator's own `with` closes the upstream's answer
                    raise UpstreamError(f"upstream of repository {self.name!r} sent a provenance over "
                                        f"{MAX_PROVENANCE_BYTES // 1024} KB")
        except UpstreamError as exc:
            self.metrics.upstream_error("file")
            raise UserError(504 if exc.timeout else 502, str(exc)) from None
        return bytes(body)

    def _lock_blob(self, sha256: str) -> FileLock:
        try:
            return FileLock(self.locks, f"blob/{sha256}").acquire(self.lock_wait)
        except LockTimeout as exc:
            raise UserError(504, f"waited too long for another download of the same file: {exc}") from None

    def _mismatch(self, row: File, how: str, detail: str = "") -> UpstreamError:
        log.error("%s: %s from %s %s%s; not kept", self.name, row.filename, redact(row.origin_url), how, detail)
        return UpstreamError(f"{row.filename} from the upstream of repository {self.name!r} {how}; not kept")

    def _fetch_metadata(self, row: File) -> None:
        url = f"{row.origin_url}.metadata"
        name = f"{row.filename}.metadata"
        blob = self.blobs.temp(limit=MAX_METADATA_BYTES)
        try:
            chunks, _length = self.upstream.download(url)
            for chunk in chunks:
                blob.write(chunk)
            if not hmac.compare_digest(blob.sha256, row.metadata_sha256):
                log.error("%s: %s from %s has sha256 %s, not the declared %s; not kept",
                          self.name, name, redact(url), blob.sha256, row.metadata_sha256)
                raise UserError(502, f"{name} from the upstream of repository {self.name!r} does not match its "
                                     f"declared sha256; not kept")
            self.blobs.commit(blob)
            with write_transaction():
                self._record_fetched(blob.sha256)
                # The metadata the UI shows, unless the archive's own was taken out already.
                File.update(info_sha256=row.metadata_sha256).where(
                    (File.id == row.id) & (File.metadata_sha256 == row.metadata_sha256)
                    & File.info_sha256.is_null()).execute()
        except UpstreamError as exc:
            self.metrics.upstream_error("file")
            raise UserError(504 if exc.timeout else 502, str(exc)) from None
        except BlobTooLarge:
            raise UserError(502, f"{name} from the upstream of repository {self.name!r} is larger than "
                                 f"{MAX_METADATA_BYTES // (1024 * 1024)} MB") from None
        finally:
            blob.discard()

    def _record_fetched(self, sha256: str) -> None:
        FetchedBlob.insert(repository=self.id, sha256=sha256).on_conflict_ignore().execute()

    def _describe(self, row: File) -> None:
        """Record the metadata the UI shows of a file this proxy has just fetched: its .metadata file when the
        proxy fetched that, else what the archive carries. Runs after the client has every byte; a file
        whose metadata cannot be read shows none, which is logged."""
        if row.info_sha256 is not None:
            return
        try:
            if row.metadata_sha256 is not None and self._fetched(row.metadata_sha256):
                info = row.metadata_sha256
            else:
                raw = metadata_bytes(self.blobs.path(row.sha256), parse_filename(row.filename), row.filename)
                info = self.blobs.put_bytes(raw)
            offered = row.metadata_sha256 is None and row.packagetype == WHEEL  # see _core_metadata
            with write_transaction():
                if offered:  # taken out of a wheel this proxy verified: its to hand out, and the page changes
                    self._record_fetched(info)
                    learned = File.select(File.project).where((File.id == row.id) & File.info_sha256.is_null())
                    serials.projects_changed(learned)
                File.update(info_sha256=info).where((File.id == row.id) & (File.sha256 == row.sha256)
                                                    & File.info_sha256.is_null()).execute()
        except Exception as exc:  # the download is complete; what the UI shows must not turn it into an error
            log.warning("%s: no metadata shown for %s: %s", self.name, row.filename,
                        getattr(exc, "message", None) or str(exc) or type(exc).__name__)


class _StoringStream:
    """The upstream's bytes passed on while they are stored. The first READ_AHEAD bytes are read before the
    answer starts (read_ahead), so a small file is checked while its status can still say 502; past that, the
    last chunk is held back until the whole file hashes to the declared sha256, and a mismatch ends the
    response short, so the client's download fails. Nothing unverified is kept. close() (which the WSGI
    server always calls) releases the lock and the temp file whether or not the body was ever iterated, as
    for a HEAD request or a client that hung up."""

    def __init__(self, proxy: ProxyRepository, chunks: Iterator[bytes], row: File, lock: FileLock,
                 blob: TempBlob) -> None:
        self.proxy = proxy
        self.chunks = chunks
        self.row = row
        self.lock = lock
        self.blob = blob
        self._ahead: list[bytes] = []
        self._complete = False  # every byte arrived, matched and was stored
        self._body = self._pass_on()

    def __iter__(self) -> Iterator[bytes]:
        return self._body

    def read_ahead(self) -> None:
        """Read up to READ_AHEAD bytes; a file that ends within them is checked and stored (or refused) now."""
        for chunk in self.chunks:
            self._write(chunk)
            self._ahead.append(chunk)
            if self.blob.size >= READ_AHEAD:
                return
        self._finish()

    def _pass_on(self) -> Iterator[bytes]:
        try:
            yield from self._store_and_pass_on()
        finally:  # on the way out, whichever: not every caller of an iterator that raised calls close()
            self.blob.discard()
            self.lock.release()

    def _store_and_pass_on(self) -> Iterator[bytes]:
        ahead, self._ahead = self._ahead, []
        if self._complete:
            yield b"".join(ahead)
        else:
            held = ahead.pop() if ahead else b""
            if ahead:  # the answer starts now, not once the upstream sends more
                yield b"".join(ahead)
            try:
                for chunk in self.chunks:
                    self._write(chunk)
                    if held:
                        yield held
                    held = chunk
                with database.connection_context():  # the request's own connection is closed by now
                    self._finish()
            except UpstreamError:
                self.proxy.metrics.upstream_error("file")
                raise  # the response breaks off: the client's download fails, and nothing is kept
            yield held
        self.lock.release()
        # The client has every byte now: what the UI shows of the file is taken out of it after.
        with database.connection_context():
            self.proxy._describe(self.row)

    def _write(self, chunk: bytes) -> None:
        try:
            self.blob.write(chunk)
        except InsufficientStorage as exc:
            log.error("%s: %s not cached: %s", self.proxy.name, self.row.filename, exc.message)
            raise  # the response breaks off (or is a 507, before it starts): nothing is kept
        if self.row.size is not None and self.blob.size > self.row.size:
            raise self.proxy._mismatch(self.row, f"is longer than the {self.row.size} bytes its page declared")

    def _finish(self) -> None:
        """Keep the file if it is what the upstream declared; raise UpstreamError if not."""
        row, blob = self.row, self.blob
        if not hmac.compare_digest(blob.sha256, row.sha256) or row.size not in (None, blob.size):
            raise self.proxy._mismatch(row, "does not match its declared sha256",
                                       f" (sha256 {blob.sha256}, {blob.size} bytes; declared {row.sha256})")
        self.proxy.blobs.commit(blob)
        with write_transaction():
            self.proxy._record_fetched(row.sha256)
            if row.size is None:  # now known: the pages that list the file change, so their serials move
                learned = File.select(File.project).where((File.sha256 == row.sha256) & File.size.is_null())
                serials.projects_changed(learned)
                File.update(size=blob.size).where((File.sha256 == row.sha256) & File.size.is_null()).execute()
        self._complete = True

    def close(self) -> None:
        try:
            self._body.close()
            close_chunks = getattr(self.chunks, "close", None)
            if close_chunks is not None:
                close_chunks()
        finally:
            self.blob.discard()
            self.lock.release()


def _differs(row: File, values: dict[str, object]) -> bool:
    """Whether the upstream changed anything about a file; a size learned on download, or the metadata the UI
    shows, is not a change."""
    return any(getattr(row, key) != value for key, value in values.items()
               if key != "info_sha256" and not (key == "size" and value is None))


def _insert_files(rows: list[dict[str, object]]) -> None:
    """New file rows, one statement run once per row: peewee builds it from the first row, and each row then
    costs only the conversion of its values (and SQLite finds the statement compiled in its cache). A project on
    a public index can list thousands of files, and peewee building a multi-row INSERT value by value was a third
    of the first fetch of such a listing. Through execute_sql, so that a driver's error (a full disk) is peewee's."""
    if not rows:
        return
    sql, _ = File.insert_many([tuple(rows[0][field.name] for field in _FILE_FIELDS)], fields=_FILE_FIELDS).sql()
    for row in rows:
        database.execute_sql(sql, [field.db_value(row[field.name]) for field in _FILE_FIELDS])


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
