"""The tree of links nginx sends public files from: made on an anonymous yes, retired by every write that
may take a yes back, never left standing after such a write commits (see pypilite/publictree.py). The live
test with a real nginx is in tests/integration/test_nginx.py."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import pytest

from pypilite import models
from pypilite.locks import FileLock
from pypilite.models import write_transaction
from pypilite.publictree import CURRENT, LOCK_NAME, PublicTree
from tests.conftest import Index, call
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
LOCATION = "/_pypilite_blobs/"
URL_PATH = f"files/local/{'a' * 64}/demo-1.0-py3-none-any.whl"


@pytest.fixture
def tree(tmp_path: Path) -> PublicTree:
    return PublicTree(tmp_path / "data")


@pytest.fixture
def blob(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "blobs" / "blob"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"the bytes")
    return path


def retired(tree: PublicTree) -> None:
    """What a committing write does around its commit."""
    tree.retire().release()
    tree.sweep()


# --- the tree on its own -----------------------------------------------------------------------------------

def test_a_yes_becomes_a_hard_link_under_the_url(tree: PublicTree, blob: Path) -> None:
    assert tree.publish(URL_PATH, blob, lambda: True)
    link = tree.current / URL_PATH
    assert link.read_bytes() == b"the bytes" and os.path.samefile(link, blob)
    asked = []
    assert tree.publish(URL_PATH, blob, lambda: asked.append(1) or True)  # already there: nothing asked
    assert asked == []


def test_a_no_asked_again_under_the_lock_makes_no_link(tree: PublicTree, blob: Path) -> None:
    assert not tree.publish(URL_PATH, blob, lambda: False)
    assert not (tree.current / URL_PATH).exists()


def test_retiring_empties_the_tree_and_removes_the_old_generation(tree: PublicTree, blob: Path) -> None:
    tree.publish(URL_PATH, blob, lambda: True)
    first = os.readlink(tree.current)
    retired(tree)
    assert os.readlink(tree.current) != first and not (tree.current / URL_PATH).exists()
    assert sorted(p.name for p in tree.root.iterdir()) == sorted([CURRENT, os.readlink(tree.current)])
    assert blob.read_bytes() == b"the bytes"  # a link goes, the blob stays
    assert tree.publish(URL_PATH, blob, lambda: True) and (tree.current / URL_PATH).is_file()


def test_retiring_without_a_tree_makes_none(tree: PublicTree) -> None:
    retired(tree)
    assert not tree.root.exists()


def test_no_link_is_made_while_a_write_holds_the_tree(tree: PublicTree, blob: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """A writer holds the lock from its swap to after its commit; a download then goes without a link
    rather than link what the commit may have taken back."""
    monkeypatch.setattr("pypilite.publictree.PUBLISH_WAIT", 0.1)
    tree.publish(URL_PATH, blob, lambda: True)
    lock = tree.retire()
    try:
        outcome = []
        worker = threading.Thread(target=lambda: outcome.append(tree.publish(URL_PATH, blob, lambda: True)))
        worker.start()
        worker.join()
        assert outcome == [False] and not (tree.current / URL_PATH).exists()
    finally:
        lock.release()


def test_a_write_that_cannot_retire_the_tree_fails_whole(accel: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    """A process stuck holding the tree's lock: the deletion is refused, and the file stays listed and linked."""
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    monkeypatch.setattr("pypilite.publictree.RETIRE_WAIT", 0.1)
    with FileLock(accel.data_dir / "locks", LOCK_NAME).acquire(1):  # held, as by a stuck process
        refused = accel.client.delete("/api/v1/repos/local/files/demo-1.0-py3-none-any.whl", headers=accel.auth)
    assert refused.status_code == 503 and "public file tree" in refused.json["error"]
    assert linked(accel, url_path) and accel.get(f"/{url_path}").status_code == 200


def test_a_current_that_is_not_a_generation_is_removed_rather_than_kept(tree: PublicTree, blob: Path) -> None:
    (tree.current / "files").mkdir(parents=True)  # someone made `current` a plain directory
    (tree.current / "files" / "stale").write_bytes(b"old")
    retired(tree)
    assert not (tree.current / "files" / "stale").exists()


@pytest.mark.parametrize("url_path", ["../blobs/x", "/etc/passwd", "files//x", "files/./x", "files/x/..", "a\0b"])
def test_paths_that_leave_the_tree_are_refused(tree: PublicTree, blob: Path, url_path: str) -> None:
    with pytest.raises(ValueError):
        tree.publish(url_path, blob, lambda: True)


def test_a_link_that_cannot_be_made_costs_only_the_shortcut(tree: PublicTree, tmp_path: Path) -> None:
    assert not tree.publish(URL_PATH, tmp_path / "no-such-blob", lambda: True)


# --- writes retire it --------------------------------------------------------------------------------------

