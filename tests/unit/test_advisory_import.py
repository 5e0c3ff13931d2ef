"""`python app.py advisories import PATH` and `advisories status`: OSV dumps as zips and directories, hostile ones
included (pypilite/advisory_sources.py)."""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import Any

import pytest

from pypilite import advisory_sources
from tests.conftest import call
from tests.unit.test_advisories import osv

pytestmark = pytest.mark.usefixtures("started")


@pytest.fixture
def started(config: str) -> None:
    """A data dir the server created."""
    from pypilite.config import load_config
    from pypilite.services import open_services
    open_services(load_config(config))


def dump(path: Path, members: dict[str, Any]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, content in members.items():
            archive.writestr(name, content if isinstance(content, bytes) else json.dumps(content))
    return path


def advisories_cli(capsys: pytest.CaptureFixture[str], config: str, *args: str) -> tuple[int, str, str]:
    return call(capsys, "advisories", *args, "--config", config)


def test_import_a_zip_then_status(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path) -> None:
    assert advisories_cli(capsys, config, "status")[1].startswith("no advisories imported yet")
    path = dump(tmp_path / "PyPI-all.zip", {
        "GHSA-aaaa-aaaa-aaaa.json": osv("GHSA-aaaa-aaaa-aaaa", versions=["1.0"]),
        "MAL-2026-1.json": osv("MAL-2026-1", package="evil", versions=["0.1"]),
        "README.txt": b"not a record",
        "nested/dir/": b""})
    code, out, _ = advisories_cli(capsys, config, "import", str(path))
    assert code == 0
    assert "2 advisories stored, 0 removed" in out and "0 unreadable" in out
    code, out, _ = advisories_cli(capsys, config, "status")
    assert code == 0 and out.startswith("2 advisories (1 about malicious packages), imported ")
    assert "from 'PyPI-all.zip', 0 minutes old" in out
    code, out, _ = advisories_cli(capsys, config, "import", str(path))  # idempotent
    assert code == 0 and "2 advisories stored" in out
    assert advisories_cli(capsys, config, "status")[1].startswith("2 advisories")


def test_import_a_directory(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path) -> None:
    records = tmp_path / "advisory-database" / "vulns"
    (records / "demo").mkdir(parents=True)
    (records / "demo" / "PYSEC-2026-1.json").write_text(json.dumps(osv("PYSEC-2026-1", versions=["1.0"])))
    (records / "demo" / "PYSEC-2026-2.JSON").write_text(json.dumps(osv("PYSEC-2026-2", versions=["1.0"])))
    (records / "demo" / "PYSEC-2026-3.yaml").write_text("id: PYSEC-2026-3\n")
    (records / "broken.json").write_text("{")
    (records / "link.json").symlink_to(records / "demo" / "PYSEC-2026-1.json")
    os.mkfifo(records / "fifo.json")
    (records / "loop").symlink_to(records, target_is_directory=True)
    code, out, _ = advisories_cli(capsys, config, "import", str(records.parent))
    assert code == 0
    assert f"skipped {str(records / 'broken.json')!r}: not a JSON document" in out
    assert "link.json'" in out and "fifo.json': not a regular file" in out
    assert "2 advisories stored" in out and "3 unreadable" in out


def test_hostile_zip_members(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path,
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisory_sources, "MAX_RECORD_BYTES", 8192)
    bomb = json.dumps({**osv("GHSA-bomb-bomb-bomb", versions=["1.0"]), "details": " " * 10_000_000}).encode()
    path = dump(tmp_path / "hostile.zip", {
        "../../../escape.json": osv("GHSA-esca-pede-scap", versions=["1.0"]),  # a name is only a label
        "/abs/olute.json": osv("GHSA-abso-lute-path", versions=["1.0"]),
        "bomb.json": bomb,
        "bad.json": b"\xff\xfe not json",
        "deep.json": b"[" * 3000 + b"]" * 3000,
        "number.json": b"1" * 5000,
        "null.json": b"null"})
    code, out, _ = advisories_cli(capsys, config, "import", str(path))
    assert code == 0
    assert "skipped 'bomb.json': larger than 8 KiB" in out
    assert "skipped 'bad.json': not a JSON document" in out
    assert "skipped 'deep.json': not a JSON document" in out and "skipped 'number.json': not a JSON document" in out
    assert "skipped 'null.json': not a JSON object" in out
    assert "2 advisories stored" in out and "5 unreadable" in out
    assert not (tmp_path / "escape.json").exists() and not Path("/abs/olute.json").exists()


def test_a_member_that_lies_about_its_size(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """A central directory that declares a small size for a large member: the read stops at the cap anyway."""
    monkeypatch.setattr(advisory_sources, "MAX_RECORD_BYTES", 4096)
    path = dump(tmp_path / "liar.zip", {"liar.json": b"[" + b"0," * 50_000 + b"0]"})
    original = zipfile.ZipFile.infolist

    def shrunk(self: zipfile.ZipFile) -> list[zipfile.ZipInfo]:
        infos = original(self)
        for info in infos:
            info.file_size = 10
        return infos
    monkeypatch.setattr(zipfile.ZipFile, "infolist", shrunk)
    code, out, _ = advisories_cli(capsys, config, "import", str(path))
    assert code == 0 and "skipped 'liar.json': " in out and "0 advisories stored" in out


def _four_records(tmp_path: Path) -> bytes:
    return dump(tmp_path / "whole.zip", {f"r{n}.json": osv(f"PYSEC-2026-{n}", versions=["1.0"])
                                         for n in range(4)}).read_bytes()


@pytest.mark.parametrize(("damage", "why"), [
    (lambda whole: whole[:200], "not a zip file nor a directory of OSV JSON records"),
    (lambda whole: whole.replace(b"PK\x01\x02", b"XX\x01\x02", 1), "a broken zip file"),
])
def test_not_a_dump(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path, damage: Any, why: str) -> None:
    path = tmp_path / "dump.zip"
    path.write_bytes(damage(_four_records(tmp_path)))
    code, out, err = advisories_cli(capsys, config, "import", str(path))
    assert code == 1 and out == ""
    assert err.startswith(f"pypilite: dump.zip: {why}") and err.count("\n") == 1


def test_members_outside_the_file(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path) -> None:
    """The end record's offsets point before the file's start: a member is unreadable, never a traceback."""
    path = tmp_path / "dump.zip"
    path.write_bytes(_four_records(tmp_path)[300:])
    code, out, _ = advisories_cli(capsys, config, "import", str(path))
    assert code == 0 and "skipped 'r0.json': a broken zip member" in out


def test_too_many_members(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path,
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisory_sources, "MAX_MEMBERS", 3)
    path = dump(tmp_path / "many.zip", {f"r{n}.json": osv(f"PYSEC-2026-{n}", versions=["1.0"]) for n in range(4)})
    code, _, err = advisories_cli(capsys, config, "import", str(path))
    assert code == 1 and err == "pypilite: many.zip: more than 3 members; not an OSV dump\n"
    assert advisories_cli(capsys, config, "status")[1].startswith("no advisories imported yet")


def test_an_empty_source_imports_nothing(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "README.md").write_text("records are elsewhere")
    code, _, err = advisories_cli(capsys, config, "import", str(tmp_path / "empty"))
    assert code == 1 and err == "pypilite: empty: no .json records in it; nothing imported\n"
    code, _, err = advisories_cli(capsys, config, "import", str(dump(tmp_path / "e.zip", {"notes.txt": b"x"})))
    assert code == 1 and err == "pypilite: e.zip: no .json records in it; nothing imported\n"
    assert advisories_cli(capsys, config, "status")[1].startswith("no advisories imported yet")


def test_too_many_files_in_a_directory(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisory_sources, "MAX_MEMBERS", 3)
    (tmp_path / "vulns").mkdir()
    for n in range(5):
        (tmp_path / "vulns" / f"r{n}.json").write_text(json.dumps(osv(f"PYSEC-2026-{n}", versions=["1.0"])))
    code, _, err = advisories_cli(capsys, config, "import", str(tmp_path / "vulns"))
    assert code == 1 and err == "pypilite: vulns: more than 3 .json files; not an OSV dump\n"


def test_too_large_a_central_directory(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisory_sources, "MAX_DIRECTORY_BYTES", 2**20)
    path = dump(tmp_path / "names.zip", {f"{n:04}{'x' * 60_000}.json": b"{}" for n in range(20)})
    code, _, err = advisories_cli(capsys, config, "import", str(path))
    assert code == 1 and err == "pypilite: names.zip: a list of members larger than 1 MiB; not an OSV dump\n"


def test_status_says_when_data_is_too_old(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path) -> None:
    from pypilite.database import database
    from pypilite.models import AdvisoryImport, utcnow
    path = dump(tmp_path / "old.zip", {"a.json": osv("PYSEC-2026-1", versions=["1.0"])})
    advisories_cli(capsys, config, "import", str(path))
    with database.connection_context():
        AdvisoryImport.update(time=utcnow().replace(year=2025)).execute()
    code, out, _ = advisories_cli(capsys, config, "status")
    assert code == 0 and " days old\n" in out
    assert "older than advisories.max_age (7d): import a newer dump" in out


@pytest.mark.parametrize(("raw", "environ", "seconds"), [
    ({}, {}, 7 * 86400),
    ({"advisories": {"max_age": "90m"}}, {}, 5400),
    ({"advisories": {"max_age": "12h"}}, {}, 43200),
    ({}, {"PYPILITE_ADVISORIES_MAX_AGE": "0"}, 0),
])
def test_max_age(raw: dict[str, Any], environ: dict[str, str], seconds: int) -> None:
    from pypilite.config import build_config
    assert build_config(raw, environ).advisories_max_age == seconds


@pytest.mark.parametrize("value", ["7", "7 days", "-1d", "1w", "", 7])
def test_bad_max_age_stops_start_up(value: Any) -> None:
    from pypilite.config import ConfigError, build_config
    with pytest.raises(ConfigError, match=r"^advisories\.max_age must be "):
        build_config({"advisories": {"max_age": value}}, {})


def test_an_import_is_audited(capsys: pytest.CaptureFixture[str], config: str, tmp_path: Path) -> None:
    from pypilite.database import database
    from pypilite.models import AuditEvent
    path = dump(tmp_path / "audited.zip", {"a.json": osv("PYSEC-2026-1", versions=["1.0"]), "b.json": b"{"})
    advisories_cli(capsys, config, "import", str(path))
    with database.connection_context():
        (event,) = AuditEvent.select().where(AuditEvent.action == "advisories.import")
    assert (event.actor.startswith("cli:"), event.resource_type, event.resource) == (True, "advisories", "audited.zip")
    assert json.loads(event.detail) == {"stored": 1, "removed": 0, "unreadable": 1}
