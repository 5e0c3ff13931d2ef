"""What a repository's maintainers do in the UI: yank and unyank a release (with a reason) and delete a file,
with upload rights; grant and revoke access, as its admins. Plain forms over the API's service functions and
rights (repository_for); every write is a POST, which crosssite.py guards, whatever the route."""

from __future__ import annotations

from flask import Blueprint, redirect
from werkzeug.wrappers import Response as BaseResponse

from pypilite import access, grants, packages
from pypilite.audit import Actor
from pypilite.errors import BadRequest
from pypilite.web.context import principal, repository_for
from pypilite.web.ui import dress, url
from pypilite.web.wrappers import request

bp = Blueprint("maintainers", __name__)
dress(bp)


def _actor() -> Actor:
    return Actor(principal().name or "-", request.remote_addr or "")


def _field(name: str) -> str:
    value = request.form.get(name, "").strip()
    if not value:
        raise BadRequest(f"the form needs a {name}")
    return value


def _back_to_release(repo: str, project: str, version: str, done: str) -> BaseResponse:
    return redirect(url("ui.project", repo=repo, project=project, version=version, done=done), 303)


@bp.post("/ui/<repo>/<project>/-/yank")
def yank(repo: str, project: str) -> BaseResponse:
    repository = repository_for(repo, access.UPLOAD)
    version = _field("version")
    packages.set_yanked(repository, project, version, True, request.form.get("reason", "").strip(), _actor())
    return _back_to_release(repo, project, version, "yanked")


@bp.post("/ui/<repo>/<project>/-/unyank")
def unyank(repo: str, project: str) -> BaseResponse:
    repository = repository_for(repo, access.UPLOAD)
    version = _field("version")
    packages.set_yanked(repository, project, version, False, "", _actor())
    return _back_to_release(repo, project, version, "unyanked")


@bp.post("/ui/<repo>/<project>/-/delete")
def delete_file(repo: str, project: str) -> BaseResponse:
    """Delete one file; its name can never be used again with other bytes (the tombstone)."""
    repository = repository_for(repo, access.UPLOAD)
    filename = _field("filename")
    if request.form.get("confirm") != "on":
        raise BadRequest(f"tick the box to confirm deleting {filename}: a deleted file's name is never reused")
    packages.delete_file(repository, filename, _actor())
    if repository.project_page(project) is None:  # its last file: the project is gone with it
        return redirect(url("ui.repository", repo=repo, done="deleted"), 303)
    return redirect(url("ui.project", repo=repo, project=project, done="deleted"), 303)


@bp.post("/ui/<repo>/-/access")
def grant(repo: str) -> BaseResponse:
    repository_for(repo, access.ADMIN)
    grants.set_grant(_field("user"), repo, _field("level"), _actor())
    return redirect(url("ui.repository", repo=repo, done="granted", _anchor="access"), 303)


@bp.post("/ui/<repo>/-/access/revoke")
def revoke(repo: str) -> BaseResponse:
    repository_for(repo, access.ADMIN)
    grants.remove_grant(_field("user"), repo, _actor())
    return redirect(url("ui.repository", repo=repo, done="revoked-grant", _anchor="access"), 303)
