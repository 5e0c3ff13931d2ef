"""PostgreSQL whatever --db says: the schema it migrates to, and what SQLite's one writer gave for free (two
uploads racing, two nodes migrating at once) done with PostgreSQL's own locks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from pypilite import locks, migrations
from pypilite.changes import ChangeMarker
from pypilite.config import build_config
from pypilite.database import bind, database, make_database, sql
from pypilite.models import Meta, Project
from pypilite.repositories import stored
from pypilite.repositories.hosted import HostedRepository
from tests import postgres
from tests.conftest import Index, basic, call
from tests.distfactory import sdist_bytes, wheel_bytes
from tests.unit.test_memo import Spy

JSON = "application/vnd.pypi.simple.v1+json"

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed")


@pytest.fixture
def url() -> str:
    return postgres.fresh_database_url()


@pytest.fixture
def pg_index(tmp_path: Path, url: str) -> Index:
    return Index(tmp_path / "data", {"database": {"url": url}})


def test_a_fresh_database_migrates_to_the_latest_version(tmp_path: Path, url: str) -> None:
    bind(make_database(url, tmp_path))
    try:
        with database.connection_context():
            assert migrations.migrate() == migrations.SCHEMA_VERSION
            assert migrations.schema_version() == migrations.SCHEMA_VERSION
            assert Meta.get(Meta.key == "schema_version").value == str(migrations.SCHEMA_VERSION)
            assert migrations.migrate() == migrations.SCHEMA_VERSION  # again: nothing to do
            columns = {column.name for column in database.get_columns("repository")}
            assert {"offline", "pass_through", "remote_timeout"} <= columns
    finally:
        database.close_all()


def test_nodes_starting_together_migrate_once(tmp_path: Path, url: str) -> None:
    """Each node has a data dir (and a startup lock) of its own: only the database can keep them apart."""
    barrier = threading.Barrier(4)

    def start(number: int) -> int:
        bind(make_database(url, tmp_path))
        barrier.wait(timeout=30)
        with database.connection_context():
            return migrations.migrate()

    try:
        with ThreadPoolExecutor(4) as pool:
            assert list(pool.map(start, range(4))) == [migrations.SCHEMA_VERSION] * 4
    finally:
        database.close_all()


def _racing(index: Index, monkeypatch: pytest.MonkeyPatch, uploads: list[tuple[str, bytes]]) -> list[int]:
    """Upload these at once, each on its own thread and connection, all of them past their first checks
    before any stores its row (or, with a write lock, one at a time: the barrier gives up waiting)."""
    barrier = threading.Barrier(len(uploads))
    checked = HostedRepository._refuse_second_sdist

    def wait_for_the_others(self, dist, existing):
        try:
            barrier.wait(timeout=2)
        except threading.BrokenBarrierError:
            pass
        return checked(self, dist, existing)

    monkeypatch.setattr(HostedRepository, "_refuse_second_sdist", wait_for_the_others)

    def upload(item: tuple[str, bytes]) -> int:
        response = index.upload(*item)
        database.close()  # this thread's connection back to the pool
        return response.status_code

    with ThreadPoolExecutor(len(uploads)) as pool:
        return list(pool.map(upload, uploads))


def test_two_uploads_of_one_name_store_one_file(pg_index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    name = "race-1.0-py3-none-any.whl"
    statuses = _racing(pg_index, monkeypatch, [(name, wheel_bytes("race", "1.0")),
                                               (name, wheel_bytes("race", "1.0", payload=b"other bytes"))])
    assert sorted(statuses) == [200, 409]
    assert [row.filename for row in pg_index.file_rows()] == [name]


def test_two_first_uploads_of_a_project_create_it_once(pg_index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [("fresh-1.0-py3-none-any.whl", wheel_bytes("fresh", "1.0")),
             ("fresh-1.0.tar.gz", sdist_bytes("fresh", "1.0"))]
    assert _racing(pg_index, monkeypatch, files) == [200, 200]
    assert sorted(row.filename for row in pg_index.file_rows()) == sorted(name for name, _ in files)
    projects = pg_index.run(lambda: list(Project.select().where(Project.name == "fresh")))
    assert len(projects) == 1 and projects[0].serial == 2  # each upload moved it once


def test_backup_refuses_and_says_what_to_use(capsys, tmp_path: Path, pg_index: Index, url: str) -> None:
    config = tmp_path / "pypilite.toml"
    config.write_text(f'[storage]\ndata_dir = "{pg_index.data_dir}"\n[database]\nurl = "{url}"\n')
    code, out, err = call(capsys, "backup", str(tmp_path / "bk"), "--config", str(config))
    assert code == 1 and not out and err.count("\n") == 1 and "pg_dump" in err
    assert not (tmp_path / "bk").exists()


def test_health_names_the_database_when_it_is_gone(tmp_path: Path) -> None:
    url = postgres.fresh_database_url()
    index = Index(tmp_path / "data", {"database": {"url": url}})
    assert index.get("/health").json["database"] == "ok"
    index.database.close_all()
    postgres.cluster().sql(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    response = index.get("/health")
    assert response.status_code == 503 and response.json["failing"] == ["database"]


def test_config_accepts_both_spellings_of_the_scheme(tmp_path: Path, url: str) -> None:
    for scheme in ("postgresql", "postgres"):
        config = build_config({"storage": {"data_dir": str(tmp_path)},
                               "database": {"url": url.replace("postgresql", scheme, 1)}}, {})
        db = make_database(config.database.url, tmp_path)
        with db.connection_context():
            assert db.execute_sql("SELECT 1").fetchone() == (1,)
        db.close_all()


def test_the_memo_stays_empty_and_another_node_s_write_is_served_at_once(tmp_path: Path, url: str) -> None:
    """Two indexes on one database are two nodes: no answer is replayed from memory, and the page's ETag
    moves with a write made through the other."""
    first = Index(tmp_path / "data", {"database": {"url": url}})
    second = Index(tmp_path / "data", {"database": {"url": url}})  # blobs shared, as the two-node test does
    assert first.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    spy = Spy(second)
    page = second.get("/local/simple/demo/", accept=JSON)
    assert second.get("/local/simple/demo/", accept=JSON, headers={"If-None-Match": page.headers["ETag"]}
                      ).status_code == 304
    assert first.upload("demo-1.1-py3-none-any.whl", wheel_bytes("demo", "1.1")).status_code == 200
    newer = second.get("/local/simple/demo/", accept=JSON, headers={"If-None-Match": page.headers["ETag"]})
    assert newer.status_code == 200 and newer.headers["ETag"] != page.headers["ETag"]
    assert [f["filename"] for f in newer.json["files"]][-1] == "demo-1.1-py3-none-any.whl"
    assert spy.calls == 3 and len(second.app.wsgi_app._entries) == 0


def test_the_change_marker_is_none_and_asks_the_database_nothing(pg_index: Index) -> None:
    bind(pg_index.database)
    database.close()
    assert ChangeMarker()() is None and database.is_closed()


def test_a_named_lock_is_one_for_every_node_and_ends_with_its_holder(pg_index: Index, tmp_path: Path) -> None:
    """Proxy fetches are single-flight across nodes: the lock is the database's, not a file on one box."""
    bind(pg_index.database)
    held = locks.named_lock(tmp_path / "unused", "page/1/demo")
    assert isinstance(held, locks.DatabaseLock)
    held.acquire(1)
    with pytest.raises(locks.LockTimeout):
        locks.named_lock(tmp_path / "elsewhere", "page/1/demo").acquire(0.1)
    with locks.named_lock(tmp_path, "page/1/other").acquire(0.1):  # another name is another lock
        pass
    held.release()
    with locks.named_lock(tmp_path, "page/1/demo").acquire(0.1):
        pass
    dead = locks.named_lock(tmp_path, "blob/abc").acquire(0.1)
    dead._connection.close()  # what a killed worker's connection amounts to
    with locks.named_lock(tmp_path, "blob/abc").acquire(1):
        pass
    assert not (tmp_path / "unused").exists()


