"""Groups in-process: the guard, pass-through (also when the upstream fails), nesting, and configuration."""

from __future__ import annotations

import re
from collections.abc import Iterator
from urllib.parse import urljoin

import pytest

from pypilite import models
from pypilite.config import ConfigError, build_config
from pypilite.repositories.group import GroupRepository
from tests.conftest import Index
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def upstream(tmp_path) -> Iterator[Upstream]:
    server = Upstream(tmp_path / "up", [wheel("tool", "9.0"), wheel("only-up", "1.0")], json_api=True).start()
    yield server
    server.stop()


def group_index(tmp_path, upstream: Upstream, pass_through=()) -> Index:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1},
        {"name": "inner", "repository_type": "group", "members": ["local"], "upload_to": "local"},
        {"name": "all", "repository_type": "group", "members": ["inner", "pypi"], "upload_to": "local",
         "pass_through": list(pass_through)}]})
    assert index.upload("tool-1.0-py3-none-any.whl", wheel_bytes("tool", "1.0")).status_code == 200
    return index


def versions(index: Index, url: str) -> list[str]:
    return index.get(url, accept=JSON).json["versions"]


def test_guard_through_a_nested_group(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    assert versions(index, "/all/simple/tool/") == ["1.0"]
    assert upstream.log.count("/simple/tool/") == 0  # the upstream is not even asked
    assert versions(index, "/all/simple/only-up/") == ["1.0"]
    assert [p["name"] for p in index.get("/all/simple/", accept=JSON).json["projects"]] == ["only-up", "tool"]


def test_pass_through_merges_and_survives_a_failing_upstream(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream, pass_through=["Tool"])
    assert versions(index, "/all/simple/tool/") == ["1.0", "9.0"]
    upstream.stop()
    from pypilite.models import UpstreamPage
    index.run(lambda: UpstreamPage.delete().execute())  # forget the cache: the upstream is now simply down
    response = index.get("/all/simple/tool/", accept=JSON)
    assert response.status_code == 200 and response.json["versions"] == ["1.0"]
    assert "not cached" in response.headers["X-Pypilite-Stale"]


def test_upload_to_a_nested_group_lands_in_its_upload_to(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    assert index.upload("fresh-1.0-py3-none-any.whl", wheel_bytes("fresh", "1.0"), repo="inner").status_code == 200
    assert versions(index, "/local/simple/fresh/") == ["1.0"]


def test_group_without_upload_to_refuses_uploads(tmp_path, upstream) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "readonly", "repository_type": "group", "members": ["local"]}],
        "server": {"default_repository": "local"}})
    response = index.upload("x-1.0-py3-none-any.whl", wheel_bytes("x", "1.0"), repo="readonly")
    assert response.status_code == 400 and "upload to a hosted repository" in response.get_data(as_text=True)


def test_pass_through_names_are_normalized_and_checked() -> None:
    entry = {"name": "g", "repository_type": "group", "members": [], "pass_through": ["Foo_Bar", "foo.bar"]}
    assert build_config({"repository": [entry], "server": {"default_repository": "g"}}, {}).repositories[0] \
        .pass_through == ("foo-bar",)
    with pytest.raises(ConfigError, match="pass_through"):
        build_config({"repository": [{**entry, "pass_through": ["-bad-"]}]}, {})
    with pytest.raises(ConfigError, match="pass_through"):
        build_config({"repository": [{**entry, "pass_through": "foo"}]}, {})


def group(index: Index, name: str = "all", principal=None):
    return index.run(lambda: index.app.extensions["pypilite"].repositories.get(name, principal))


@pytest.mark.parametrize("pass_through", [(), ("tool",)])
@pytest.mark.parametrize("project", ["tool", "only-up", "nowhere"])
def test_a_group_knows_its_page_etag_without_building_the_page(tmp_path, upstream, pass_through, project) -> None:
    index = group_index(tmp_path, upstream, pass_through)
    asks_upstream = project != "tool" or bool(pass_through)  # the guard answers "tool" from the hosted member
    # Before the upstream's answer is cached, the group cannot know a page that depends on it.
    assert (index.run(lambda: group(index).page_tag(project)) is None) == asks_upstream
    built = index.run(lambda: group(index).project_page(project))
    known = index.run(lambda: group(index).page_tag(project))
    assert known.etag == (built.etag if built is not None else None)
    # What depends on the upstream's answer holds only as long as that answer is fresh.
    assert (known.until is not None) == asks_upstream


