"""Answers a worker gave before, given again without Flask while nothing they depend on has changed.

Only what a view offered is repeated, keyed by the request parts declared in SHAPING and CREDENTIALS, while
the database is unchanged (changes.ChangeMarker) and until the view's deadline; on PostgreSQL it stays
empty. Why a worker remembers answers at all: docs/internals.md.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from time import monotonic, perf_counter, time
from typing import Any

from werkzeug.wsgi import wrap_file

from pypilite.changes import ChangeMarker, Marker
from pypilite.database import release_connection
from pypilite.metrics import Metrics
from pypilite.models import earliest
from pypilite.web.wrappers import request

OFFER = "pypilite.memo.offer"
MAX_ENTRIES = 16_384
MAX_BYTES = 64 * 1024 * 1024
# Blobs up to this size (core metadata, small wheels) are kept with the answer: cheaper than sendfile.
SMALL_BLOB = 32 * 1024
# How long a kept small blob is taken to be still on disk after a stat found it there.
BLOB_CHECK_SECONDS = 1.0
# All a remembered answer may depend on besides the database (credentials hashed); tests/memo_rule.py holds it.
SHAPING = ("SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "HTTP_ACCEPT", "HTTP_ACCEPT_ENCODING",
           "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE", "HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE",
           "HTTP_X_PYPILITE_DECISION",
           # read by every request's guard: a body too large, a request from this index's own proxy
           "CONTENT_LENGTH", "HTTP_TRANSFER_ENCODING", "HTTP_X_PYPILITE_LOOP")
CREDENTIALS = "HTTP_AUTHORIZATION"
# A request for part of an answer is werkzeug's to work out every time: the memo never answers it.
PARTIAL = ("HTTP_RANGE", "HTTP_IF_RANGE")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


@dataclass(frozen=True)
class Offer:
    endpoint: str
    until: float | None  # seconds since the epoch
    body: bytes
    path: Path | None  # a blob to send instead of body
    requires: Path | None  # a blob that must still exist for the answer to hold (one nginx is told to send)


def offer(body: bytes = b"", path: Path | None = None, requires: Path | None = None,
          until: datetime | None = None) -> None:
    """Let this request's answer be given again to the same request, while the database stays as it is and
    until `until` (and the principal's own deadline). Only for answers that depend on nothing else."""
    deadline = earliest(until, request.principal_if_known().until)
    request.environ[OFFER] = Offer(request.endpoint or "", _timestamp(deadline), body, path, requires)


def _str(path: Path | None) -> str | None:
    return str(path) if path is not None else None


def _timestamp(moment: datetime | None) -> float | None:
    return moment.replace(tzinfo=UTC).timestamp() if moment is not None else None


@dataclass(slots=True)
class _Entry:
    marker: Marker
    until: float | None
    status: str
    headers: list[tuple[str, str]]
    body: bytes  # the page, or the bytes of a small blob at path
    path: str | None  # of a blob to send, as a str: os.stat and open take it faster than a Path
    size: int  # of the blob at path
    requires: str | None
    endpoint: str
    lookups: tuple[tuple[str, str], ...]  # the proxy lookups the first answer counted, counted again each time
    blob_seen_until: float = 0.0  # monotonic; until then a small blob is taken to be still on disk


class Memo:
    """WSGI middleware around the Flask app."""

    def __init__(self, app: WSGIApp, metrics: Metrics, max_entries: int = MAX_ENTRIES,
                 max_bytes: int = MAX_BYTES) -> None:
        self.app = app
        self.metrics = metrics
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._marker = ChangeMarker()
        self._key = secrets.token_bytes(32)  # per process: the hashed credentials mean nothing elsewhere
        self._entries: OrderedDict[tuple[str | bytes | None, ...], _Entry] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ["REQUEST_METHOD"] != "GET" or any(name in environ for name in PARTIAL):
            return self.app(environ, start_response)
        started = perf_counter()
        marker = self._marker()
        if marker is None:
            return self.app(environ, start_response)
        key = self._request_key(environ)
        entry = self._get(key, marker)
        if entry is not None:
            body = self._body(entry, environ)
            if body is not None:
                release_connection(read_only=True)
                start_response(entry.status, list(entry.headers))
                self.metrics.request(entry.endpoint, "GET", int(entry.status[:3]), perf_counter() - started)
                for kind, result in entry.lookups:
                    self.metrics.proxy(kind, result)
                return body
        return self._answer(environ, start_response, key, marker)

    def _answer(self, environ: dict[str, Any], start_response: StartResponse, key: tuple[str | bytes | None, ...],
                marker: Marker) -> Iterable[bytes]:
        """The Flask road, remembering its answer when the view offered it."""
        sent: list[Any] = []

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            sent[:] = [status, headers]
            return start_response(status, headers, exc_info)

        with self.metrics.recording() as lookups:
            result = self.app(environ, capture)
        offered: Offer | None = environ.get(OFFER)
        if offered is not None and sent and sent[0][:3] in ("200", "304"):
            body, path = (offered.body, offered.path) if sent[0][:3] == "200" else (b"", None)
            size = int(dict(sent[1]).get("Content-Length", 0)) if path is not None else 0
            if path is not None and size <= SMALL_BLOB:
                read = _read(str(path), size)
                if read is None:
                    return result
                body = read
            self._put(key, _Entry(marker, offered.until, sent[0], list(sent[1]), body, _str(path), size,
                                  _str(offered.requires), offered.endpoint, tuple(lookups)))
        return result

    def _request_key(self, environ: dict[str, Any]) -> tuple[str | bytes | None, ...]:
        credentials = environ.get(CREDENTIALS)
        hashed = (hashlib.blake2b(credentials.encode("latin-1"), key=self._key, digest_size=16).digest()
                  if credentials is not None else None)
        return (*map(environ.get, SHAPING), hashed)

    def _get(self, key: tuple[str | bytes | None, ...], marker: Marker) -> _Entry | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry.marker != marker or (entry.until is not None and time() >= entry.until):
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry

    def _put(self, key: tuple[str | bytes | None, ...], entry: _Entry) -> None:
        if len(entry.body) > self.max_bytes // 8:
            return  # one huge page must not push out everything else
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = entry
            self._size += len(entry.body)
            while len(self._entries) > self.max_entries or self._size > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple[str | bytes | None, ...]) -> None:
        self._size -= len(self._entries.pop(key).body)

    @staticmethod
    def _body(entry: _Entry, environ: dict[str, Any]) -> Iterable[bytes] | None:
        """The body to send; None when a blob is missing (the Flask road then says what is wrong)."""
        if entry.requires is not None and not os.path.isfile(entry.requires):
            return None
        if entry.path is None:
            return [entry.body]
        try:
            if entry.size > SMALL_BLOB:
                return wrap_file(environ, open(entry.path, "rb"))
            # A blob gone or resized is the Flask road's to report; one still there is never rewritten.
            now = monotonic()
            if now >= entry.blob_seen_until:
                if os.stat(entry.path).st_size != entry.size:
                    return None
                entry.blob_seen_until = now + BLOB_CHECK_SECONDS
            return [entry.body]
        except OSError:
            return None


def _read(path: str, size: int) -> bytes | None:
    """The blob at `path` if it is `size` bytes long, as the answer's Content-Length says it is."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, size + 1)  # one byte more: a blob that is no longer its size is not kept
    finally:
        os.close(fd)
    return data if len(data) == size else None