@pytest.fixture
def accel(tmp_path: Path) -> Index:
    return Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "team", "repository_type": "hosted", "public": False}]})


def uploaded(index: Index, project: str, version: str, repo: str = "local") -> str:
    """The file's URL path, after an upload that must succeed."""
    data = wheel_bytes(project, version)
    filename = f"{project}-{version}-py3-none-any.whl"
    assert index.upload(filename, data, repo=repo).status_code == 200
    return f"files/{repo}/{hashlib.sha256(data).hexdigest()}/{filename}"


def linked(index: Index, url_path: str) -> bool:
    return (index.data_dir / "public" / CURRENT / url_path).is_file()


def test_an_anonymous_yes_links_the_file_and_its_metadata(accel: Index) -> None:
    url_path = uploaded(accel, "demo", "1.0")
    response = accel.get(f"/{url_path}")
    assert response.status_code == 200 and "X-Accel-Redirect" in response.headers
    link = accel.data_dir / "public" / CURRENT / url_path
    blob = accel.data_dir / "blobs" / response.headers["X-Accel-Redirect"].removeprefix(LOCATION)
    assert os.path.samefile(link, blob)
    metadata = accel.get(f"/{url_path}.metadata")
    assert (link.parent / f"{link.name}.metadata").read_bytes().startswith(b"Metadata-Version")
    assert metadata.status_code == 200


def test_what_needs_credentials_is_never_linked(accel: Index) -> None:
    private = uploaded(accel, "secret", "1.0", repo="team")
    assert accel.get(f"/{private}", headers=accel.auth).status_code == 200
    assert accel.get(f"/{private}").status_code == 401
    public = uploaded(accel, "demo", "1.0")
    assert accel.get(f"/{public}", headers=accel.auth).status_code == 200  # asked with credentials: no link
    assert not linked(accel, private) and not linked(accel, public)


def test_without_x_accel_redirect_there_is_no_tree(index: Index) -> None:
    url_path = uploaded(index, "demo", "1.0")
    assert index.get(f"/{url_path}").status_code == 200
    assert not (index.data_dir / "public").exists()


def test_a_new_file_keeps_the_tree_and_a_new_project_retires_it(accel: Index) -> None:
    """A new project hides its namesakes in a group's other members, whose URLs under the group it links."""
    first = uploaded(accel, "demo", "1.0")
    accel.get(f"/{first}")
    second = uploaded(accel, "demo", "2.0")
    assert linked(accel, first)
    accel.get(f"/{second}")
    assert linked(accel, second)
    uploaded(accel, "other", "1.0")
    assert not linked(accel, first) and accel.get(f"/{first}").status_code == 200


def test_a_group_url_is_linked_until_the_guard_hides_its_file(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "up", [wheel("tool", "9.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
            {"name": "local", "repository_type": "hosted"},
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url},
            {"name": "all", "repository_type": "group", "members": ["local", "up"]}]})
        file = index.get("/all/simple/tool/", accept=JSON).json["files"][0]
        url_path = f"all/files/up/{file['hashes']['sha256']}/{file['filename']}"
        assert file["url"] == f"../../files/up/{file['hashes']['sha256']}/{file['filename']}"
        index.get(f"/{url_path}")  # fetched and streamed: nothing to link yet
        assert index.get(f"/{url_path}").status_code == 200 and linked(index, url_path)
        uploaded(index, "tool", "1.0")
        assert not linked(index, url_path) and index.get(f"/{url_path}").status_code == 404
        assert index.get(f"/up/files/up/{file['hashes']['sha256']}/{file['filename']}").status_code == 200
    finally:
        upstream.stop()


def test_a_yank_keeps_the_tree(accel: Index) -> None:
    """pip and uv skip a yanked release unless it is pinned, and then they download it."""
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    yanked = accel.client.post("/api/v1/repos/local/projects/demo/1.0/yank", json={"reason": "broken"},
                               headers=accel.auth)
    assert yanked.status_code in (200, 204) and linked(accel, url_path)


def test_an_overwrite_retires_the_tree(tmp_path: Path) -> None:
    index = Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
        {"name": "local", "repository_type": "hosted", "allow_overwrite": True}]})
    first = uploaded(index, "demo", "1.0")
    index.get(f"/{first}")
    again = wheel_bytes("demo", "1.0", payload=b"other bytes")
    assert index.upload("demo-1.0-py3-none-any.whl", again).status_code == 200
    assert not linked(index, first) and index.get(f"/{first}").status_code == 404


def test_a_refused_upload_keeps_the_tree(accel: Index) -> None:
    first = uploaded(accel, "demo", "1.0")
    accel.get(f"/{first}")
    clash = accel.upload("demo-1.0-py3-none-any.whl", b"PK other bytes entirely")
    assert clash.status_code in (400, 409)
    assert linked(accel, first)


