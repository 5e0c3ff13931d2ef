"""Rendered Simple API pages, kept per process and keyed by their full ETag.

An ETag names one representation of one state of a page (the project's change serial is in it), so an entry
never needs invalidating: a change anywhere, in any worker, makes a new key, and the old entry ages out of
the LRU. A hit costs one indexed lookup for the serial, and no rendering.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

MAX_BYTES = 64 * 1024 * 1024


class PageCache:
    def __init__(self, max_bytes: int = MAX_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, etag: str) -> bytes | None:
        with self._lock:
            body = self._entries.get(etag)
            if body is not None:
                self._entries.move_to_end(etag)
            return body

    def put(self, etag: str, body: bytes) -> None:
        if len(body) > self.max_bytes // 8:
            return  # one huge page must not flush everything else
        with self._lock:
            if etag in self._entries:
                return
            self._entries[etag] = body
            self._size += len(body)
            while self._size > self.max_bytes:
                _, evicted = self._entries.popitem(last=False)
                self._size -= len(evicted)
