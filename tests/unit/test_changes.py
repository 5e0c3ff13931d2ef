"""The change marker: it moves with every commit, from any connection in any process, whether it reads SQLite's
WAL-index header or asks the pragma; and when the header stops telling the truth, the pragma notices."""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pypilite import changes, models
from pypilite.changes import ChangeMarker, WalIndex
from tests.conftest import Index


def _commit_elsewhere(index: Index) -> None:
    """A commit from another process, as a second gunicorn worker or the CLI makes one."""
    script = ("import sqlite3, sys\nconnection = sqlite3.connect(sys.argv[1])\nwith connection:\n"
              "    connection.execute('UPDATE repository SET serial = serial + 1')\nconnection.close()\n")
    subprocess.run([sys.executable, "-c", script, str(index.data_dir / "pypilite.db")], check=True)


def _commit_here(index: Index) -> None:
    """A commit from another connection of this process (a thread of the development server)."""
    other = sqlite3.connect(index.data_dir / "pypilite.db")
    with other:
        other.execute("UPDATE repository SET serial = serial + 1")
    other.close()


def _read(index: Index, marker: ChangeMarker) -> changes.Marker:
    result = index.run(marker)
    assert result is not None
    return result


def test_the_header_moves_with_a_commit_anywhere_and_a_write_here(index: Index) -> None:
    marker = ChangeMarker()
    first = _read(index, marker)
    assert isinstance(first[1], bytes)  # the header, not the pragma's count
    assert _read(index, marker) == first
    _commit_elsewhere(index)
    second = _read(index, marker)
    assert second != first and isinstance(second[1], bytes)
    _commit_here(index)
    third = _read(index, marker)
    assert third != second
    index.run(lambda: models.Repository.update(public=True).where(models.Repository.name == "local").execute())
    assert _read(index, marker) != third


def test_a_restarted_wal_is_noticed(index: Index) -> None:
    marker = ChangeMarker()
    before = _read(index, marker)
    other = sqlite3.connect(index.data_dir / "pypilite.db")
    other.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the next writer starts the WAL from its first frame
    other.close()
    _commit_elsewhere(index)
    assert _read(index, marker) != before


def test_a_new_shm_file_is_mapped_and_the_old_one_let_go(index: Index) -> None:
    marker = ChangeMarker()
    _read(index, marker)
    old = os.stat(index.data_dir / "pypilite.db-shm").st_ino
    models.close_pool()  # the last connection anywhere: SQLite removes the -shm
    assert not (index.data_dir / "pypilite.db-shm").exists()
    first = _read(index, marker)
    new = os.stat(index.data_dir / "pypilite.db-shm")
    assert new.st_ino != old and isinstance(first[1], bytes)
    held = [Path(os.readlink(f"/proc/self/fd/{fd}")) for fd in os.listdir("/proc/self/fd")
            if os.path.islink(f"/proc/self/fd/{fd}")]
    assert not any(path.name == "pypilite.db-shm (deleted)" and path.parent == index.data_dir for path in held)
    _commit_elsewhere(index)
    assert _read(index, marker)[1] != first[1]


def test_another_connection_starts_another_epoch(index: Index) -> None:
    marker = ChangeMarker()
    first = _read(index, marker)
    models.close_pool()
    assert _read(index, marker)[0] == first[0] + 1


def test_a_header_caught_mid_write_leaves_the_answer_to_the_pragma(index: Index, monkeypatch) -> None:
    marker = ChangeMarker()
    _read(index, marker)
    monkeypatch.setattr(WalIndex, "header", lambda self: None)
    first = _read(index, marker)
    assert isinstance(first[1], int)
    _commit_elsewhere(index)
    assert _read(index, marker) != first


