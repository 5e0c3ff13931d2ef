"""The web UI: repositories, their projects, a project's versions, files and README, and client setup.

Thin views over catalog, descriptions and clientsetup, reading through the Simple API's permission decision;
a private repository (and /login) answers 401 with the Basic challenge, so the browser asks.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flask import Blueprint, Response, redirect, render_template, url_for
from packaging.utils import InvalidName, canonicalize_name
from werkzeug.routing import BaseConverter
from werkzeug.wrappers import Response as BaseResponse  # what redirect() returns

from pypilite import access, breakers, catalog, descriptions, grants, policies
from pypilite.config import RESERVED_NAMES
from pypilite.errors import NotFound, UserError
from pypilite.repositories.base import DistFile, ProjectPage, Repository, version_key
from pypilite.repositories.policed import PolicedRepository
from pypilite.repositories.proxy import ProxyRepository
from pypilite.web import clientsetup, crosssite
from pypilite.web.context import principal, readable_repository, services
from pypilite.web.errors import answer_errors
from pypilite.web.wrappers import request

bp = Blueprint("ui", __name__, static_folder="static", static_url_path="/static/ui")

# Everything only from here: a README's remote image would tell its host who reads a private package, and when.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
# Where /login may send back to: a local path in URL-safe characters, none a browser rewrites into another host.
_LOCAL_PATH = re.compile(r"/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@%/?#]*\Z")


class RepositoryName(BaseConverter):
    """A first path segment that may name a repository: none of the fixed routes' words, so `/api/v1/` stays
    the API's own 404."""
    regex = rf"(?!(?:{'|'.join(sorted(RESERVED_NAMES))})(?![a-z0-9._-]))[a-z0-9][a-z0-9._-]*"


def relative(path: str) -> str:
    """A server path as a URL relative to the current page, so the UI works unchanged behind a reverse proxy
    at any sub-path (as the Simple API's links do)."""
    up = "../" * (request.path.count("/") - 1)
    tail = path.lstrip("/")
    # Bare, a query would stay on this page and a first segment with a colon read as a scheme ("https:x").
    if not up and (tail.startswith(("?", "#")) or ":" in tail.split("/", 1)[0]):
        up = "./"
    return (up + tail) or "./"


def url(endpoint: str, **values: Any) -> str:
    return relative(url_for(endpoint, **values))


def dress(blueprint: Blueprint) -> None:
    """What every UI page has, whichever blueprint serves it: the url helper, the security headers, and
    refusals answered as a page."""
    blueprint.context_processor(_helpers)
    blueprint.after_request(_security_headers)
    answer_errors(blueprint, error_page)


def _helpers() -> dict[str, Any]:
    return {"url": url}


def _security_headers(response: Response) -> Response:
    if request.endpoint != "ui.static":
        response.headers["Content-Security-Policy"] = CSP
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        # What a page shows depends on who asks: never from a shared cache (a page may ask for none at all).
        response.headers.setdefault("Cache-Control", "private, no-cache")
    return response


def error_page(status: int, message: str) -> Response:
    # An error page may be the answer to credentials that failed: it must not try them again.
    body = render_template("ui/error.html", status=status, message=message, who=request.principal_if_known())
    return Response(body, status=status, content_type="text/html; charset=utf-8")


dress(bp)


# What a page says after a write sent it there, by a key in its query string: no page echoes text it is sent.
NOTICES = {
    "revoked": "Token revoked, with every token made with it.",
    "password": "Password changed.",
    "yanked": "Release yanked: pip and uv now skip it unless it is pinned with ==.",
    "unyanked": "Release unyanked.",
    "deleted": "File deleted.",
    "granted": "Access granted.",
    "revoked-grant": "Access revoked.",
}


def notice() -> str | None:
    return NOTICES.get(request.args.get("done", ""))


def _common() -> dict[str, Any]:
    return {"who": principal(), "notice": notice()}


def _may(repo_view: Repository, action: str) -> bool:
    return access.allowed(principal(), repo_view.id, repo_view.public, action)


@bp.get("/")
def home() -> str:
    who = principal()
    query = request.args.get("q")
    results = None
    if query is not None and query.strip():
        results = catalog.search(who, query, catalog.parse_page(request.args.get("page")))
    return render_template("ui/home.html", repositories=catalog.repositories(who), query=query or "",
                           results=results, **_common())


@bp.get("/login")
def login() -> BaseResponse:
    """Basic credentials are sent to the paths under the one that asked: asking at the root means the
    browser sends them everywhere on this server from now on. Another site's link here only leads home: it
    must not have the browser asked for credentials, nor send them on where that site chose."""
    if crosssite.cross_site_header(request, services().config.server.public_url) is not None:
        return redirect(url("ui.home"))
    access.require_user(principal(), "Log in with your user name and password, or __token__ and an API token")
    target = request.args.get("next", "")
    return redirect(relative(target if _LOCAL_PATH.match(target) else "/"))


@bp.get("/ui/", strict_slashes=False)
def ui_root() -> BaseResponse:
    return redirect(url("ui.home"))


