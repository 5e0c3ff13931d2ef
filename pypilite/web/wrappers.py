"""The request class: multipart file parts stream straight into the blob store's temp area, and a body that
is not an upload is refused past a small size.

An upload is hashed while it arrives and never sits in memory or in a second temp file; whatever a request
leaves behind uncommitted is removed when it ends.
"""

from __future__ import annotations

import functools
from typing import IO, cast

import flask
from flask import Request

from pypilite.auth import ANONYMOUS, Principal
from pypilite.errors import UserError
from pypilite.storage import TempBlob
from pypilite.web.context import services
from pypilite.web.forwarded import client_address

# Form fields besides the file (a long description, classifiers) are held in memory up to this much.
MAX_FORM_MEMORY = 16 * 1024 * 1024
# Any body but an upload's (API JSON, mostly a few hundred bytes) is refused past this.
MAX_BODY = 1024 * 1024


class PypiliteRequest(Request):
    started: float  # set when the request begins, for its duration metric

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.remote_addr = client_address(self.environ)  # the peer stays in environ["REMOTE_ADDR"]
        self.temp_blobs: list[TempBlob] = []

    def _get_file_stream(self, total_content_length: int | None, content_type: str | None,
                         filename: str | None = None, content_length: int | None = None) -> IO[bytes]:
        ctx = services()
        blob = ctx.blobs.temp(limit=ctx.config.max_upload_bytes)
        self.temp_blobs.append(blob)
        return blob  # type: ignore[return-value]

    def limit_body(self, limit: int) -> None:
        """Read at most `limit` bytes of this request's body: a Content-Length above it is refused now, before
        a byte of the body is read, and a chunked body is cut off there (werkzeug's LimitedStream, 413)."""
        self.max_content_length = limit
        if self.content_length is not None and self.content_length > limit:
            raise UserError(413, f"Request body too large: at most {limit // 2**20} MiB outside uploads")

    @functools.cached_property
    def principal(self) -> Principal:
        """Who sent this request, authenticated when first asked and then known for the rest of it."""
        return services().authenticator.authenticate(self)

    def principal_if_known(self) -> Principal:
        """Who this request turned out to be, without trying its credentials (again): anonymous when nobody
        asked yet, or when they failed."""
        return self.__dict__.get("principal", ANONYMOUS)

    def discard_temp_blobs(self) -> None:
        for blob in self.temp_blobs:
            blob.discard()
        self.temp_blobs.clear()


# Flask's request proxy, typed (as Flask types it) as the request class the app builds.
request = cast(PypiliteRequest, flask.request)


def current_request() -> PypiliteRequest:
    """The request object itself, past the context-local proxy: one pass for several reads."""
    return flask.request._get_current_object()  # type: ignore[attr-defined]
