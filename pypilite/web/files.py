"""Distribution files and their PEP 658 metadata. The URL carries the sha256, so it is cached for a year;
sent with send_file (streamed from an object store), redirected to a presigned URL of the store
(storage.redirect), or, behind nginx (server.x_accel_redirect), named in X-Accel-Redirect once pypilite
decided who may read it (deploy/nginx.conf).
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from flask import Blueprint, Response, request, send_file
from werkzeug.http import quote_header_value
from werkzeug.wsgi import FileWrapper

from pypilite.dists import InvalidDistribution, parse_filename
from pypilite.errors import Forbidden, NotFound, UserError
from pypilite.repositories.base import BlobRef, DistFile, Repository
from pypilite.storage import blob_key
from pypilite.web import memo
from pypilite.web.context import page_cache, principal, readable_repository, services

log = logging.getLogger(__name__)

bp = Blueprint("files", __name__)

ONE_YEAR = 365 * 24 * 3600
METADATA_SUFFIX = ".metadata"
PROVENANCE_SUFFIX = ".provenance"
PROVENANCE_KEPT = 600  # seconds an upstream's provenance is passed on again without asking it
# Sent by nginx (deploy/nginx.conf) when it asks whether it may send a file itself.
DECISION_HEADER = "X-Pypilite-Decision"
# A file's Last-Modified is its upload time (its page says it too), never the blob's mtime, which tells when any
# repository, a private one included, first stored the same bytes; without an upload time, the epoch.
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@bp.get("/simple/files/<member>/<sha256>/<filename>", defaults={"repo": None})
@bp.get("/<repo>/files/<member>/<sha256>/<filename>")
def listed_download(repo: str | None, member: str, sha256: str, filename: str) -> Response:
    """A file under the path of the index whose page linked it, so that clients which pick credentials by
    the longest path prefix (pip, poetry) send that index's own."""
    project = _project(filename)
    listing = readable_repository(repo)  # its permissions and its page decide
    holder = listing.source(member, project) if project is not None else None
    if holder is None or project is None:
        raise NotFound(f"file {filename!r} not found in repository {listing.name!r}")
    # Looked up once for the policies and the download; a file that is not the URL's is _download's 404.
    dist = holder.dist_file(filename.removesuffix(METADATA_SUFFIX).removesuffix(PROVENANCE_SUFFIX))
    if dist is not None and dist.sha256 == sha256:
        metadata = filename.endswith((METADATA_SUFFIX, PROVENANCE_SUFFIX))
        _check_policies(listing, holder, project, dist, metadata)
    return _download(listing, holder, dist, sha256, filename)


def _check_policies(listing: Repository, holder: Repository, project: str, dist: DistFile, metadata: bool) -> None:
    """403 with the reason when the policy of the index asked (a group's own) or of the member holding the
    file blocks it; its core metadata and provenance too, except for a licence not known yet."""
    for repository in dict.fromkeys((listing, holder)):
        reason = repository.refusal(dist, project, metadata=metadata)
        if reason is not None:
            raise Forbidden(reason)


def _project(filename: str) -> str | None:
    try:
        return parse_filename(filename.removesuffix(METADATA_SUFFIX).removesuffix(PROVENANCE_SUFFIX)).project
    except InvalidDistribution:
        return None


@bp.get("/files/<repo>/<sha256>/<filename>")
def download(repo: str, sha256: str, filename: str) -> Response:
    """The URLs pages linked before files moved under their index's path (lockfiles record them). They named
    the member holding the file, never a group: a group's name here finds nothing, as it never did on a page."""
    return listed_download(repo, repo, sha256, filename)


def _download(listing: Repository, holder: Repository, dist: DistFile | None, sha256: str,
              filename: str) -> Response:
    if filename.endswith(PROVENANCE_SUFFIX):
        return _provenance(holder, dist, sha256, filename.removesuffix(PROVENANCE_SUFFIX))
    blob, uploaded = _blob(holder, dist, sha256, filename)
    accel = services().config.server.x_accel_redirect
    response = _accelerated(holder, filename, blob, uploaded, accel) if accel else None
    if response is None:
        response = _sent(holder, filename, uploaded)
    if response.status_code == 302:
        return response  # to a presigned URL, which expires: its own Cache-Control stands
    # The URL names the bytes (its sha256): cached for a year, by shared caches only where anyone may read.
    shared = listing.public and not principal().authenticated
    response.headers["Cache-Control"] = f"{'public' if shared else 'private'}, max-age={ONE_YEAR}, immutable"
    return response


def _blob(repository: Repository, dist: DistFile | None, sha256: str, filename: str) -> tuple[str, datetime]:
    """The sha256 of the bytes the URL `<repository>/<sha256>/<filename>` stands for, and the date a download
    of them carries: the file's upload time, as its page shows it (1970 where none is known)."""
    dist_name = filename.removesuffix(METADATA_SUFFIX)
    if dist is None or dist.sha256 != sha256:
        raise NotFound(f"file {filename!r} not found in repository {repository.name!r}")
    blob = dist.metadata_sha256 if filename.endswith(METADATA_SUFFIX) else dist.sha256
    if blob is None:
        raise NotFound(f"{dist_name!r} has no core metadata file")
    return blob, dist.upload_time or EPOCH