def test_a_header_that_misses_a_commit_is_caught_by_the_pragma(index: Index, monkeypatch, caplog) -> None:
    """A mapped file that is not the one SQLite writes (here a copy) never changes: the check against the
    pragma finds it out, and the marker still moves with the commit."""
    shm = index.data_dir / "pypilite.db-shm"
    copy = index.data_dir / "copy-shm"
    real_of = WalIndex.of

    def stale(connection: sqlite3.Connection) -> WalIndex | None:
        if real_of(connection) is None:
            return None
        shutil.copyfile(shm, copy)
        return WalIndex(str(copy))

    monkeypatch.setattr(WalIndex, "of", staticmethod(stale))
    monkeypatch.setattr(changes, "CHECK_SECONDS", 0.0)
    marker = ChangeMarker()
    _read(index, marker)
    before = _read(index, marker)  # the second check keeps a header read before its pragma
    assert isinstance(before[1], bytes)
    _commit_elsewhere(index)
    with caplog.at_level(logging.ERROR, logger="pypilite.changes"):
        after = _read(index, marker)
    assert after != before and isinstance(after[1], int)
    assert "did not change with a commit" in caplog.text
    _commit_elsewhere(index)
    assert _read(index, marker)[1] != after[1]


def test_it_is_none_without_sqlite(index: Index, monkeypatch) -> None:
    monkeypatch.setattr(models.database.obj, "connection", lambda: object())
    assert ChangeMarker()() is None


@pytest.mark.parametrize("mode", ["delete", "truncate"])
def test_a_database_without_a_wal_has_no_index(tmp_path: Path, mode: str) -> None:
    for connection in (sqlite3.connect(tmp_path / "plain.db"), sqlite3.connect(":memory:")):
        connection.execute(f"PRAGMA journal_mode={mode}")
        assert WalIndex.of(connection) is None
        connection.close()


def test_one_index_per_database_file(tmp_path: Path) -> None:
    """Two indexes of one file could not both keep their descriptors open for good."""
    first, second = (sqlite3.connect(tmp_path / "wal.db") for _ in range(2))
    first.execute("PRAGMA journal_mode=wal")
    assert WalIndex.of(first) is WalIndex.of(second) is not None


def test_an_index_is_attached_once_per_file(tmp_path: Path) -> None:
    """Closing a descriptor of the -shm would drop every lock SQLite holds on it: one opened for it is kept."""
    connection = sqlite3.connect(tmp_path / "wal.db", isolation_level=None)
    connection.execute("PRAGMA journal_mode=wal")
    connection.execute("CREATE TABLE t (x)")
    index = WalIndex.of(connection)
    assert index is not None and index.attach()
    held = index._fd
    assert held is not None and index.attach() and index._fd == held
    os.fstat(held)  # still open


def test_a_file_that_cannot_be_mapped_keeps_its_descriptor(tmp_path: Path, monkeypatch) -> None:
    """It shrank between the look and the map: its descriptor may still be SQLite's file, so it stays open."""
    (tmp_path / "x.db-shm").write_bytes(_header() * 2)
    index = WalIndex(str(tmp_path / "x.db-shm"))

    def shrunk(*args, **kwargs):
        raise ValueError("mmap length is greater than file size")

    monkeypatch.setattr(changes.mmap, "mmap", shrunk)
    assert not index.attach() and index.header() is None
    assert index._fd is not None
    os.fstat(index._fd)


def _header(version: int = 3007000, built: int = 1, frames: int = 7) -> bytes:
    """iVersion, unused, iChange, isInit, bigEndCksum, szPage, mxFrame, nPage, then checksums and salts."""
    fields = struct.pack("=IIIBBHII", version, 0, 3, built, 0, 4096, frames, 2)
    return fields + b"\5" * (changes.HEADER_BYTES - len(fields))


def test_a_built_header_is_read_from_its_first_copy(tmp_path: Path) -> None:
    (tmp_path / "x.db-shm").write_bytes(_header() * 2 + b"\0" * 1000)
    index = WalIndex(str(tmp_path / "x.db-shm"))
    assert index.attach() and index.header() == _header()


@pytest.mark.parametrize("content", [b"", b"\1" * 90, b"\0" * 200, _header(built=0) * 2,
                                     _header(version=1) * 2, _header(frames=8) + _header(frames=7)],
                         ids=["empty", "short", "zeroed", "not built", "unknown version", "copies differ"])
def test_a_file_that_is_not_a_wal_index_is_not_attached(tmp_path: Path, content: bytes) -> None:
    (tmp_path / "odd.db-shm").write_bytes(content)
    assert not WalIndex(str(tmp_path / "odd.db-shm")).attach()
    assert not WalIndex(str(tmp_path / "missing.db-shm")).attach()
