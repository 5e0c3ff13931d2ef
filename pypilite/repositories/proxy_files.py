"""A proxy's files: fetched from its upstream on first request, streamed to the client while they are stored,
and kept only if their sha256 is the one the upstream's page declared.

A proxy hands out only blobs it fetched from its own upstream and verified (models.FetchedBlob): an upstream
page may name the sha256 of any file, a private one stored for another repository included, and the same
bytes being in the store prove nothing about who may have them.
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Generator, Iterator
from pathlib import Path

from pypilite import serials
from pypilite.breakers import Breaker
from pypilite.database import database, write_transaction
from pypilite.dists import MAX_METADATA_BYTES, WHEEL, metadata_bytes, parse_filename
from pypilite.errors import InsufficientStorage, NotFound, UserError
from pypilite.locks import Lock, LockTimeout, named_lock
from pypilite.metrics import Metrics
from pypilite.models import FetchedBlob, File
from pypilite.repositories.base import BlobRef
from pypilite.storage import BlobStore, BlobTooLarge, TempBlob
from pypilite.upstream import Upstream, UpstreamError, redact

log = logging.getLogger(__name__)

# A file that ends within this many bytes is read and checked before the answer starts, so a mismatch is a 502;
# a longer one can only break off once its status is sent.
READ_AHEAD = 1024 * 1024
# A provenance is passed on, never stored: its signatures vouch for it, not pypilite. Real ones are a few KB.
MAX_PROVENANCE_BYTES = 1024 * 1024


class ProxyFiles:
    """The files of one proxy repository, by their rows in the tables its pages fill."""

    def __init__(self, repository_id: int, name: str, blobs: BlobStore, upstream: Upstream, locks: Path,
                 lock_wait: float, metrics: Metrics, breaker: Breaker, offline: bool) -> None:
        self.id = repository_id
        self.name = name
        self.blobs = blobs
        self.upstream = upstream
        self.locks = locks
        self.lock_wait = lock_wait
        self.metrics = metrics
        self.breaker = breaker
        self.offline = offline

    def fetched(self, sha256: str) -> bool:
        """Whether this proxy fetched these bytes from its upstream and verified them."""
        return FetchedBlob.select().where((FetchedBlob.repository == self.id)
                                          & (FetchedBlob.sha256 == sha256)).exists()

    def _kept(self, sha256: str, filename: str) -> BlobRef | None:
        return BlobRef(sha256, filename) if self.fetched(sha256) and self.blobs.exists(sha256) else None

    def open_file(self, row: File) -> BlobRef:
        local = self._kept(row.sha256, row.filename)
        if local is not None:
            self.metrics.proxy("file", "hit")
            return local
        self._may_ask(row.filename)
        lock = self._lock_blob(row.sha256)
        local = self._kept(row.sha256, row.filename)
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
            chunks, length = self._download(row.origin_url, row.size)
        except UserError:
            blob.discard()
            lock.release()
            raise
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
        return BlobRef(row.sha256, row.filename, stream=stream,
                       size=row.size if row.size is not None else length)

    def open_metadata(self, row: File) -> BlobRef | None:
        """The upstream's PEP 658 file of a row that declares one, fetched and verified once."""
        name = f"{row.filename}.metadata"
        if self._kept(row.metadata_sha256, name) is None:
            self._may_ask(name)
        with self._lock_blob(row.metadata_sha256):
            if self._kept(row.metadata_sha256, name) is None:
                self._fetch_metadata(row)
        return self._kept(row.metadata_sha256, name)

    def open_provenance(self, row: File) -> bytes:
        """The upstream's PEP 740 provenance of a file, fetched through the upstream's guarded session and
        passed on whole, never stored: clients check its signatures against the file's hash themselves."""
        self._may_ask(f"the provenance of {row.filename}")
        chunks, _length = self._download(row.provenance_url)
        try:
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

    def _may_ask(self, what: str) -> None:
        """Refuse at once what only the upstream could give while the proxy is offline or its breaker open."""
        if self.offline:
            raise NotFound(f"repository {self.name!r} is offline (it serves its cache alone) and has not cached "
                           f"{what}")
        refused = self.breaker.refusal()
        if refused is not None:
            raise UserError(504 if refused.timeout else 502, str(refused))

    def _download(self, url: str, size: int | None = None) -> tuple[Generator[bytes, None, None], int | None]:
        """The upstream's answer for a file, its outcome told to the breaker; a UserError if it failed."""
        try:
            answer = self.upstream.download(url, size)
        except UpstreamError as exc:
            self.metrics.upstream_error("file")
            self.breaker.failed(exc)
            raise UserError(504 if exc.timeout else 502, str(exc)) from None
        self.breaker.succeeded()
        return answer

    def _lock_blob(self, sha256: str) -> Lock:
        try:
            return named_lock(self.locks, f"blob/{sha256}").acquire(self.lock_wait)
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
            chunks, _length = self._download(url)
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
            if row.metadata_sha256 is not None and self.fetched(row.metadata_sha256):
                info = row.metadata_sha256
            else:
                with self.blobs.local_copy(row.sha256) as path:
                    raw = metadata_bytes(path, parse_filename(row.filename), row.filename)
                info = self.blobs.put_bytes(raw)
            offered = row.metadata_sha256 is None and row.packagetype == WHEEL  # see ProxyRepository._core_metadata
            # The upstream's declared .metadata, byte for byte: served from the cache when the upstream is not asked.
            declared = info == row.metadata_sha256
            with write_transaction():
                if offered or declared:  # taken out of a wheel this proxy verified: its to hand out
                    self._record_fetched(info)
                if offered:  # and the page changes
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

    def __init__(self, files: ProxyFiles, chunks: Iterator[bytes], row: File, lock: Lock,
                 blob: TempBlob) -> None:
        self.files = files
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

    def _pass_on(self) -> Generator[bytes, None, None]:
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
                self.files.metrics.upstream_error("file")
                raise  # the response breaks off: the client's download fails, and nothing is kept
            yield held
        self.lock.release()
        # The client has every byte now: what the UI shows of the file is taken out of it after.
        with database.connection_context():
            self.files._describe(self.row)

    def _write(self, chunk: bytes) -> None:
        try:
            self.blob.write(chunk)
        except InsufficientStorage as exc:
            log.error("%s: %s not cached: %s", self.files.name, self.row.filename, exc.message)
            raise  # the response breaks off (or is a 507, before it starts): nothing is kept
        if self.row.size is not None and self.blob.size > self.row.size:
            raise self.files._mismatch(self.row, f"is longer than the {self.row.size} bytes its page declared")

    def _finish(self) -> None:
        """Keep the file if it is what the upstream declared; raise UpstreamError if not."""
        row, blob = self.row, self.blob
        if not hmac.compare_digest(blob.sha256, row.sha256) or row.size not in (None, blob.size):
            raise self.files._mismatch(row, "does not match its declared sha256",
                                       f" (sha256 {blob.sha256}, {blob.size} bytes; declared {row.sha256})")
        self.files.blobs.commit(blob)
        with write_transaction():
            self.files._record_fetched(row.sha256)
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