@pytest.mark.parametrize("revoke", [
    lambda index: index.client.delete("/api/v1/repos/local/files/demo-1.0-py3-none-any.whl", headers=index.auth),
    lambda index: index.client.delete("/api/v1/repos/local/projects/demo/1.0", headers=index.auth),
    lambda index: index.client.patch("/api/v1/repos/local", json={"public": False}, headers=index.auth),
    lambda index: index.client.delete("/api/v1/repos/local", headers=index.auth),
], ids=["file deleted", "release deleted", "repository made private", "repository deleted"])
def test_taking_a_file_back_retires_the_tree_before_the_next_download(accel: Index, revoke) -> None:
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    assert linked(accel, url_path)
    assert revoke(accel).status_code in (200, 204)
    assert not linked(accel, url_path)
    assert accel.get(f"/{url_path}").status_code in (401, 404)
    assert not linked(accel, url_path)
    assert [p.name for p in (accel.data_dir / "public").iterdir() if p.name != CURRENT] == [
        os.readlink(accel.data_dir / "public" / CURRENT)]  # the retired generation is gone from the disk


def test_a_group_member_leaving_retires_the_tree(tmp_path: Path) -> None:
    index = Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "all", "repository_type": "group", "members": ["local"]}]})
    old_path = uploaded(index, "demo", "1.0")
    url_path = f"all/{old_path}"  # what the group's page links
    assert index.get(f"/{url_path}").status_code == 200 and linked(index, url_path)
    # Old pages named the member holding a file, never a group: a group's name there finds nothing.
    assert index.get(f"/{old_path.replace('files/local/', 'files/all/')}").status_code == 404
    changed = index.client.patch("/api/v1/repos/all", json={"members": []}, headers=index.auth)
    assert changed.status_code == 200
    assert not linked(index, url_path) and index.get(f"/{url_path}").status_code == 404


def test_a_start_trusts_no_link_made_before(accel: Index, tmp_path: Path, capsys) -> None:
    """A backup copied back into place, an older pypilite, a hand edit: nothing tells at start, so even a
    command that only reads begins by retiring the tree (every command and worker starts the same way)."""
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    config = tmp_path / "cli.toml"
    config.write_text(f'[storage]\ndata_dir = "{accel.data_dir}"\n[[repository]]\nname = "local"\n'
                      'repository_type = "hosted"\n')
    assert call(capsys, "user", "list", "--config", str(config))[0] == 0
    assert not linked(accel, url_path)
    assert accel.get(f"/{url_path}").status_code == 200 and linked(accel, url_path)


def test_users_tokens_and_grants_keep_the_tree(accel: Index) -> None:
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    assert accel.client.post("/api/v1/users", json={"name": "alice", "password": "a long password 1"},
                             headers=accel.auth).status_code == 201
    assert accel.client.put("/api/v1/repos/team/permissions/alice", json={"level": "read"},
                            headers=accel.auth).status_code in (200, 201, 204)
    assert accel.client.post("/api/v1/tokens", json={"user": "alice"}, headers=accel.auth).status_code == 201
    assert linked(accel, url_path)


def test_a_write_that_fails_keeps_the_tree(accel: Index) -> None:
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    models.bind(accel.database, accel.public_tree)
    with pytest.raises(RuntimeError), models.database.connection_context(), write_transaction():
        raise RuntimeError("nothing commits")
    assert linked(accel, url_path)


def test_a_nested_write_leaves_retiring_to_the_outermost(accel: Index) -> None:
    url_path = uploaded(accel, "demo", "1.0")
    accel.get(f"/{url_path}")
    models.bind(accel.database, accel.public_tree)
    with models.database.connection_context(), write_transaction():
        with write_transaction() as inner:
            inner.keeps_public_files()
        assert linked(accel, url_path)  # nothing retired (nor locked) inside
    assert not linked(accel, url_path)


# --- proxies ---------------------------------------------------------------------------------------------

def test_a_proxy_page_that_only_grew_keeps_the_tree_and_one_that_lost_a_file_retires_it(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "up", [wheel("tool", "1.0"), wheel("tool", "2.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"server": {"x_accel_redirect": LOCATION}, "repository": [
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url, "cache_ttl": 0}]})
        files = index.get("/up/simple/tool/", accept=JSON).json["files"]
        url_path = f"files/up/{files[0]['hashes']['sha256']}/{files[0]['filename']}"
        index.get(f"/{url_path}")  # the first download fetches and streams it: nothing to link yet
        assert index.get(f"/{url_path}").headers["X-Accel-Redirect"] and linked(index, url_path)
        upstream.dists.append(wheel("tool", "3.0"))
        assert len(index.get("/up/simple/tool/", accept=JSON).json["files"]) == 3
        assert linked(index, url_path)
        upstream.dists[:] = [d for d in upstream.dists if d.filename != files[0]["filename"]]
        assert len(index.get("/up/simple/tool/", accept=JSON).json["files"]) == 2
        assert not linked(index, url_path)
    finally:
        upstream.stop()
