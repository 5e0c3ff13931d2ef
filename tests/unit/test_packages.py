"""Repositories and packages through /api/v1: CRUD, projects, yank, delete, the tombstone rule, gc."""

from __future__ import annotations

import pytest

from pypilite import grants, users
from pypilite.audit import Actor
from pypilite.models import Repository
from tests.conftest import Index, basic
from tests.distfactory import sdist_bytes, wheel_bytes

ACTOR = Actor("test", "local")
JSON = "application/vnd.pypi.simple.v1+json"
DEV = basic("dev", "dev-password")


@pytest.fixture
def api(index: Index) -> Index:
    index.run(users.create_user, "dev", "dev-password", ACTOR)
    index.run(grants.set_grant, "dev", "local", "upload", ACTOR)
    for version in ("1.0", "2.0"):
        index.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version))
    index.upload("demo-2.0.tar.gz", sdist_bytes("demo", "2.0"))
    return index


def call(index: Index, method: str, url: str, headers=None, **kwargs):
    return getattr(index.client, method)(url, headers=index.auth if headers is None else headers, **kwargs)


def error(response, status: int, words: str = "") -> None:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/json" and words in response.json["error"]


def test_repository_crud(api: Index) -> None:
    body = {"name": "team", "repository_type": "hosted", "format": "pypi", "public": False}
    created = call(api, "post", "/api/v1/repos", json=body)
    assert created.status_code == 201
    assert created.json == {"name": "team", "repository_type": "hosted", "format": "pypi",
                            "allow_overwrite": False, "public": False, "policy": None}
    assert "team" in [r["name"] for r in call(api, "get", "/api/v1/repos").json["items"]]
    changed = call(api, "patch", "/api/v1/repos/team", json={"allow_overwrite": True})
    assert changed.status_code == 200 and changed.json["allow_overwrite"] is True
    assert call(api, "get", "/api/v1/repos/team").json["allow_overwrite"] is True
    assert call(api, "delete", "/api/v1/repos/team").status_code == 204
    error(call(api, "get", "/api/v1/repos/team"), 404)


def test_a_proxy_sent_back_as_listed_keeps_its_credentials(api: Index) -> None:
    """The API shows remote_url's credentials as ***; a client that PATCHes the object it read back (the
    usual read-modify-write) must not replace the real token with the stars."""
    secret = "http://s3cr3t-token@127.0.0.1:9/simple/"
    assert call(api, "post", "/api/v1/repos", json={"name": "fury", "repository_type": "proxy",
                                                     "remote_url": secret}).status_code == 201
    listed = call(api, "get", "/api/v1/repos/fury").json
    assert listed["remote_url"] == "http://***@127.0.0.1:9/simple/" and listed["upstream"] == {"breaker": "closed"}
    changed = call(api, "patch", "/api/v1/repos/fury", json={**listed, "cache_ttl": 60})
    assert changed.status_code == 200 and changed.json["cache_ttl"] == 60
    assert api.run(lambda: Repository.get(Repository.name == "fury").remote_url) == secret
    replaced = call(api, "patch", "/api/v1/repos/fury", json={"remote_url": "http://other@127.0.0.1:9/simple/"})
    assert replaced.status_code == 200
    assert api.run(lambda: Repository.get(Repository.name == "fury").remote_url) == "http://other@127.0.0.1:9/simple/"


@pytest.mark.parametrize("body, status, words", [
    ({"name": "local", "repository_type": "hosted"}, 409, "already exists"),
    ({"name": "Bad", "repository_type": "hosted"}, 400, "invalid repository name"),
    ({"name": "ui", "repository_type": "hosted"}, 400, "reserved"),
    ({"name": "x", "repository_type": "mirror"}, 400, "repository_type"),
    ({"name": "x"}, 400, "missing field 'repository_type'"),
    ({"name": "x", "repository_type": "hosted", "remote_url": "http://x/"}, 400, "remote_url"),
    ({"name": "x", "repository_type": "proxy", "remote_url": "ftp://x/"}, 400, "remote_url"),
    ({"name": "x", "repository_type": "proxy", "cache_ttl": "10"}, 400, "wrong type"),
    ({"name": "x", "repository_type": "group", "members": ["nope"]}, 400, "does not exist"),
    ({"name": "x", "repository_type": "group", "members": ["local"], "upload_to": "pypi"}, 400, "upload_to"),
    ({"name": "x", "repository_type": "hosted", "format": "npm"}, 400, "format"),
    ({"name": "x", "repository_type": "hosted", "colour": "red"}, 400, "unknown field"),
    ("not an object", 400, "JSON object"),
])
def test_repository_creation_refusals(api: Index, body, status: int, words: str) -> None:
    error(call(api, "post", "/api/v1/repos", json=body), status, words)


