"""Upgrading a data dir that an earlier pypilite wrote: the schema as that version created it, rows in every
table, then the start-up migration, checked row by row."""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import peewee
import pytest

from pypilite import StartupError, migrations, models
from pypilite.database import database
from pypilite.models import FetchedBlob, File, Project, Repository, Token, User
from pypilite.storage import LocalBlobStore
from tests.conftest import Index
from tests.distfactory import metadata_text, sdist_bytes, wheel_bytes

SCHEMA_V4 = Path(__file__).parent / "fixtures" / "schema_v4.sql"
WHEEL = wheel_bytes("demo", "1.0")
METADATA = metadata_text("demo", "1.0").encode()
SDIST = sdist_bytes("demo", "1.0")
PROXIED = wheel_bytes("fetched", "2.0")
SHARED = wheel_bytes("shared", "3.0")


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def version_4_data_dir(data_dir: Path) -> None:
    """A data dir as pypilite 0.1.0 left it: two repositories and a group, a user with a grant and a token, a
    hosted wheel and sdist, a proxied file it fetched, and a proxied file whose bytes a hosted file also has;
    the highest project and repository deleted, so SQLite would hand their ids out again."""
    data_dir.mkdir(parents=True)
    blobs = LocalBlobStore(data_dir)
    for data in (WHEEL, METADATA, SDIST, PROXIED, SHARED):
        blobs.put_bytes(data)
    db = sqlite3.connect(data_dir / "pypilite.db")
    db.executescript(SCHEMA_V4.read_text())
    now = "2026-01-01 00:00:00"
    db.executemany("INSERT INTO meta VALUES (?, ?)", [("instance_id", "oldinstance0"), ("schema_version", "4")])
    db.executemany("INSERT INTO repository VALUES (?, ?, ?, 1, 0, ?, 600, 10, ?, '', 1, ?)", [
        (1, "local", "hosted", "", "", now), (2, "pypi", "proxy", "http://127.0.0.1:9/simple/", "", now),
        (3, "all", "group", "", "local", now), (4, "doomed", "hosted", "", "", now)])
    db.executemany("INSERT INTO group_member VALUES (?, 3, ?, ?)", [(1, 1, 0), (2, 2, 1)])
    db.executemany("INSERT INTO project VALUES (?, ?, ?, ?, 1, ?)", [
        (1, 1, "demo", "demo", now), (2, 2, "fetched", "fetched", now), (3, 2, "shared", "shared", now),
        (4, 1, "gone", "gone", now)])
    file = "INSERT INTO file VALUES (?, ?, ?, ?, ?, ?, ?, ?, '', '', 0, '', ?, ?)"
    db.executemany(file, [
        (1, 1, "demo-1.0-py3-none-any.whl", "1.0", "bdist_wheel", _sha(WHEEL), len(WHEEL), now, _sha(METADATA), ""),
        (2, 1, "demo-1.0.tar.gz", "1.0", "sdist", _sha(SDIST), len(SDIST), now, None, ""),
        (3, 2, "fetched-2.0-py3-none-any.whl", "2.0", "bdist_wheel", _sha(PROXIED), len(PROXIED), now, None,
         "http://127.0.0.1:9/files/fetched-2.0-py3-none-any.whl"),
        (4, 3, "shared-3.0-py3-none-any.whl", "3.0", "bdist_wheel", _sha(SHARED), len(SHARED), now, None,
         "http://127.0.0.1:9/files/shared-3.0-py3-none-any.whl"),
        (5, 1, "shared-3.0-py3-none-any.whl", "3.0", "bdist_wheel", _sha(SHARED), len(SHARED), now, None, "")])
    db.execute("INSERT INTO user VALUES (1, 'admin', 'x', 1, 0, ?)", (now,))
    db.execute("INSERT INTO user VALUES (2, 'carol', 'x', 0, 0, ?)", (now,))
    db.execute("INSERT INTO \"grant\" VALUES (1, 2, 1, 'upload')")
    db.execute("INSERT INTO token VALUES (1, 2, ?, '', 0, 1, ?, NULL, NULL, NULL)", ("d" * 64, now))
    db.execute("INSERT INTO token_scope VALUES (1, 1, 1)")
    db.execute("INSERT INTO audit_event VALUES (1, ?, 'admin', 'token.create', 'token', '7', '', '')", (now,))
    db.execute("DELETE FROM project WHERE id = 4")
    db.execute("DELETE FROM repository WHERE id = 4")
    db.commit()
    db.close()


