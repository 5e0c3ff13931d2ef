"""The change marker: it moves with every commit, from any connection in any process, and with every row
this process's own connection writes."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from pypilite import changes, models
from pypilite.changes import ChangeMarker
from pypilite.database import close_pool
from tests.conftest import Index

# PRAGMA data_version; on PostgreSQL there is no marker and the memo stays empty (test_postgresql.py).
pytestmark = pytest.mark.sqlite_only

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


def test_the_marker_moves_with_a_commit_anywhere_and_a_write_here(index: Index) -> None:
    marker = ChangeMarker()
    first = _read(index, marker)
    assert _read(index, marker) == first
    _commit_elsewhere(index)
    second = _read(index, marker)
    assert second != first
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


def test_another_connection_starts_another_epoch(index: Index) -> None:
    marker = ChangeMarker()
    first = _read(index, marker)
    close_pool()
    second = _read(index, marker)
    assert second[0] == first[0] + 1
    _commit_elsewhere(index)
    assert _read(index, marker) != second
