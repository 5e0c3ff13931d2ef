"""The legacy upload API (what twine, uv, poetry, pdm and flit post): a thin view over uploads and hosted.

Never a redirect: POST /<repo> and POST /<repo>/ are both answered in place, because twine, poetry and uv
fail on a redirect and flit turns it into a GET.
"""

from __future__ import annotations

from typing import NoReturn

from flask import Blueprint, Response, request
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed, RequestEntityTooLarge

from pypilite import access
from pypilite.audit import Actor
from pypilite.errors import InsufficientStorage, UserError
from pypilite.storage import BlobTooLarge, TempBlob
from pypilite.uploads import publish
from pypilite.web.clientsetup import base_url
from pypilite.web.context import principal, readable_repository, repository_name, services
from pypilite.web.wrappers import MAX_FORM_MEMORY

bp = Blueprint("upload", __name__)

DRAIN_CHUNK = 1024 * 1024


@bp.post("/", defaults={"repo": None})
@bp.post("/<repo>", strict_slashes=False)
def upload(repo: str | None) -> Response:
    who = principal()
    target = services().repositories.get(repository_name(repo), None).upload_target()
    access.require(who, target, access.UPLOAD)

    metrics = services().metrics
    blob = None
    try:
        form, content = _read_body()
        blob = content.stream if content is not None and isinstance(content.stream, TempBlob) else None
        outcome = publish(target, content.filename if content is not None else None, blob,
                          Actor(who.name or "", request.remote_addr or ""), form)
    except UserError:
        metrics.upload("rejected", blob.size if blob is not None else 0)
        raise
    metrics.upload(outcome.value, blob.size if blob is not None else 0)
    return Response("OK\n", content_type="text/plain; charset=utf-8")


@bp.post("/simple/", defaults={"repo": None}, strict_slashes=False)
@bp.post("/simple/<path:_rest>", defaults={"repo": None})
@bp.post("/<repo>/simple/", strict_slashes=False)
@bp.post("/<repo>/simple/<path:_rest>")
def upload_to_index(repo: str | None, _rest: str = "") -> NoReturn:
    """An upload sent to an index page (the URL pip reads) is told the URL uploads go to; who may not read
    the index hears what its GET would answer. Only a body its sender could upload anyway is read to the end
    (so that the client reads the answer): anyone else's is not read at all."""
    repository = readable_repository(repo)
    target = repository.upload_target()  # a proxy's refusal, or a group's without upload_to, says more
    if access.allowed(principal(), target.id, target.public, access.UPLOAD):
        _drain()
    url = f"{base_url(request, services().config.server.public_url)}/{repository.name}/"
    raise MethodNotAllowed(["GET", "HEAD"], f"Upload to {url} (the repository's URL without /simple/), not to "
                                            "its index: twine upload --repository-url " + url)


def _read_body() -> tuple[MultiDict[str, str], FileStorage | None]:
    """Parse the multipart body, streaming the file into the blob store's temp area."""
    limit_mb = services().config.server.max_upload_mb
    try:
        return request.form, request.files.get("content")
    except BlobTooLarge:
        _drain()
        raise UserError(413, f"File too large: the limit is {limit_mb} MB") from None
    except InsufficientStorage:
        _drain()
        raise
    except RequestEntityTooLarge:
        raise UserError(413, f"Upload too large: the limit is {limit_mb} MB for the file and "
                             f"{MAX_FORM_MEMORY // 2**20} MB for the other fields") from None


def _drain() -> None:
    """Read and drop the rest of a body refused mid-stream. A client still sending (twine, uv) reads no
    answer when the server closes a socket with unread bytes in it: it gets a connection reset instead of the
    reason. Bounded: the stream ends at Content-Length, which the app caps before reading a byte, and a
    chunked body is capped the same way."""
    try:
        while request.stream.read(DRAIN_CHUNK):
            pass
    except (HTTPException, OSError):
        pass  # the client hung up or overran the cap: nobody is left to read the answer
