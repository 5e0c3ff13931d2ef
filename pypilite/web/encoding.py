"""Content coding for pages (RFC 9110 section 8.4): gzip when the client's Accept-Encoding prefers it to identity.

A compressed page is another representation of the same page, so it carries its own ETag (the identity one with
GZIP_SUFFIX), and its bytes are a function of the page alone (no timestamp in the gzip header): every worker
makes the same bytes under the same ETag.
"""

from __future__ import annotations

import functools
import gzip

from werkzeug.datastructures import Accept
from werkzeug.http import parse_accept_header

GZIP = "gzip"
GZIP_SUFFIX = "-gz"
# Below this a page is sent as it is: the gzip header and a decompression cost more than the bytes saved.
MIN_SIZE = 1024
# zlib's default: nearly all of level 9's saving for a fraction of its time, and paid once per page version.
LEVEL = 6


@functools.lru_cache(maxsize=256)
def accepts_gzip(accept_encoding: str) -> bool:
    """Whether gzip is the coding to send for this Accept-Encoding value (q-values, `gzip;q=0`, `identity`,
    `*`), parsed by werkzeug as request.accept_encodings is; each value once per process."""
    accepted = parse_accept_header(accept_encoding, Accept)
    return accepted.best_match((GZIP, "identity"), default="identity") == GZIP


def gzip_etag(etag: str) -> str:
    return etag + GZIP_SUFFIX


def worth_compressing(body: bytes) -> bool:
    return len(body) >= MIN_SIZE


def compress(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=LEVEL, mtime=0)
