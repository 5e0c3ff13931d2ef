"""Distribution files and their PEP 658 metadata, served from the blob store.

The URL carries the file's sha256, so a URL always means the same bytes: clients and proxies may cache it
for a year, and Range and conditional requests come from send_file (gunicorn hands the open file to
sendfile(2)). Behind nginx with `server.x_accel_redirect` set, pypilite decides who may read and nginx sends
the bytes.
"""

from __future__ import annotations

import logging

from flask import Blueprint, Response, send_file

from pypilite.errors import NotFound, UserError
from pypilite.repositories.base import BlobRef
from pypilite.web.context import principal, readable_repository, services

log = logging.getLogger(__name__)

bp = Blueprint("files", __name__)

ONE_YEAR = 365 * 24 * 3600
METADATA_SUFFIX = ".metadata"


@bp.get("/files/<repo>/<sha256>/<filename>")
def download(repo: str, sha256: str, filename: str) -> Response:
    repository = readable_repository(repo)

    want_metadata = filename.endswith(METADATA_SUFFIX)
    dist_name = filename.removesuffix(METADATA_SUFFIX)
    dist = repository.dist_file(dist_name)
    if dist is None or dist.sha256 != sha256:
        raise NotFound(f"file {filename!r} not found in repository {repository.name!r}")
    ref = repository.open_metadata(dist_name) if want_metadata else repository.open_file(dist_name)
    if ref is None:
        raise NotFound(f"{dist_name!r} has no core metadata file")
    if ref.stream is None and not ref.path.is_file():
        log.error("blob %s of %s in %s is missing from the store", ref.sha256, filename, repository.name)
        raise UserError(500, "stored file is missing from the blob store; restore it from a backup")
    accel = services().config.server.x_accel_redirect
    if ref.stream is not None:
        response = _streamed(ref)
    elif accel:
        response = _accelerated(ref, accel)
    else:
        response = send_file(ref.path, mimetype="application/octet-stream", conditional=True, etag=ref.sha256,
                             max_age=ONE_YEAR, download_name=ref.download_name)
    response.cache_control.immutable = True
    if not repository.public or principal().authenticated:
        response.cache_control.public = False
        response.cache_control.private = True
    return response


def _accelerated(ref: BlobRef, location: str) -> Response:
    """No body: nginx sends the blob from its internal location (with Range and conditional GETs of its own)
    and keeps the headers set here that it passes on."""
    response = Response(mimetype="application/octet-stream")
    blob = ref.path.relative_to(services().blobs.root).as_posix()
    response.headers["X-Accel-Redirect"] = location + blob
    response.headers["Content-Disposition"] = f'inline; filename="{ref.download_name}"'
    response.cache_control.public = True
    response.cache_control.max_age = ONE_YEAR
    return response


def _streamed(ref: BlobRef) -> Response:
    """A file on its way from a proxy's upstream, sent as it arrives."""
    response = Response(ref.stream, mimetype="application/octet-stream", direct_passthrough=True)
    if ref.size is not None:
        response.content_length = ref.size
    response.set_etag(ref.sha256)
    response.cache_control.public = True
    response.cache_control.max_age = ONE_YEAR
    response.headers["Content-Disposition"] = f'inline; filename="{ref.download_name}"'
    return response
