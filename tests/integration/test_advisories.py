"""`python app.py advisories import` against a serving index's data dir, with hostile dumps: nothing extracted,
nothing read through a link, memory bounded, one line for a file that is no dump; /health on every worker says
how old the advisories are."""

from __future__ import annotations

import json
import resource
import sqlite3
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.integration.conftest import ROOT, LiveServer, start_server, stop_server

MEMORY_LIMIT = 1024 * 2**20  # address space for the import: far below what reading the bomb whole would take
BOMB_BYTES = 1536 * 2**20


def record(ident: str, package: str = "demo", **extra: Any) -> bytes:
    return json.dumps({"id": ident, "modified": "2026-11-01T00:00:00Z", "summary": ident,
                       "affected": [{"package": {"ecosystem": "PyPI", "name": package}, "versions": ["1.0"]}],
                       **extra}).encode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_server("gunicorn", tmp_path_factory.mktemp("advisories"))
    try:
        yield live
    finally:
        stop_server(live.process)


def health(server: LiveServer) -> list[dict[str, Any]]:
    """/health as several requests see it (gunicorn spreads them over its workers)."""
    answers = []
    for _ in range(6):
        response = requests.get(f"{server.url}/health", timeout=10)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


def import_dump(server: LiveServer, path: Path, limit: int | None = None) -> subprocess.CompletedProcess[str]:
    def bounded() -> None:
        if limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    return subprocess.run([sys.executable, "app.py", "advisories", "import", str(path)], env=server.env, cwd=ROOT,
                          capture_output=True, text=True, timeout=300, preexec_fn=bounded)


def test_a_hostile_zip_is_read_within_bounds(server: LiveServer, tmp_path: Path) -> None:
    assert {answer["advisories"] for answer in health(server)} == {"none"}
    path = tmp_path / "work" / "hostile.zip"
    path.parent.mkdir()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("../escaped.json", record("GHSA-esca-pede-scap"))
        archive.writestr("/tmp/absolute.json", record("GHSA-abso-lute-path"))
        with archive.open("bomb.json", "w", force_zip64=True) as bomb:  # zeros: a few MB packed
            chunk = b"\0" * 2**20
            for _ in range(BOMB_BYTES // len(chunk)):
                bomb.write(chunk)
        archive.writestr("broken.json", b'{"id": "GHSA-brok-enje-sonn", ')
        archive.writestr("deep.json", b"[" * 200_000 + b"]" * 200_000)
        archive.writestr("MAL-2026-1.json", record("MAL-2026-1", package="evil"))
    result = import_dump(server, path, limit=MEMORY_LIMIT)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "skipped 'bomb.json': larger than 1024 KiB" in result.stdout
    assert "skipped 'broken.json': not a JSON document" in result.stdout
    assert "skipped 'deep.json': " in result.stdout
    assert "3 advisories stored" in result.stdout and "3 unreadable" in result.stdout
    assert not (tmp_path / "escaped.json").exists() and not Path("/tmp/absolute.json").exists()
    assert sorted(p.name for p in path.parent.iterdir()) == ["hostile.zip"]  # nothing extracted
    assert {answer["advisories"] for answer in health(server)} == {"ok"}
    status = server.command("advisories", "status")
    assert status.returncode == 0 and status.stdout.startswith("3 advisories (1 about malicious packages)")


def test_a_directory_dump_never_reads_through_links(server: LiveServer, tmp_path: Path) -> None:
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.json").write_bytes(record("GHSA-secr-etre-cord"))
    dump = tmp_path / "vulns"
    dump.mkdir()
    (dump / "PYSEC-2026-7.json").write_bytes(record("PYSEC-2026-7"))
    (dump / "secret.json").symlink_to(outside / "secret.json")
    (dump / "private").symlink_to(outside, target_is_directory=True)
    result = import_dump(server, dump)
    assert result.returncode == 0, result.stderr
    assert "1 advisories stored" in result.stdout and "1 unreadable" in result.stdout
    assert "secret.json': cannot open it" in result.stdout
    with closing(sqlite3.connect(server.data_dir / "pypilite.db")) as db:
        assert db.execute("SELECT COUNT(*) FROM advisory WHERE id = 'GHSA-secr-etre-cord'").fetchone() == (0,)


def test_a_file_that_is_no_dump_is_one_line_and_changes_nothing(server: LiveServer, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    before = server.command("advisories", "status").stdout
    (tmp_path / "notes.zip").write_bytes(b"just text")
    with zipfile.ZipFile(tmp_path / "long-names.zip", "w") as archive:  # a 70 MB central directory
        for n in range(1100):
            archive.writestr(f"{n:04}{'x' * 64_000}.json", b"{}")
    # An end record that claims a billion members: zipfile would hold a ZipInfo for each.
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 0)  # write zip64 end records, whose count is 8 bytes
    with zipfile.ZipFile(tmp_path / "billion.zip", "w") as archive:
        archive.writestr("r.json", record("PYSEC-2026-9"))
    whole = (tmp_path / "billion.zip").read_bytes()
    at = whole.rindex(b"PK\x06\x06")
    claimed = (10**9).to_bytes(8, "little")
    (tmp_path / "billion.zip").write_bytes(whole[:at + 24] + claimed + claimed + whole[at + 40:])
    for name, why in (("notes.zip", "not a zip file nor a directory of OSV JSON records"),
                      ("long-names.zip", "a list of members larger than 64 MiB; not an OSV dump"),
                      ("billion.zip", "more than 500000 members; not an OSV dump")):
        result = import_dump(server, tmp_path / name, limit=MEMORY_LIMIT)
        assert (result.returncode, result.stdout, result.stderr) == (1, "", f"pypilite: {name}: {why}\n")
    assert server.command("advisories", "status").stdout == before


def test_old_advisories_warn_on_every_worker_and_nothing_fails(server: LiveServer, tmp_path: Path) -> None:
    path = tmp_path / "fresh.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("r.json", record("PYSEC-2026-8"))
    assert import_dump(server, path).returncode == 0
    with closing(sqlite3.connect(server.data_dir / "pypilite.db")) as db, db:
        db.execute("UPDATE advisory_import SET time = '2026-01-01 00:00:00'")
    for answer in health(server):
        assert (answer["status"], answer["advisories"], answer["warnings"]) == ("ok", "stale", ["advisories"])
        assert answer["advisories_age_seconds"] > 7 * 86400
    status = server.command("advisories", "status")
    assert "older than advisories.max_age (7d): import a newer dump" in status.stdout