def test_a_one_box_data_dir_moves_into_postgresql(capsys, tmp_path: Path, url: str) -> None:
    data_dir = tmp_path / "data"
    box = Index(data_dir, {"database": {"url": ""}})  # SQLite, whatever --db says
    for version in ("1.0", "1.1", "2.0"):
        assert box.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version)).status_code == 200
    assert box.client.delete("/api/v1/repos/local/files/demo-2.0-py3-none-any.whl", headers=box.auth).status_code == 204
    assert box.client.post("/api/v1/repos/local/projects/demo/1.0/yank", json={"reason": "old"},
                           headers=box.auth).status_code == 200
    assert box.client.post("/api/v1/users", json={"name": "carol", "password": "carol-password-1"},
                           headers=box.auth).status_code == 201
    assert box.client.put("/api/v1/repos/local/permissions/carol", json={"level": "upload"},
                          headers=box.auth).status_code == 201
    token = box.client.post("/api/v1/tokens", json={"user": "carol"}, headers=box.auth).json
    assert box.client.patch("/api/v1/repos/local", json={"public": False}, headers=box.auth).status_code == 200
    before = box.get("/local/simple/demo/", accept=JSON, headers=box.auth)
    audit = box.get("/api/v1/admin/audit?limit=100", headers=box.auth).json["items"]
    config = tmp_path / "pypilite.toml"
    config.write_text(f'[storage]\ndata_dir = "{data_dir}"\n')

    code, out, err = call(capsys, "migrate-to", "--database-url", url, "--config", str(config))
    assert code == 0 and "counts verified" in out and not err, err

    node = Index(data_dir, {"database": {"url": url}})
    after = node.get("/local/simple/demo/", accept=JSON, headers=node.auth)
    assert after.json == before.json and after.headers["ETag"] == before.headers["ETag"]
    assert node.get("/local/simple/demo/", accept=JSON).status_code == 401  # still private
    carol = basic("__token__", token["token"])
    assert node.get("/local/simple/demo/", accept=JSON, headers=carol).status_code == 200
    assert node.get("/api/v1/admin/audit?limit=100", headers=node.auth).json["items"] == audit
    refused = node.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"))
    assert refused.status_code == 400 and "already been used" in refused.get_data(as_text=True)
    assert node.upload("fresh-1.0-py3-none-any.whl", wheel_bytes("fresh", "1.0"), auth=carol).status_code == 200
    new_token = node.client.post("/api/v1/tokens", json={"user": "carol"}, headers=node.auth).json
    assert new_token["id"] > token["id"]  # ids go on, never handed out twice

    code, _, err = call(capsys, "migrate-to", "--database-url", url, "--config", str(config))
    assert code == 1 and err.count("\n") == 1 and "not empty" in err


@pytest.mark.parametrize("query, params", [
    (stored._FILE_BY_NAME, (1, "p0-1.0-py3-none-any.whl")),
    (stored._FILES_OF_PROJECT, (1,)),
    (stored._OUTLINES.format("?"), (1, "p0")),
])
def test_hot_lookups_have_their_indexes_on_postgresql_too(pg_index: Index, query: str, params: tuple) -> None:
    """The same indexes as on SQLite (test_simple.py asks its planner): with sequential scans priced out, the
    planner of a small table still finds an index for every table the lookup reads."""
    for n in range(30):
        assert pg_index.upload(f"p{n}-1.0-py3-none-any.whl", wheel_bytes(f"p{n}", "1.0")).status_code == 200

    def plan() -> str:
        with database.atomic():
            database.execute_sql("SET LOCAL enable_seqscan = off")
            return "\n".join(row[0] for row in database.execute_sql(f"EXPLAIN {sql(query)}", params).fetchall())

    found = pg_index.run(plan)
    assert "Seq Scan" not in found and "Index" in found, found