def test_a_repeated_group_page_is_neither_built_nor_merged_again(tmp_path, upstream, monkeypatch) -> None:
    index = group_index(tmp_path, upstream, pass_through=["tool"])
    first = index.get("/all/simple/tool/", accept=JSON)
    assert index.get("/all/simple/nowhere/").status_code == 404
    monkeypatch.setattr(GroupRepository, "project_page", lambda *_: pytest.fail("the page was built again"))
    again = index.get("/all/simple/tool/", accept=JSON)
    assert again.status_code == 200 and again.data == first.data and again.headers["ETag"] == first.headers["ETag"]
    assert index.get("/all/simple/tool/", headers={"If-None-Match": first.headers["ETag"]},
                     accept=JSON).status_code == 304
    assert index.get("/all/simple/nowhere/").status_code == 404  # the upstream's 404 is remembered: no build


def test_a_change_in_any_member_is_a_new_group_page(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream, pass_through=["tool"])
    before = index.get("/all/simple/tool/", accept=JSON)
    assert index.upload("tool-2.0-py3-none-any.whl", wheel_bytes("tool", "2.0")).status_code == 200
    after = index.get("/all/simple/tool/", accept=JSON)
    assert after.json["versions"] == ["1.0", "2.0", "9.0"] and after.headers["ETag"] != before.headers["ETag"]


def test_readers_who_see_different_members_never_share_a_group_page(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "open", "repository_type": "hosted"},
        {"name": "all", "repository_type": "group", "members": ["team", "open"], "upload_to": "open",
         "pass_through": ["shared"]}]})
    index.upload("shared-1.0-py3-none-any.whl", wheel_bytes("shared", "1.0"), repo="team")
    index.upload("shared-2.0-py3-none-any.whl", wheel_bytes("shared", "2.0"), repo="open")
    admin = index.get("/all/simple/shared/", accept=JSON, headers=index.auth)
    assert admin.json["versions"] == ["1.0", "2.0"]
    anonymous = index.get("/all/simple/shared/", accept=JSON)
    assert anonymous.json["versions"] == ["2.0"] and anonymous.headers["ETag"] != admin.headers["ETag"]
    assert index.get("/all/simple/shared/", accept=JSON,
                     headers={"If-None-Match": admin.headers["ETag"]}).status_code == 200