@pytest.mark.sqlite_only  # a data dir of an older pypilite, which ran on SQLite alone
def test_version_4_data_dirs_upgrade_with_every_row_and_link_kept(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    version_4_data_dir(data_dir)
    (data_dir / "initial-admin-password").write_text("unused\n")
    index = Index(data_dir)

    def inspect() -> None:
        assert migrations.schema_version() == migrations.SCHEMA_VERSION
        assert len(models.etag_key()) == 32  # ETags are keyed hashes now: every validator a client holds retires
        assert database.execute_sql("PRAGMA foreign_keys").fetchone()[0] == 1
        assert database.execute_sql("PRAGMA foreign_key_check").fetchall() == []
        assert [(r.id, r.name) for r in Repository.select().order_by(Repository.id)] == [
            (1, "local"), (2, "pypi"), (3, "all")]
        assert {(p.id, p.repository_id, p.name) for p in Project.select()} == {
            (1, 1, "demo"), (2, 2, "fetched"), (3, 2, "shared")}
        assert Token.get_by_id(1).user.name == "carol" and Token.get_by_id(1).parent is None
        assert [(s.token_id, s.repository_id) for s in models.TokenScope.select()] == [(1, 1)]
        assert [(g.user.name, g.repository.name, g.level) for g in models.Grant.select()] == [
            ("carol", "local", "upload")]
        # From now on an id taken back by a delete is never handed out again. (One deleted before the upgrade
        # may be, once: the new instance id keeps any ETag made with it from matching.)
        for model, values in ((Repository, {"repository_type": "hosted"}), (Project, {"repository": 1})):
            taken_back = model.create(name="taken-back", display_name="x", **values)
            taken_back.delete_instance()
            assert model.create(name="next", display_name="x", **values).id == taken_back.id + 1
        # A token id the audit trail names stays that token's, even one deleted before the upgrade.
        assert Token.create(user=1, digest="e" * 64).id == 8
        info = {f.filename: f.info_sha256 for f in File.select().where(File.origin_url == "")}
        assert info["demo-1.0-py3-none-any.whl"] == _sha(METADATA)
        assert info["demo-1.0.tar.gz"] == _sha(metadata_text("demo", "1.0").encode())
        assert models.Meta.get_or_none(models.Meta.key == migrations.RELEASE_INFO_CURSOR) is None  # done
        # Migration 6: no project has said a status (PEP 792: active), no proxied file names a provenance.
        assert {(p.status, p.status_reason, p.tracks, p.alternate_locations) for p in Project.select()} == {
            ("", "", "", "")}
        assert {f.provenance_url for f in File.select()} == {""}
        # What the proxy fetched itself stays served offline; bytes a hosted file also has are fetched anew.
        assert [(b.repository_id, b.sha256) for b in FetchedBlob.select()] == [(2, _sha(PROXIED))]
        # Deleting still cascades.
        Repository.get_by_id(2).delete_instance(recursive=True)
        assert not File.select().where(File.origin_url != "").exists()

    index.run(inspect)
    for table in ("repository", "project", "user", "token"):
        sql = index.run(lambda: database.execute_sql(
            "SELECT sql FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0])
        assert "AUTOINCREMENT" in sql, table


def test_a_new_data_dir_never_reuses_ids_either(index: Index) -> None:
    def create_delete_create() -> tuple[int, int]:
        first = Repository.create(name="first", repository_type="hosted")
        first.delete_instance()
        user = User.create(name="temp", password_hash="x")
        user.delete_instance()
        return (Repository.create(name="second", repository_type="hosted").id - first.id,
                User.create(name="temp2", password_hash="x").id - user.id)

    assert index.run(create_delete_create) == (1, 1)


@pytest.mark.sqlite_only  # a data dir of an older pypilite, which ran on SQLite alone
def test_a_start_cut_short_while_taking_metadata_out_goes_on_at_the_next(tmp_path: Path, monkeypatch) -> None:
    """gunicorn kills a worker that boots for too long: what one start took out of the archives stays, and the
    next start goes on from there instead of beginning again."""
    data_dir = tmp_path / "data"
    version_4_data_dir(data_dir)
    (data_dir / "initial-admin-password").write_text("unused\n")
    monkeypatch.setattr(migrations, "RELEASE_INFO_BATCH", 1)
    real = migrations.metadata_bytes
    opened: list[str] = []

    def killed_after_one(path, info, filename):
        if opened:
            raise KeyboardInterrupt  # what SIGTERM from gunicorn's arbiter amounts to, mid-extraction
        opened.append(filename)
        return real(path, info, filename)

    monkeypatch.setattr(migrations, "metadata_bytes", killed_after_one)
    with pytest.raises(KeyboardInterrupt):
        Index(data_dir)
    monkeypatch.setattr(migrations, "metadata_bytes", lambda *args: opened.append(args[2]) or real(*args))
    index = Index(data_dir)
    # The second start took out only what the first had not (a hosted wheel stored without METADATA of its own).
    assert opened == ["demo-1.0.tar.gz", "shared-3.0-py3-none-any.whl"]
    assert index.run(lambda: models.Meta.get_or_none(models.Meta.key == migrations.RELEASE_INFO_CURSOR)) is None
    assert index.run(lambda: File.get(File.filename == "demo-1.0.tar.gz").info_sha256) is not None


def test_version_5_proxied_wheels_offer_the_metadata_taken_out_of_them(index: Index) -> None:
    """Migration 6: a proxied wheel whose upstream offers no PEP 658 file, already fetched and described,
    offers its METADATA from then on, and its page changes."""

    def downgrade_and_migrate() -> tuple[list[tuple[int, str]], int]:
        proxy = Repository.get(Repository.name == "pypi")
        project = Project.create(repository=proxy.id, name="fetched", display_name="fetched", serial=3)
        File.create(project=project.id, filename="fetched-2.0-py3-none-any.whl", version="2.0",
                    packagetype="bdist_wheel", sha256=_sha(PROXIED), size=len(PROXIED), info_sha256="c" * 64,
                    origin_url="http://127.0.0.1:9/files/fetched-2.0-py3-none-any.whl")
        models.set_meta("schema_version", "5")
        migrations.migrate()
        return ([(b.repository_id, b.sha256) for b in FetchedBlob.select()],
                Project.get_by_id(project.id).serial)

    fetched, serial = index.run(downgrade_and_migrate)
    assert fetched == [(index.run(lambda: Repository.get(Repository.name == "pypi").id), "c" * 64)]
    assert serial == 4


def test_migration_6_hands_no_deleted_id_out_again(index: Index) -> None:
    """A project deleted on version 5, at the top of its table: after the upgrade the next one gets a new id
    (page ETags are keyed by project id: an old one must not come back)."""

    def delete_downgrade_migrate_create() -> tuple[int, int]:
        project = Project.create(repository=1, name="top", display_name="top")
        project.delete_instance()
        for table, column in (("project", "status"), ("project", "status_reason"), ("project", "tracks"),
                              ("project", "alternate_locations"), ("file", "provenance_url")):
            database.execute_sql(f'ALTER TABLE "{table}" DROP COLUMN "{column}"')
        models.set_meta("schema_version", "5")
        migrations.migrate()
        return project.id, Project.create(repository=1, name="again", display_name="again").id

    deleted, created = index.run(delete_downgrade_migrate_create)
    assert created == deleted + 1


def test_version_6_blobs_lose_their_times(index: Index) -> None:
    """Migration 7: blobs stored before carry the time they were last stored, which nginx would tell."""
    blobs = index.app.extensions["pypilite"].blobs
    dated = blobs.path(blobs.put_bytes(b"stored by an older pypilite"))
    os.utime(dated)

    def downgrade_and_migrate() -> None:
        models.set_meta("schema_version", "6")
        migrations.migrate(blobs)

    index.run(downgrade_and_migrate)
    assert dated.stat().st_mtime == 0


@pytest.mark.sqlite_only  # a data dir of an older pypilite, which ran on SQLite alone
def test_users_differing_only_in_case_stop_the_upgrade_until_one_is_left(tmp_path: Path) -> None:
    """Migration 8: names become one in any case; users that would merge are named, and nothing changes."""
    data_dir = tmp_path / "data"
    version_4_data_dir(data_dir)
    (data_dir / "initial-admin-password").write_text("unused\n")
    db = sqlite3.connect(data_dir / "pypilite.db")
    db.execute("INSERT INTO user VALUES (3, 'Carol', 'x', 0, 0, '2026-01-01 00:00:00')")
    db.commit()
    with pytest.raises(StartupError) as refused:
        Index(data_dir)
    assert str(refused.value) == (
        "user names now ignore case, and these differ only in case: 'Carol', 'carol'; remove all but one of each "
        "with the pypilite you ran before (app.py user remove NAME), then start this one again")
    assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("4",)
    db.execute("DELETE FROM user WHERE name = 'Carol'")
    db.commit()
    db.close()
    index = Index(data_dir)
    assert index.run(lambda: [u.name for u in User.select().order_by(User.id)]) == ["admin", "carol"]
    with pytest.raises(peewee.IntegrityError):
        index.run(lambda: User.create(name="CAROL"))