@pytest.mark.parametrize("url, body, status, words", [
    ("/api/v1/repos/local", {"repository_type": "proxy"}, 400, "cannot change"),
    ("/api/v1/repos/local", {"name": "other"}, 400, "cannot change"),
    ("/api/v1/repos/local", {"members": ["pypi"]}, 400, "unknown key 'members'"),
    ("/api/v1/repos/all", {"members": ["all"]}, 400, "cannot contain itself"),
    ("/api/v1/repos/nope", {"public": False}, 404, "not found"),
])
def test_repository_change_refusals(api: Index, url: str, body, status: int, words: str) -> None:
    error(call(api, "patch", url, json=body), status, words)


def test_group_cycles_through_another_group_are_refused(api: Index) -> None:
    assert call(api, "post", "/api/v1/repos", json={"name": "outer", "repository_type": "group",
                                                     "members": ["all"]}).status_code == 201
    error(call(api, "patch", "/api/v1/repos/all", json={"members": ["local", "outer"]}), 400, "cannot contain itself")


def test_a_member_cannot_be_deleted_from_under_its_group(api: Index) -> None:
    error(call(api, "delete", "/api/v1/repos/local"), 409, "member of group 'all'")


def test_deleting_a_repository_keeps_shared_blobs(api: Index) -> None:
    assert call(api, "post", "/api/v1/repos", json={"name": "copy", "repository_type": "hosted"}).status_code == 201
    api.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="copy")
    assert _sha256(api, "copy", "demo-1.0-py3-none-any.whl") == _sha256(api, "local", "demo-1.0-py3-none-any.whl")
    assert call(api, "delete", "/api/v1/repos/copy").status_code == 204
    from pypilite.maintenance import check
    report = api.run(check, api.app.extensions["pypilite"].blobs)
    assert report.clean and report.unreferenced == []


def _sha256(api: Index, repo: str, filename: str) -> str:
    shown = call(api, "get", f"/api/v1/repos/{repo}/projects/demo").json
    [digest] = [f["sha256"] for v in shown["versions"] for f in v["files"] if f["filename"] == filename]
    return digest


def test_projects_list_and_show(api: Index) -> None:
    api.upload("zeta-1.0-py3-none-any.whl", wheel_bytes("zeta", "1.0"))
    page = call(api, "get", "/api/v1/repos/local/projects?limit=1").json
    assert page == {"items": [{"name": "demo"}], "next": "demo"}
    assert call(api, "get", "/api/v1/repos/local/projects?limit=1&cursor=demo").json == {
        "items": [{"name": "zeta"}], "next": None}
    shown = call(api, "get", "/api/v1/repos/local/projects/Demo").json
    assert [v["version"] for v in shown["versions"]] == ["1.0", "2.0"]
    [wheel, sdist] = shown["versions"][1]["files"]
    assert (wheel["filename"], wheel["uploader"], sdist["packagetype"]) == ("demo-2.0-py3-none-any.whl", "admin",
                                                                           "sdist")
    assert len(wheel["sha256"]) == 64 and wheel["size"] > 0 and wheel["upload_time"].endswith("Z")
    error(call(api, "get", "/api/v1/repos/local/projects/missing"), 404)
    error(call(api, "get", "/api/v1/repos/local/projects?limit=x"), 400, "limit")


def test_yank_shows_in_both_simple_forms_and_unyank_clears_it(api: Index) -> None:
    url = "/api/v1/repos/local/projects/demo/2.0"
    answer = call(api, "post", url + "/yank", headers=DEV, json={"reason": "broken <build>"})
    assert answer.status_code == 200 and answer.json["yanked"] is True
    files = api.get("/local/simple/demo/", accept=JSON).json["files"]
    assert [f["yanked"] for f in files] == [False, "broken <build>", "broken <build>"]
    html = api.get("/local/simple/demo/", accept="text/html").get_data(as_text=True)
    assert html.count('data-yanked="broken &lt;build&gt;"') == 2
    assert call(api, "post", url + "/unyank", headers=DEV).status_code == 200
    assert all(f["yanked"] is False for f in api.get("/local/simple/demo/", accept=JSON).json["files"])
    assert call(api, "post", url + "/yank", headers=DEV).status_code == 200  # no body: no reason
    assert api.get("/local/simple/demo/", accept=JSON).json["files"][1]["yanked"] is True