def _sent(repository: Repository, filename: str, uploaded: datetime) -> Response:
    dist_name = filename.removesuffix(METADATA_SUFFIX)
    want_metadata = filename.endswith(METADATA_SUFFIX)
    ref = repository.open_metadata(dist_name) if want_metadata else repository.open_file(dist_name)
    if ref is None:
        raise NotFound(f"{dist_name!r} has no core metadata file")
    if ref.stream is not None:
        return _streamed(ref)
    blobs = services().blobs
    path = blobs.local_file(ref.sha256)
    if path is not None:
        if not path.is_file():
            _missing(ref, filename, repository)
        return _send_blob(path, ref, uploaded)
    url = blobs.presigned_url(ref.sha256, ref.download_name)
    if url is not None:
        return _redirected(url)
    size = blobs.size(ref.sha256)
    if size is None:
        _missing(ref, filename, repository)
    return _send_stream(ref, size, uploaded)


def _missing(ref: BlobRef, filename: str, repository: Repository) -> NoReturn:
    log.error("blob %s of %s in %s is missing from the store", ref.sha256, filename, repository.name)
    raise UserError(500, "stored file is missing from the blob store; restore it from a backup")


def _send_blob(path: Path, ref: BlobRef, uploaded: datetime) -> Response:
    """Range, 304 and 416 are werkzeug's; the open file goes to gunicorn's sendfile."""
    response = send_file(path, mimetype="application/octet-stream", etag=ref.sha256, conditional=True,
                         last_modified=uploaded)
    response.headers["Content-Disposition"] = _disposition(ref.download_name)
    # werkzeug dates a conditional answer, but the server dates every answer as it sends it: werkzeug's
    # development server would send both dates, and the memo would repeat the first one for good.
    del response.headers["Date"]
    memo.offer(path=path)  # the URL names the bytes: only a database change can change the answer
    return response


def _send_stream(ref: BlobRef, size: int, uploaded: datetime) -> Response:
    """A blob from an object store, read as it is sent. werkzeug answers Range, 304 and 416 as for a file;
    its FileWrapper seeks, so a range costs one ranged GET of the store, never the bytes before it."""
    body = services().blobs.open(ref.sha256)
    response = Response(FileWrapper(body), mimetype="application/octet-stream", direct_passthrough=True)
    response.content_length = size
    response.set_etag(ref.sha256)
    response.last_modified = uploaded
    response.headers["Content-Disposition"] = _disposition(ref.download_name)
    response.make_conditional(request, accept_ranges=True, complete_length=size)
    del response.headers["Date"]
    return response


def _redirected(url: str) -> Response:
    """A time-limited URL of the store itself: the redirect must not outlive it in any cache."""
    return Response(status=302, headers={"Location": url, "Cache-Control": "private, no-store"})


def _stored(repository: Repository, filename: str, blob: str) -> str | None:
    """The stored blob `repository` may hand out for the URL's file, if it is the one the URL stands for."""
    ref = repository.stored_blob(filename.removesuffix(METADATA_SUFFIX), filename.endswith(METADATA_SUFFIX))
    return ref.sha256 if ref is not None and ref.sha256 == blob else None


def _accelerated(repository: Repository, filename: str, blob: str, uploaded: datetime,
                 location: str) -> Response | None:
    """No body: nginx sends the stored blob from its internal location, with Range and conditional GETs of
    its own, and keeps the headers set here that it passes on. None when pypilite must send it itself (a
    proxied file it has not fetched itself yet, or a blob gone missing); but when nginx only asks whether it
    may send the file (deploy/nginx.conf's decision subrequest), pypilite starts nothing and says "not from
    you" with an answer that names no blob."""
    stored = _stored(repository, filename, blob)
    if stored is None:
        return Response(status=200) if request.headers.get(DECISION_HEADER) else None
    response = Response(mimetype="application/octet-stream")
    response.headers["X-Accel-Redirect"] = location + blob_key(stored)  # the same name on every backend
    response.headers["Content-Disposition"] = _disposition(filename)
    response.last_modified = uploaded  # nginx's own date of the blob is 1970 (LocalBlobStore.commit)
    path = services().blobs.local_file(stored)
    if path is not None:  # a blob in an object store is named to nginx again on each request
        memo.offer(requires=path)
    return response


def _provenance(repository: Repository, dist: DistFile | None, sha256: str, filename: str) -> Response:
    """A file's PEP 740 provenance, as its repository's upstream gave it within the last ten minutes (kept with
    the pages, so that asking again does not send the proxy to the upstream again; see ProxyRepository)."""
    if dist is None or dist.sha256 != sha256:
        raise NotFound(f"{filename!r} has no provenance in repository {repository.name!r}")
    key = f"provenance {repository.id} {sha256} {filename} {int(time.time() // PROVENANCE_KEPT)}"
    body = page_cache().get(key)
    if body is None:
        body = repository.open_provenance(filename)
        if body is None:
            raise NotFound(f"{filename!r} has no provenance in repository {repository.name!r}")
        page_cache().put(key, body)
    response = Response(body, mimetype="application/json")
    response.headers["Cache-Control"] = "private, max-age=0, must-revalidate"
    return response


def _disposition(filename: str) -> str:
    """Quoted by werkzeug: a filename is not trusted to be free of quotes and backslashes."""
    return f"inline; filename={quote_header_value(filename, allow_token=False)}"


def _streamed(ref: BlobRef) -> Response:
    """A file on its way from a proxy's upstream, sent as it arrives."""
    response = Response(ref.stream, mimetype="application/octet-stream", direct_passthrough=True)
    if ref.size is not None:
        response.content_length = ref.size
    response.set_etag(ref.sha256)
    response.headers["Content-Disposition"] = _disposition(ref.download_name)
    return response
