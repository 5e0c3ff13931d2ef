"""Proxy behaviour in-process against a loopback upstream: freshness, negative caching, failures, what is
offered and what is not."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import peewee as pw
import pytest

from pypilite import models
from pypilite.models import Project
from pypilite.repositories.proxy import _insert_files
from tests.conftest import Index
from tests.upstream import Dist, Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def upstream(tmp_path) -> Iterator[Upstream]:
    dists = [wheel("demo", "1.0"), wheel("demo", "2.0"),
             Dist("demo", "demo-0.1.egg", b"an egg"), wheel("other", "1.0")]
    server = Upstream(tmp_path / "upstream", dists, json_api=True).start()
    yield server
    server.stop()


def proxy_index(tmp_path, upstream: Upstream, **settings) -> Index:
    repository = {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1,
                  **settings}
    return Index(tmp_path / "data", {"repository": [{"name": "local", "repository_type": "hosted"}, repository],
                                     "server": {"default_repository": "pypi"}})


def test_offers_only_files_it_can_verify_and_read(tmp_path, upstream) -> None:
    upstream.dists.append(Dist("demo", "demo-3.0-py3-none-any.whl", b"no hash declared"))
    index = proxy_index(tmp_path, upstream)
    original = upstream.json_page

    def without_hash(project: str) -> bytes | None:
        import json
        page = json.loads(original(project))
        for entry in page["files"]:
            if entry["filename"] == "demo-3.0-py3-none-any.whl":
                entry["hashes"] = {"md5": "0" * 32}
        return json.dumps(page).encode()

    upstream.json_page = without_hash
    files = [f["filename"] for f in index.get("/pypi/simple/demo/", accept=JSON).json["files"]]
    assert files == ["demo-1.0-py3-none-any.whl", "demo-2.0-py3-none-any.whl"]


def test_upstream_404_is_remembered_briefly(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    assert index.get("/pypi/simple/missing/").status_code == 404
    assert index.get("/pypi/simple/missing/").status_code == 404
    assert upstream.log.count("/simple/missing/") == 1


def test_a_changed_upstream_page_shows_after_the_ttl_and_an_unchanged_one_keeps_its_etag(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream, cache_ttl=0)
    first = index.get("/pypi/simple/demo/", accept=JSON)
    again = index.get("/pypi/simple/demo/", accept=JSON, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304
    assert "If-None-Match" in upstream.log.conditional("/simple/demo/")[-1]
    upstream.dists.append(wheel("demo", "3.0"))
    changed = index.get("/pypi/simple/demo/", accept=JSON, headers={"If-None-Match": first.headers["ETag"]})
    assert changed.status_code == 200 and changed.json["versions"] == ["1.0", "2.0", "3.0"]


def test_a_long_page_keeps_every_file_whole(tmp_path, upstream) -> None:
    """New file rows go in with one statement run once per row: a page of many files keeps each one with its own
    hashes, size, upload time and requires-python, in the right columns, and a later page adds only what is new."""
    upstream.dists.extend(wheel("many", f"1.{n}", requires_python=f">=3.{n % 10}") for n in range(150))
    index = proxy_index(tmp_path, upstream, cache_ttl=0)

    def listed() -> dict[str, tuple[object, ...]]:
        page = index.get("/pypi/simple/many/", accept=JSON).json
        return {f["filename"]: (f["hashes"]["sha256"], f["core-metadata"]["sha256"], f["size"], f["upload-time"],
                                f["requires-python"], f["yanked"]) for f in page["files"]}

    def offered() -> dict[str, tuple[object, ...]]:
        return {d.filename: (d.sha256, hashlib.sha256(d.metadata).hexdigest(), len(d.data),
                             "2024-05-06T07:08:09.123456Z", d.requires_python or None, False)
                for d in upstream.dists if d.project == "many"}

    assert listed() == offered() and len(offered()) == 150
    upstream.dists.append(wheel("many", "2.0"))
    assert listed() == offered() and len(offered()) == 151


def test_a_failed_row_insert_raises_peewee_errors(tmp_path, upstream) -> None:
    """The rows go in through peewee's execute_sql, so a driver's error reaches write_transaction as peewee's own
    (which is how SQLite's "database or disk is full" becomes a 507), not as a bare sqlite3 error."""
    index = proxy_index(tmp_path, upstream)
    row = {"filename": "demo-1.0-py3-none-any.whl", "version": "1.0", "packagetype": "bdist_wheel",
           "sha256": "0" * 64, "size": 1, "upload_time": None, "requires_python": "", "yanked": None,
           "yanked_reason": "", "metadata_sha256": None, "origin_url": "", "uploader": "",
           "info_sha256": None, "provenance_url": ""}

    def insert() -> None:
        project = Project.create(repository=models.Repository.get(models.Repository.name == "pypi").id,
                                 name="demo", display_name="demo")
        _insert_files([row | {"project": project.id}])  # "yanked" must not be NULL

    with pytest.raises(pw.IntegrityError):
        index.run(insert)


def test_a_file_gone_upstream_leaves_the_page(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream, cache_ttl=0)
    assert len(index.get("/pypi/simple/demo/", accept=JSON).json["files"]) == 2
    upstream.dists[:] = [d for d in upstream.dists if d.filename != "demo-1.0-py3-none-any.whl"]
    assert [f["filename"] for f in index.get("/pypi/simple/demo/", accept=JSON).json["files"]] == [
        "demo-2.0-py3-none-any.whl"]


@pytest.mark.parametrize("trouble, status", [("fail", 502), ("slow", 504), ("down", 502)])
def test_failures_without_a_cache_are_one_line_502_or_504(tmp_path, upstream, trouble: str, status: int) -> None:
    index = proxy_index(tmp_path, upstream)
    if trouble == "fail":
        upstream.fail_status = 503
    elif trouble == "slow":
        upstream.delay = 2.5
    else:
        upstream.stop()
    response = index.get("/pypi/simple/demo/")
    assert response.status_code == status
    assert response.get_data(as_text=True).count("\n") == 1
    upstream.delay = 0


@pytest.mark.parametrize("trouble", ["fail", "slow"])
def test_failures_with_a_cache_serve_it_marked_stale(tmp_path, upstream, trouble: str) -> None:
    index = proxy_index(tmp_path, upstream, cache_ttl=0)
    fresh = index.get("/pypi/simple/demo/", accept=JSON)
    assert "X-Pypilite-Stale" not in fresh.headers
    if trouble == "fail":
        upstream.fail_status = 500
    else:
        upstream.delay = 2.5
    stale = index.get("/pypi/simple/demo/", accept=JSON)
    assert stale.status_code == 200 and stale.json == fresh.json
    assert "serving the page fetched at" in stale.headers["X-Pypilite-Stale"]
    upstream.delay = 0


def test_downloaded_files_are_kept_and_served_locally(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    file = index.get("/pypi/simple/demo/", accept=JSON).json["files"][0]
    url = "/" + file["url"].lstrip("./")
    first = index.get(url)
    dist = next(d for d in upstream.dists if d.filename == file["filename"])
    assert first.data == dist.data and first.headers["Content-Length"] == str(len(dist.data))
    upstream.stop()
    again = index.get(url)
    assert again.status_code == 200 and hashlib.sha256(again.data).hexdigest() == dist.sha256
    assert index.get(url, headers={"Range": "bytes=0-3"}).status_code == 206


def test_upstream_trouble_on_a_file_is_502(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    file = index.get("/pypi/simple/demo/", accept=JSON).json["files"][0]
    upstream.fail_status = 500
    response = index.get("/" + file["url"].lstrip("./"))
    assert response.status_code == 502
    assert list((index.data_dir / "tmp").glob("upload-*")) == []


def test_root_lists_what_is_cached(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    assert index.get("/pypi/simple/", accept=JSON).json["projects"] == []
    index.get("/pypi/simple/other/")
    assert index.get("/pypi/simple/", accept=JSON).json["projects"] == [{"name": "other"}]


def test_refresh_and_forget_services(tmp_path, upstream) -> None:
    from pypilite.audit import Actor
    from pypilite.errors import UserError
    from pypilite.repository_admin import forget_cached_project, refresh_cached_project
    index = proxy_index(tmp_path, upstream)
    repositories = index.app.extensions["pypilite"].repositories
    actor = Actor("test")
    assert index.run(refresh_cached_project, repositories, "pypi", "Demo", actor) == 2
    index.run(forget_cached_project, repositories, "pypi", "demo", actor)
    with pytest.raises(UserError, match="not cached"):
        index.run(forget_cached_project, repositories, "pypi", "demo", actor)
    with pytest.raises(UserError, match="not a proxy"):
        index.run(refresh_cached_project, repositories, "local", "demo", actor)
    upstream.stop()
    with pytest.raises(UserError) as failed:
        index.run(refresh_cached_project, repositories, "pypi", "demo", actor)
    assert failed.value.status == 502
