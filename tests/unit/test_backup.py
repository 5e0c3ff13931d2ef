"""`backup DEST` and `check`: a copy that restores by pointing data_dir at it, refusals in one line, and an
exit status that tells whether the data dir is sound."""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import pytest

from pypilite.maintenance import check
from tests.conftest import Index, call
from tests.distfactory import sdist_bytes, wheel_bytes

FILES = {
    "demo-1.0-py3-none-any.whl": wheel_bytes("demo", "1.0"),
    "demo-1.0.tar.gz": sdist_bytes("demo", "1.0"),
    "other-2.0-py3-none-any.whl": wheel_bytes("other", "2.0"),
}
JSON = "application/vnd.pypi.simple.v1+json"
# A copy of a SQLite data dir; on PostgreSQL `backup` refuses (tests/unit/test_postgresql.py).
pytestmark = pytest.mark.sqlite_only


@pytest.fixture
def source(tmp_path: Path) -> tuple[Index, str]:
    index = Index(tmp_path / "data")
    for filename, data in FILES.items():
        assert index.upload(filename, data).status_code == 200
    config = tmp_path / "pypilite.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n')
    return index, str(config)


def downloads(index: Index) -> dict[str, bytes]:
    found = {}
    for project in ("demo", "other"):
        for entry in index.get(f"/local/simple/{project}/", accept=JSON).json["files"]:
            response = index.get("/" + entry["url"].lstrip("./"))
            assert response.status_code == 200
            found[entry["filename"]] = response.get_data()
    return found


def etag_key(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "pypilite.db") as connection:
        return connection.execute("SELECT value FROM meta WHERE key = 'etag_key'").fetchone()[0]


@pytest.mark.parametrize("linkable", [True, False], ids=["hard-linked", "copied"])
def test_a_backup_restores_byte_identical(capsys, monkeypatch, tmp_path: Path, source, linkable: bool) -> None:
    index, config = source
    if not linkable:
        def cross_device(*args, **kwargs):
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        monkeypatch.setattr(os, "link", cross_device)
    dest = tmp_path / "backups" / "today"
    code, out, err = call(capsys, "backup", str(dest), "--config", config)
    assert (code, err) == (0, "")
    # three files and the two wheels' metadata files
    assert "and 5 files (" in out and f"{5 if linkable else 0} hard-linked) to {dest}" in out
    assert sorted(p.name for p in dest.iterdir()) == ["blobs", "initial-admin-password", "pypilite.db", "tmp"]

    restored = Index(dest)
    assert downloads(restored) == FILES
    assert etag_key(dest) != etag_key(tmp_path / "data")  # no ETag of the original matches the copy's pages
    restored_config = tmp_path / "restored.toml"
    restored_config.write_text(f'[storage]\ndata_dir = "{dest}"\n')
    assert call(capsys, "check", "--config", str(restored_config))[0] == 0


def test_a_corrupt_blob_is_not_copied_into_a_backup(capsys, monkeypatch, tmp_path: Path, source) -> None:
    index, config = source
    next(p for p in index.stored_blobs()).write_bytes(b"rot")
    monkeypatch.setattr(os, "link", lambda *a, **k: (_ for _ in ()).throw(OSError(errno.EXDEV, "cross-device")))
    code, out, err = call(capsys, "backup", str(tmp_path / "bk"), "--config", config)
    assert code == 1 and err.count("\n") == 1 and "is corrupt" in err and "run check" in err
    assert not (tmp_path / "bk" / "pypilite.db").exists()  # no database: not mistaken for a whole backup
    assert list((tmp_path / "bk" / "tmp").iterdir()) == []


def test_a_missing_blob_is_reported(capsys, tmp_path: Path, source) -> None:
    index, config = source
    next(p for p in index.stored_blobs()).unlink()
    code, out, err = call(capsys, "backup", str(tmp_path / "bk"), "--config", config)
    assert code == 1 and err == "pypilite: 1 hosted files have no blob in the data dir and are missing from " \
                                "the backup too; run check\n"


@pytest.mark.parametrize("setup, words", [
    (lambda dest: (dest.mkdir(), (dest / "x").write_text("x")), "is not empty"),
    (lambda dest: dest.write_text("a file"), "exists and is not a directory"),
    (lambda dest: None, None),
])
def test_destination_refusals(capsys, tmp_path: Path, source, setup, words: str | None) -> None:
    _index, config = source
    dest = tmp_path / "dest"
    setup(dest)
    code, out, err = call(capsys, "backup", str(dest), "--config", config)
    if words is None:
        assert code == 0  # a destination that does not exist yet is made
        return
    assert code == 1 and out == "" and err.count("\n") == 1 and err.startswith("pypilite: ") and words in err


def test_unwritable_destinations(capsys, monkeypatch, tmp_path: Path, source) -> None:
    _index, config = source
    (tmp_path / "afile").write_text("x")
    code, _, err = call(capsys, "backup", str(tmp_path / "afile" / "below"), "--config", config)
    assert code == 1 and err.count("\n") == 1 and "Not a directory" in err

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")
    monkeypatch.setattr(Path, "touch", read_only)
    code, _, err = call(capsys, "backup", str(tmp_path / "ro"), "--config", config)
    assert code == 1 and err.count("\n") == 1 and "Permission denied" in err


def test_inside_the_data_dir_and_postgresql_are_refused(capsys, tmp_path: Path, source) -> None:
    _index, config = source
    code, _, err = call(capsys, "backup", str(tmp_path / "data" / "bk"), "--config", config)
    assert code == 1 and "inside the data dir" in err and err.count("\n") == 1
    postgres = tmp_path / "pg.toml"
    postgres.write_text('[database]\nurl = "postgresql://db.invalid/pypilite"\n')
    code, _, err = call(capsys, "backup", str(tmp_path / "bk"), "--config", str(postgres))
    assert code == 1 and "SQLite data dirs only" in err and err.count("\n") == 1


def test_check_exit_status_tells(capsys, tmp_path: Path, source) -> None:
    index, config = source
    assert call(capsys, "check", "--config", config)[:2] == (
        0, "3 file records; checked 5 blobs: 0 missing, 0 corrupt, 0 unreferenced, 0 stray temp files\n")

    # The command opens the data dir as the server does, which sweeps abandoned temp files first; the check
    # itself still reports one that outlived that.
    blobs = index.app.extensions["pypilite"].blobs
    stray = tmp_path / "data" / "tmp" / "upload-dead.part"
    stray.write_bytes(b"half an upload")
    os.utime(stray, (0, 0))
    report = index.run(check, blobs)
    assert not report.clean and report.stray_temp == ["upload-dead.part"]
    report = index.run(check, blobs, gc=True)
    assert report.clean and report.removed_temp == 1 and not stray.exists()

    victim = next(p for p in index.stored_blobs() if p.stat().st_size > 100)
    good = victim.read_bytes()
    victim.write_bytes(b"rot")
    code, out, err = call(capsys, "check", "--config", config)
    assert code == 1 and "corrupt: " in out and victim.name in out and err.startswith("pypilite: ")
    victim.unlink()
    code, out, _ = call(capsys, "check", "--config", config)
    assert code == 1 and "missing: " in out and "1 missing" in out
    victim.write_bytes(good)
    assert call(capsys, "check", "--config", config)[0] == 0