def test_a_repository_setting_changed_elsewhere_applies_to_the_next_request(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    assert index.get("/local/simple/tool/").status_code == 200
    # Another worker (or the CLI) changes the row: this process's kept copy must not be served again.
    index.run(lambda: models.Repository.update(public=False).where(models.Repository.name == "local").execute())
    assert index.get("/local/simple/tool/").status_code == 401
    assert index.get("/all/simple/tool/").status_code == 404


# --- file URLs under the group's path ----------------------------------------------------------------------

def file_urls(index: Index, page: str, **kwargs) -> dict[str, str]:
    """Each file's absolute path, by filename, as the page at `page` links it."""
    files = index.get(page, accept=JSON, **kwargs).json["files"]
    return {f["filename"]: urljoin(page, f["url"]).split("#")[0] for f in files}


def test_a_group_serves_its_files_under_its_own_path(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    local = file_urls(index, "/all/simple/tool/")["tool-1.0-py3-none-any.whl"]
    proxied = file_urls(index, "/all/simple/only-up/")["only_up-1.0-py3-none-any.whl"]
    assert local.startswith("/all/files/local/") and proxied.startswith("/all/files/pypi/")
    assert file_urls(index, "/simple/tool/")["tool-1.0-py3-none-any.whl"] == local.replace("/all/", "/simple/")
    for url in (local, f"{local}.metadata", proxied, local.replace("/all/", "/simple/")):
        response = index.get(url)
        assert response.status_code == 200 and response.headers["Cache-Control"].startswith("public")
    assert index.get(local.replace("/all/", "/inner/")).status_code == 200  # a nested group's own path


def test_a_group_url_serves_nothing_its_pages_do_not_list(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    hidden = file_urls(index, "/pypi/simple/tool/")["tool-9.0-py3-none-any.whl"]
    local = file_urls(index, "/all/simple/tool/")["tool-1.0-py3-none-any.whl"]
    file_urls(index, "/all/simple/only-up/")
    refused = [
        hidden.replace("/pypi/files/", "/all/files/"),  # the guard: a hosted member holds the name
        hidden.replace("/pypi/files/", "/all/files/") + ".metadata",
        local.replace("/all/files/local/", "/all/files/inner/"),  # a member is named by the repository holding it
        local.replace("/all/files/local/", "/all/files/nowhere/"),
        local.replace("/all/files/", "/pypi/files/"),  # a proxy lists only its own files
        local.replace("/all/files/", "/inner/files/").replace("/local/", "/pypi/"),  # inner does not hold pypi
        local.replace("tool-1.0-py3-none-any.whl", "tool-1.0-py3-none-any.egg"),
        local.replace("tool-1.0", "only_up-1.0"),
        re.sub(r"/[0-9a-f]{64}/", "/" + "0" * 64 + "/", local),
    ]
    for url in refused:
        response = index.get(url, headers=index.auth)
        assert response.status_code == 404 and response.mimetype == "text/plain", url
    assert index.get(hidden).status_code == 200  # under the proxy's own path, the proxy lists it


def test_pass_through_serves_every_members_files_under_the_group(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream, pass_through=["tool"])
    urls = file_urls(index, "/all/simple/tool/")
    assert urls["tool-9.0-py3-none-any.whl"].startswith("/all/files/pypi/")
    assert all(index.get(url).status_code == 200 for url in urls.values())


def test_a_private_member_decides_for_its_files_as_it_did_for_the_page(tmp_path, upstream) -> None:
    """Anonymous readers of the public group do not see the private member, nor (the guard counting it) the
    upstream's namesake of its project; the group's own permission decides who reads under its path."""
    index = Index(tmp_path / "data", {"repository": [
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1},
        {"name": "all", "repository_type": "group", "members": ["team", "pypi"]},
        {"name": "closed", "repository_type": "group", "members": ["pypi"], "public": False}]})
    index.upload("tool-1.0-py3-none-any.whl", wheel_bytes("tool", "1.0"), repo="team")
    team = file_urls(index, "/all/simple/tool/", headers=index.auth)["tool-1.0-py3-none-any.whl"]
    assert index.get(team, headers=index.auth).headers["Cache-Control"].startswith("private")
    assert index.get(team).status_code == 404
    upstream_tool = file_urls(index, "/pypi/simple/tool/")["tool-9.0-py3-none-any.whl"]
    assert index.get(upstream_tool.replace("/pypi/files/", "/all/files/")).status_code == 404
    only_up = file_urls(index, "/pypi/simple/only-up/")["only_up-1.0-py3-none-any.whl"]
    assert index.get(only_up).status_code == 200
    refused = index.get(only_up.replace("/pypi/files/", "/closed/files/"))
    assert refused.status_code == 401 and "WWW-Authenticate" in refused.headers
    allowed = index.get(only_up.replace("/pypi/files/", "/closed/files/"), headers=index.auth)
    assert allowed.status_code == 200 and allowed.headers["Cache-Control"].startswith("private")


def test_flatten_walks_members_depth_first_each_once_through_cycles() -> None:
    """The one walk every place that looks through a group takes: nested groups in their place, a repository
    reached twice counted where it is first reached, a cycle walked once."""
    from pypilite.groups import flatten

    links = {"outer": ["a", "inner", "b", "a"], "inner": ["c", "b", "outer"], "empty": []}
    assert flatten(links["outer"], links.get, key=str) == ["a", "c", "b"]
    assert flatten(["empty", "d"], links.get, key=str) == ["d"]


@pytest.mark.parametrize("pass_through", [(), ("Tool",)])
def test_a_listing_outlines_pages_as_one_page_request_does(tmp_path, upstream, pass_through) -> None:
    """outlines (the UI's listing) chooses and merges by the guard exactly as cached_page (the UI's project
    page) does: hosted shadowing, pass-through, a private member's name, a quarantined project, no page."""
    from pypilite.auth import ANONYMOUS
    from pypilite.repositories.base import outline

    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1},
        {"name": "inner", "repository_type": "group", "members": ["team", "local"], "upload_to": "local"},
        {"name": "all", "repository_type": "group", "members": ["inner", "pypi"], "upload_to": "local",
         "pass_through": list(pass_through)}]})
    for name, version, repo in (("tool", "1.0", "local"), ("only-up", "0.1", "team"), ("closed", "1.0", "local")):
        filename = f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
        assert index.upload(filename, wheel_bytes(name, version), repo=repo).status_code == 200
    assert index.client.put("/api/v1/repos/local/projects/closed/status", json={"status": "quarantined"},
                            headers=index.auth).status_code == 200
    for project in ("tool", "only-up"):
        assert index.get(f"/pypi/simple/{project}/", accept=JSON).status_code == 200
    names = ["tool", "only-up", "closed", "nowhere"]
    repositories = index.app.extensions["pypilite"].repositories
    for who in (ANONYMOUS, None):  # the private member unseen, and seen
        group = index.run(repositories.get, "all", who)
        pages = {name: page for name in names if (page := index.run(group.cached_page, name)) is not None}
        assert "tool" in pages and ("only-up" in pages) == (who is None)
        assert index.run(group.outlines, names) == {name: outline(page) for name, page in pages.items()}
        for leaf in group.all_leaves:  # each kind's own outlines, read without building pages
            assert index.run(leaf.outlines, names) == {
                name: outline(page) for name in names if (page := index.run(leaf.cached_page, name)) is not None}
