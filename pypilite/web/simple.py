"""The Simple Repository API: PEP 503 HTML and PEP 691 JSON from one page model, with 592, 658/714, 700, and
what a page says besides files: 708 (tracks, alternate-locations), 740 (provenance) and 792 (project status).

Links are relative to the page, so the index works unchanged behind a reverse proxy at any host or sub-path.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import quote

from flask import Blueprint, Response, redirect, render_template, request
from packaging.utils import InvalidName, canonicalize_name
from werkzeug.http import quote_etag
from werkzeug.wrappers import Response as BaseResponse  # what redirect() returns

from pypilite.errors import NotFound
from pypilite.repositories.base import ProjectIndex, ProjectPage, Repository
from pypilite.web import encoding, memo
from pypilite.web.context import page_cache, principal, readable_repository
from pypilite.web.errors import reason_phrase
from pypilite.web.files import PROVENANCE_SUFFIX
from pypilite.web.negotiation import HTML_V1, JSON_V1, TEXT_HTML, choose_media_type

bp = Blueprint("simple", __name__)

API_VERSION = "1.1"
# The API version that brought each optional feature: a page says the highest one whose features it carries.
TRACKS_VERSION, PROVENANCE_VERSION, STATUS_VERSION = "1.2", "1.3", "1.4"
# Set when a proxy serves its cached page because the upstream failed; the value says why.
STALE_HEADER = "X-Pypilite-Stale"
SERIAL_HEADER = "X-PyPI-Last-Serial"
# One representation, one validator: the same page as JSON and as HTML must not share an ETag.
_ETAG_SUFFIX = {TEXT_HTML: "html", HTML_V1: "html1", JSON_V1: "json1"}


def _files_prefix() -> str:
    """From a project page back to where its `files/` are: `/<repo>/` for `/<repo>/simple/<p>/`, `/simple/`
    for the default index's `/simple/<p>/`. Inside each index's own path, which pip and poetry match
    credentials against (a sub-path stays the proxy's business)."""
    return "../" * (request.path.count("/") - 2)


def _redirect(target: str) -> BaseResponse:
    query = request.query_string.decode("latin-1")
    response = redirect(target + (f"?{query}" if query else ""), 301)
    response.autocorrect_location_header = False
    return response


@bp.get("/simple/", defaults={"repo": None}, strict_slashes=False)
@bp.get("/<repo>/simple/", strict_slashes=False)
def root_index(repo: str | None) -> BaseResponse:
    repository = readable_repository(repo)
    if not request.path.endswith("/"):
        return _redirect("simple/")
    media_type = choose_media_type(request)
    known = repository.index_etag()
    # A 304 or rendered bytes, without listing every project.
    response = _without_rendering(repository, known, media_type) if known is not None else None
    serial = repository.index_serial()
    if response is None:
        index = repository.project_index()
        response = _page_response(repository, index.etag, media_type, lambda: _render_index(index, media_type))
        serial = index.serial
    _say_serial(response, serial)
    memo.offer(response.get_data())  # every kind lists what its tables hold: nothing but a change alters it
    return response


@bp.get("/simple/<project>/", defaults={"repo": None}, strict_slashes=False)
@bp.get("/<repo>/simple/<project>/", strict_slashes=False)
def project_page(repo: str | None, project: str) -> BaseResponse:
    repository = readable_repository(repo)
    try:
        normalized = canonicalize_name(project, validate=True)
    except InvalidName:
        raise NotFound(f"invalid project name {project!r}") from None
    if not request.path.endswith("/"):
        return _redirect(f"{quote(normalized)}/")
    if normalized != project:
        return _redirect(f"../{quote(normalized)}/")
    media_type = choose_media_type(request)
    prefix = _files_prefix()
    depth = prefix.count("/")
    tag = repository.page_tag(normalized)
    if tag is not None and tag.etag is None:
        raise _not_found(repository, normalized)
    # The fast road: a 304, or bytes rendered before, without building the page.
    response = _without_rendering(repository, f"{tag.etag}.{depth}", media_type) if tag is not None else None
    _say_serial(response, tag.serial if tag is not None else None)
    if response is None:
        page = _page(repository, normalized)
        response = _page_response(repository, f"{page.etag}.{depth}", media_type,
                                  lambda: _render_project(page, media_type, prefix), cacheable=not page.stale)
        _say_serial(response, page.serial)
        if page.stale:
            response.headers[STALE_HEADER] = reason_phrase(page.stale)
            return response
    if tag is not None:  # the page is as its tag says until the tag's deadline, or a change
        memo.offer(response.get_data(), until=tag.until)
    return response


def _say_serial(response: Response | None, serial: int | None) -> None:
    """X-PyPI-Last-Serial, as Warehouse sends it for mirroring tools: the counter of changes to what the page
    lists, where the repository keeps one."""
    if response is not None and serial is not None:
        response.headers[SERIAL_HEADER] = str(serial)


def _page(repository: Repository, name: str) -> ProjectPage:
    page = repository.project_page(name)
    if page is None:
        raise _not_found(repository, name)
    return page


def _not_found(repository: Repository, name: str) -> NotFound:
    return NotFound(f"project {name!r} not found in repository {repository.name!r}")


def _without_rendering(repository: Repository, etag: str, media_type: str,
                       use_cache: bool = True) -> Response | None:
    """A 304, or the page from bytes rendered (and compressed) before; None when it has to be rendered."""
    full = f"{etag}.{_ETAG_SUFFIX[media_type]}"
    gzipped = encoding.accepts_gzip(request.headers.get("Accept-Encoding", ""))
    # A client that takes gzip holds the gzip variant, or the identity one of a page too small to compress.
    for held in ((encoding.gzip_etag(full), full) if gzipped else (full,)):
        if request.if_none_match.contains_weak(held):
            return _response(None, repository, held, media_type)
    if not use_cache:
        return None
    pages = page_cache()
    if gzipped:
        compressed = pages.get(encoding.gzip_etag(full))
        if compressed is not None:
            return _response(compressed, repository, encoding.gzip_etag(full), media_type, encoding.GZIP)
    body = pages.get(full)
    return _encoded(body, repository, full, media_type, gzipped) if body is not None else None


def _page_response(repository: Repository, etag: str, media_type: str, render: Callable[[], str],
                   cacheable: bool = True) -> Response:
    """Answer a conditional request before rendering anything, and a repeated one from rendered bytes."""
    response = _without_rendering(repository, etag, media_type, use_cache=cacheable)
    if response is not None:
        return response
    body = render().encode()
    full = f"{etag}.{_ETAG_SUFFIX[media_type]}"
    if cacheable:
        page_cache().put(full, body)
    gzipped = encoding.accepts_gzip(request.headers.get("Accept-Encoding", ""))
    return _encoded(body, repository, full, media_type, gzipped, cacheable)


def _encoded(body: bytes, repository: Repository, etag: str, media_type: str, gzipped: bool,
             cacheable: bool = True) -> Response:
    """The page as the client takes it: compressed once per page version, and kept beside the identity bytes."""
    if not gzipped or not encoding.worth_compressing(body):
        return _response(body, repository, etag, media_type)
    compressed = encoding.compress(body)
    if cacheable:
        page_cache().put(encoding.gzip_etag(etag), compressed)
    return _response(compressed, repository, encoding.gzip_etag(etag), media_type, encoding.GZIP)


def _response(body: bytes | None, repository: Repository, etag: str, media_type: str,
              content_encoding: str | None = None) -> Response:
    """The page, or a 304 without a body, with the headers both carry (built in one go: this is the road
    every repeated page request takes)."""
    # What a group shows depends on who asks: never let a shared cache hand one principal's page to another.
    shared = repository.public and not principal().authenticated
    headers = [("Content-Type", f"{media_type}; charset=utf-8" if media_type == TEXT_HTML else media_type),
               ("ETag", quote_etag(etag)), ("Vary", "Accept, Accept-Encoding"),
               ("Cache-Control", "max-age=0, must-revalidate" if shared else "max-age=0, must-revalidate, private")]
    if content_encoding is not None:
        headers.append(("Content-Encoding", content_encoding))
    return Response(body, status=304 if body is None else 200, headers=headers)


def _render_index(index: ProjectIndex, media_type: str) -> str:
    if media_type == JSON_V1:
        return json.dumps({"meta": {"api-version": API_VERSION}, "projects": [{"name": n} for n in index.names]})
    return render_template("simple/index.html", api_version=API_VERSION, names=index.names)


def _upload_time(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def page_model(page: ProjectPage, prefix: str) -> dict[str, Any]:
    """The PEP 691 dict of a project page: rendered as JSON as it is, and as HTML by the template."""
    files = []
    carried = [API_VERSION]  # the versions whose features the page carries
    for dist in page.files:
        metadata: Any = {"sha256": dist.metadata_sha256} if dist.metadata_sha256 else False
        url = f"{prefix}files/{quote(dist.repository)}/{dist.sha256}/{quote(dist.filename)}"
        entry = {
            "filename": dist.filename,
            "url": url,
            "hashes": {"sha256": dist.sha256},
            "requires-python": dist.requires_python or None,
            # JSON says core-metadata only (PEP 714): pip 22.3 to 23.1 crash on dist-info-metadata there.
            "core-metadata": metadata,
            "yanked": (dist.yanked_reason or True) if dist.yanked else False,
        }
        # Always known for hosted files; a proxy knows them once its upstream (or a download) has said.
        if dist.size is not None:
            entry["size"] = dist.size
        if dist.upload_time is not None:
            entry["upload-time"] = _upload_time(dist.upload_time)
        if dist.provenance:
            entry["provenance"] = f"{url}{PROVENANCE_SUFFIX}"
            carried.append(PROVENANCE_VERSION)
        files.append(entry)
    meta: dict[str, Any] = {"api-version": API_VERSION}
    model: dict[str, Any] = {"meta": meta, "name": page.name, "versions": list(page.versions), "files": files}
    said = page.markers
    if said.tracks or said.alternate_locations:
        meta["tracks"] = list(said.tracks)
        model["alternate-locations"] = [_link(url, prefix) for url in said.alternate_locations]
        carried.append(TRACKS_VERSION)
    if said.status:
        model["project-status"] = {"status": said.status, **({"reason": said.status_reason}
                                                              if said.status_reason else {})}
        carried.append(STATUS_VERSION)
    meta["api-version"] = max(carried, key=lambda v: tuple(map(int, v.split("."))))
    return model


def _link(url: str, prefix: str) -> str:
    """An absolute URL as it is; one of this server's own paths ("/repo/simple/name/") relative to the page,
    whose files `prefix` reaches: the server's root is one step further up."""
    return f"{prefix}../{url[1:]}" if url.startswith("/") else url


def _render_project(page: ProjectPage, media_type: str, prefix: str) -> str:
    model = page_model(page, prefix)
    if media_type == JSON_V1:
        return json.dumps(model)
    return render_template("simple/project.html", page=model)
