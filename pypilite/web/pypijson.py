"""Warehouse's JSON API for hosted repositories: /<repo>/pypi/<project>/json and
/<repo>/pypi/<project>/<version>/json, read with the same rights, redirects and 404s as the Simple API.

Its URLs are absolute, as Warehouse's are, so a document depends on the address the client used: its ETag
says so, and the memo never repeats one.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, request
from packaging.utils import InvalidName, canonicalize_name
from werkzeug.wrappers import Response as BaseResponse  # what redirect() returns

from pypilite import warehousejson
from pypilite.errors import NotFound
from pypilite.repositories.base import ProjectPage, Repository
from pypilite.web import encoding
from pypilite.web.clientsetup import base_url
from pypilite.web.context import page_cache, principal, readable_repository, services
from pypilite.web.errors import answer_errors, json_error
from pypilite.web.simple import SERIAL_HEADER, page_model

bp = Blueprint("pypijson", __name__)
answer_errors(bp, json_error)


@bp.get("/<repo>/pypi/<project>/json", defaults={"version": None})
@bp.get("/<repo>/pypi/<project>/<version>/json")
def release(repo: str, project: str, version: str | None) -> BaseResponse:
    repository = readable_repository(repo)
    if repository.repository_type != "hosted":
        raise NotFound(f"the JSON API covers hosted repositories; {repository.name!r} is a "
                       f"{repository.repository_type}: use its Simple API")
    try:
        normalized = canonicalize_name(project, validate=True)
    except InvalidName:
        raise NotFound(f"invalid project name {project[:100]!r}") from None
    if normalized != project:  # relative, as the Simple API's redirects: right behind a proxy at a sub-path
        target = (f"../{quote(normalized)}/json" if version is None
                  else f"../../{quote(normalized)}/{quote(version)}/json")
        response = redirect(target, 301)
        response.autocorrect_location_header = False
        return response
    root = base_url(request, services().config.server.public_url)
    tag = repository.page_tag(normalized)
    if tag is None or tag.etag is None:
        raise _not_found(repository, normalized)
    # A 304, or the bytes built before, from the page's ETag, the version asked and the address alone.
    etag = _etag(tag.etag, version, root)
    gzipped = encoding.accepts_gzip(request.headers.get("Accept-Encoding", ""))
    for held in ((encoding.gzip_etag(etag), etag) if gzipped else (etag,)):
        if request.if_none_match.contains_weak(held):
            return _response(None, repository, held, tag.serial)
    kept = _kept(repository, etag, tag.serial, gzipped)
    if kept is not None:
        return kept
    page = repository.project_page(normalized)
    if page is None:
        raise _not_found(repository, normalized)
    body = json.dumps(_document(repository, page, version, root)).encode()
    etag = _etag(page.etag, version, root)
    page_cache().put(etag, body)
    return _encoded(body, repository, etag, page.serial, gzipped)


def _not_found(repository: Repository, name: str) -> NotFound:
    return NotFound(f"project {name!r} not found in repository {repository.name!r}")


def _document(repository: Repository, page: ProjectPage, version: str | None, root: str) -> dict[str, Any]:
    chosen = warehousejson.release_version(page, version)
    # The pages' own file URLs, under this repository's path (page_model's prefix is where `files/` lives).
    files_root = f"{root}/{quote(repository.name)}/"
    urls = {entry["filename"]: _absolute(entry["url"]) for entry in page_model(page, files_root)["files"]}
    metadata = warehousejson.read_metadata(services().blobs, [f for f in page.files if f.version == chosen])
    ui_url = f"{root}/ui/{quote(repository.name)}/{quote(page.name)}/"
    return warehousejson.document(page, chosen, metadata, lambda dist: urls[dist.filename], ui_url,
                                  with_releases=version is None)


def _kept(repository: Repository, etag: str, serial: int | None, gzipped: bool) -> Response | None:
    """The document from the bytes built (and compressed) before; None when it has to be built."""
    pages = page_cache()
    if gzipped:
        compressed = pages.get(encoding.gzip_etag(etag))
        if compressed is not None:
            return _response(compressed, repository, encoding.gzip_etag(etag), serial, encoding.GZIP)
    body = pages.get(etag)
    return _encoded(body, repository, etag, serial, gzipped) if body is not None else None


def _encoded(body: bytes, repository: Repository, etag: str, serial: int | None, gzipped: bool) -> Response:
    """The document as the client takes it; compressed once, and kept beside the identity bytes."""
    if not gzipped or not encoding.worth_compressing(body):
        return _response(body, repository, etag, serial)
    compressed = encoding.compress(body)
    page_cache().put(encoding.gzip_etag(etag), compressed)
    return _response(compressed, repository, encoding.gzip_etag(etag), serial, encoding.GZIP)


def _absolute(url: str) -> str:
    """A file URL as the pages give it, without the fragment (the digests say the hash)."""
    return url.split("#", 1)[0]


def _etag(page_etag: str, version: str | None, root: str) -> str:
    state = "\n".join((page_etag, version or "", root)).encode()
    return hashlib.blake2b(state, digest_size=16).hexdigest() + ".pypi"


def _response(body: bytes | None, repository: Repository, etag: str, serial: int | None,
              content_encoding: str | None = None) -> Response:
    response = Response(body, status=304 if body is None else 200, content_type="application/json")
    response.set_etag(etag)
    response.vary.add("Accept-Encoding")
    shared = repository.public and not principal().authenticated
    response.headers["Cache-Control"] = "max-age=0, must-revalidate" + ("" if shared else ", private")
    if serial is not None:
        response.headers[SERIAL_HEADER] = str(serial)
    if content_encoding is not None:
        response.headers["Content-Encoding"] = content_encoding
    return response