@bp.get("/ui/<repo>/")
def repository(repo: str) -> str:
    repo_view = readable_repository(repo)
    sort = catalog.parse_sort(request.args.get("sort"))
    page = catalog.projects(repo_view, sort, catalog.parse_page(request.args.get("page")))
    urls = _endpoints(repo_view)
    holders = grants.list_grants(repository=repo_view.name) if _may(repo_view, access.ADMIN) else None
    return render_template("ui/repository.html", repository=repo_view, page=page, sort=sort, urls=urls,
                           snippets=clientsetup.snippets(urls), grants=holders, levels=access.LEVELS,
                           upstream=_upstream(repo_view), policy=_policy(repo_view), **_common())


def _policy(repo_view: Repository) -> list[tuple[str, str]] | None:
    """The rules of the repository's policy that differ from the defaults, for its admins (a deny list may name
    what only they should know); None for anyone else, or without a policy."""
    if not isinstance(repo_view, PolicedRepository) or not _may(repo_view, access.ADMIN):
        return None
    defaults = policies.as_dict(policies.Policy())
    return [(key, json.dumps(value)) for key, value in policies.as_dict(repo_view.policy).items()
            if value != defaults[key] or key == "mode"]


def _upstream(repo_view: Repository) -> dict[str, object] | None:
    """A proxy's offline switch and its upstream's breaker, for the repository page; None for another kind."""
    proxy = repo_view.underlying()
    if not isinstance(proxy, ProxyRepository):
        return None
    return {"offline": proxy.offline, **breakers.summary(proxy.breaker.state())}


@bp.get("/ui/<repo>/<project>/")
def project(repo: str, project: str) -> BaseResponse | str:
    repo_view = readable_repository(repo)
    try:
        normalized = canonicalize_name(project, validate=True)
    except InvalidName:
        raise NotFound(f"invalid project name {project[:100]!r}") from None
    if normalized != project:
        kept = {key: value for key, value in request.args.items() if key == "version"}  # all the page reads
        return redirect(url("ui.project", repo=repo, project=normalized, **kept), 301)
    page = repo_view.cached_page(normalized)
    if page is None:
        raise NotFound(f"project {normalized!r} not found in repository {repo_view.name!r}")
    version = _chosen_version(page, request.args.get("version"))
    files = [dist for dist in page.files if dist.version == version]
    info = descriptions.release_info(services().blobs, files)
    urls = _endpoints(repo_view)
    name = info.name if info is not None and info.name else normalized
    return render_template("ui/project.html", repository=repo_view, page=page, version=version, files=files,
                           versions=_versions(page), info=info, name=name, blocked=_blocked(repo_view, normalized),
                           install=clientsetup.pip_install(urls, f"{normalized}=={version}"),
                           safe_url=descriptions.safe_url, maintain=_maintainable(repo_view), **_common())


def _blocked(repo_view: Repository, project: str) -> list[dict[str, object]]:
    """The versions a policy keeps from installers (or would, in report mode), newest first, each with the
    rules, the repositories whose policies decided, and the advisories they cite."""
    found: dict[str, dict[tuple[str, str], dict[str, object]]] = {}
    for holder, dist, decision in repo_view.decisions(project):
        found.setdefault(dist.version, {}).setdefault((decision.rule, holder.name), {
            "rule": decision.rule, "repository": holder.name, "reason": decision.reason,
            "advisories": decision.advisories})
    return [{"version": version, "reasons": list(found[version].values())}
            for version in sorted(found, key=version_key, reverse=True)]


def _maintainable(repo_view: Repository) -> bool:
    """Whether the page offers yanking and deleting: the API's right (upload) on a hosted repository, the only
    kind whose packages it yanks or deletes."""
    return repo_view.repository_type == "hosted" and _may(repo_view, access.UPLOAD)


@bp.get("/<repository:repo>/<project>/", defaults={"version": None})
@bp.get("/<repository:repo>/<project>/<version>/")
def published(repo: str, project: str, version: str | None) -> BaseResponse:
    """The project and release URLs flit and hatch print after publishing (PyPI's, under the upload URL):
    the UI's page, which decides who may see it."""
    values = {"version": version} if version is not None else {}
    return redirect(url("ui.project", repo=repo, project=project, **values))


def _endpoints(repo_view: Repository) -> clientsetup.Endpoints:
    try:
        repo_view.upload_target()
        accepts_uploads = True
    except UserError:
        accepts_uploads = False
    root = clientsetup.base_url(request, services().config.server.public_url)
    return clientsetup.endpoints(root, repo_view.name, repo_view.public, accepts_uploads)


def _versions(page: ProjectPage) -> list[dict[str, Any]]:
    """Newest first, each with whether it is yanked (every file yanked) and why."""
    by_version: dict[str, list[DistFile]] = {}
    for dist in page.files:
        by_version.setdefault(dist.version, []).append(dist)
    result = []
    for version in reversed(page.versions):
        files = by_version[version]
        result.append({
            "version": version,
            "yanked": all(dist.yanked for dist in files),
            "reason": next((dist.yanked_reason for dist in files if dist.yanked_reason), ""),
            "upload_time": max((d.upload_time for d in files if d.upload_time is not None), default=None),
        })
    return result


def _chosen_version(page: ProjectPage, wanted: str | None) -> str:
    """The asked version (404 when the project has none such), else what pip would pick; none where the project
    offers no files (PEP 792 quarantine)."""
    if wanted is not None:
        if wanted not in page.versions:
            raise NotFound(f"project {page.name!r} has no version {wanted[:100]!r}")
        return wanted
    return page.latest_version() if page.versions else ""