def test_delete_a_release_and_the_tombstone_rule(api: Index) -> None:
    assert call(api, "delete", "/api/v1/repos/local/projects/demo/2.0", headers=DEV).status_code == 204
    assert api.get("/local/simple/demo/", accept=JSON).json["versions"] == ["1.0"]
    again = api.upload("demo-2.0.tar.gz", sdist_bytes("demo", "2.0"))
    assert again.status_code == 400 and "already been used" in again.get_data(as_text=True)
    actions = [e["action"] for e in call(api, "get", "/api/v1/admin/audit").json["items"]]
    assert "release.delete" in actions


def test_delete_a_file_and_then_the_whole_project(api: Index) -> None:
    assert call(api, "delete", "/api/v1/repos/local/files/demo-2.0.tar.gz", headers=DEV).status_code == 204
    for version in ("1.0", "2.0"):
        assert call(api, "delete", f"/api/v1/repos/local/projects/demo/{version}", headers=DEV).status_code == 204
    assert api.get("/local/simple/demo/").status_code == 404
    assert api.get("/local/simple/", accept=JSON).json["projects"] == []
    error(call(api, "delete", "/api/v1/repos/local/files/demo-2.0.tar.gz", headers=DEV), 404)


def test_overwrite_repositories_take_deleted_names_back(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "scratch", "repository_type": "hosted", "allow_overwrite": True}],
        "server": {"default_repository": "scratch"}})
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="scratch")
    assert call(index, "delete", "/api/v1/repos/scratch/files/demo-1.0-py3-none-any.whl").status_code == 204
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="scratch").status_code == 200


@pytest.mark.parametrize("method, url, body, status, words", [
    ("post", "/api/v1/repos/pypi/projects/demo/1.0/yank", {}, 400, "only a hosted"),
    ("post", "/api/v1/repos/all/projects/demo/1.0/yank", {}, 400, "only a hosted"),
    ("post", "/api/v1/repos/local/projects/demo/9.9/yank", {}, 404, "not found"),
    ("post", "/api/v1/repos/local/projects/demo/not-a-version/yank", {}, 400, "invalid version"),
    ("post", "/api/v1/repos/local/projects/demo/1.0/yank", {"reason": 5}, 400, "wrong type"),
    ("post", "/api/v1/repos/local/projects/demo/1.0/yank", {"why": "x"}, 400, "unknown field"),
    ("delete", "/api/v1/repos/local/projects/-bad-/1.0", None, 400, "invalid project name"),
    ("delete", "/api/v1/repos/nope/projects/demo/1.0", None, 404, "repository 'nope'"),
])
def test_package_refusals(api: Index, method: str, url: str, body, status: int, words: str) -> None:
    kwargs = {"json": body} if body is not None else {}
    error(call(api, method, url, **kwargs), status, words)


@pytest.mark.parametrize("headers, status", [({}, 401), (basic("reader", "reader-password"), 403)])
def test_package_changes_need_upload_rights(api: Index, headers, status: int) -> None:
    api.run(users.create_user, "reader", "reader-password", ACTOR)
    api.run(grants.set_grant, "reader", "local", "read", ACTOR)
    for method, url in (("post", "/api/v1/repos/local/projects/demo/1.0/yank"),
                        ("delete", "/api/v1/repos/local/projects/demo/1.0"),
                        ("delete", "/api/v1/repos/local/files/demo-2.0.tar.gz")):
        error(call(api, method, url, headers=headers), status)


def test_check_and_gc(api: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    from pypilite import maintenance
    from pypilite.maintenance import check
    blobs = api.app.extensions["pypilite"].blobs
    assert api.run(check, blobs).clean
    call(api, "delete", "/api/v1/repos/local/projects/demo/1.0")
    report = api.run(check, blobs, gc=True)
    assert len(report.unreferenced) == 2 and report.removed == 0  # too young to collect
    assert {path.stat().st_mtime for path in blobs.root.glob("*/*/*")} == {0}  # so the age is the ctime
    monkeypatch.setattr(maintenance, "GC_GRACE_SECONDS", -60)  # an hour later
    report = api.run(check, blobs, gc=True)
    assert report.removed == 2 and api.run(check, blobs).unreferenced == []
    victim = next(blobs.root.glob("*/*/*"))
    victim.write_bytes(b"rot")
    assert api.run(check, blobs).corrupt
    victim.unlink()
    assert api.run(check, blobs).missing
