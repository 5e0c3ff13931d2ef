"""`import DIR --repo NAME`: every distribution file under DIR through the upload checks, counted exactly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pypilite.database import database
from pypilite.models import AuditEvent, File
from tests.conftest import call
from tests.distfactory import sdist_bytes, wheel_bytes

ROOT = Path(__file__).resolve().parents[2]
GOOD_PROJECTS = 449  # a wheel and an sdist each
DUPLICATES = 40
CONFLICTS = 5
IGNORED = 20


def write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def broken_files() -> dict[str, tuple[bytes, str]]:
    """filename -> (bytes, words the rejection must contain)"""
    files: dict[str, tuple[bytes, str]] = {}
    for i in range(10):
        whole = wheel_bytes(f"trunc{i}", "1.0")
        files[f"trunc{i}-1.0-py3-none-any.whl"] = (whole[: len(whole) // 2], "not a zip archive, or a truncated one")
        files[f"wrong{i}-1.0-py3-none-any.whl"] = (wheel_bytes(f"other{i}", "1.0"), "expected one wrong")
        files[f"text{i}-1.0.tar.gz"] = (b"this is not an archive\n" * 10, "not a gzip-compressed tar archive")
    files["..evil-1.0.tar.gz"] = (sdist_bytes("evil", "1.0"), "not a plain file name")
    files[".hidden-1.0.tar.gz"] = (sdist_bytes("hidden", "1.0"), "not a plain file name")
    files["back\\slash-1.0.tar.gz"] = (sdist_bytes("slash", "1.0"), "not a plain file name")
    files["bell\x07-1.0.tar.gz"] = (sdist_bytes("bell", "1.0"), "not a plain file name")
    files["empty-1.0.tar.gz"] = (b"", "the file is empty")
    files["metaname-1.0.tar.gz"] = (sdist_bytes("metaname", "1.0", root="metaname-1.0",
                                                 metadata="Metadata-Version: 2.1\nName: impostor\nVersion: 1.0\n"),
                                    "does not match")
    files["legacy-1.0-py3.11.egg"] = (b"an egg", "neither a wheel")
    return files


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,000 files: good ones in a/, byte-identical copies in b/, other bytes under taken names in c/,
    broken ones in d/, and files that are no distributions at all."""
    root = tmp_path_factory.mktemp("corpus") / "packages"
    good = []
    for i in range(GOOD_PROJECTS):
        name = f"proj{i:03d}"
        for filename, data in ((f"{name}-1.0-py3-none-any.whl", wheel_bytes(name, "1.0")),
                               (f"{name}-1.0.tar.gz", sdist_bytes(name, "1.0"))):
            write(root / "a" / f"shard{i % 7}" / filename, data)
            good.append((filename, data))
    for filename, data in good[:DUPLICATES]:
        write(root / "b" / filename, data)
    for i in range(CONFLICTS):
        name = f"proj{i:03d}"
        write(root / "c" / f"{name}-1.0-py3-none-any.whl", wheel_bytes(name, "1.0", requires_python=">=3.8"))
    for filename, (data, _words) in broken_files().items():
        write(root / "d" / filename, data)
    for i in range(IGNORED // 4):
        for suffix in (".asc", ".metadata", ".html", ".json"):
            write(root / "a" / f"proj{i:03d}-1.0-py3-none-any.whl{suffix}" if suffix != ".html"
                  else root / "a" / f"index{i}.html", b"x")
    assert sum(1 for p in root.rglob("*") if p.is_file()) == 2 * GOOD_PROJECTS + DUPLICATES + CONFLICTS + len(
        broken_files()) + IGNORED == 1000
    return root


def test_a_thousand_files_counted_exactly_and_a_second_run_imports_nothing(capsys, corpus: Path,
                                                                          config: str) -> None:
    code, out, err = call(capsys, "import", str(corpus), "--repo", "local", "--config", config)
    broken = broken_files()
    rejected = CONFLICTS + len(broken)
    assert out.splitlines()[-1] == (f"{2 * GOOD_PROJECTS} imported, {DUPLICATES} skipped as identical, "
                                    f"{rejected} rejected, {IGNORED} ignored (not distributions) into 'local'")
    assert code == 1 and err == f"pypilite: {rejected} of {2 * GOOD_PROJECTS + DUPLICATES + rejected} files rejected " \
                                "(listed above)\n"
    reasons = dict(line.removeprefix("rejected ").split(": ", 1) for line in out.splitlines()[:-1])
    assert len(reasons) == rejected
    for filename, (_data, words) in broken.items():
        assert words in reasons[f"d/{filename}"], (filename, reasons[f"d/{filename}"])
    for i in range(CONFLICTS):
        assert reasons[f"c/proj{i:03d}-1.0-py3-none-any.whl"].startswith("File already exists")

    with database.connection_context():
        assert File.select().count() == 2 * GOOD_PROJECTS
        uploads = AuditEvent.select().where(AuditEvent.action == "file.upload")
        assert uploads.count() == 2 * GOOD_PROJECTS
        assert {event.actor.split(":")[0] for event in uploads} == {"cli"}

    code, out, _ = call(capsys, "import", str(corpus), "--repo", "local", "--config", config)
    assert code == 1
    assert out.splitlines()[-1] == (f"0 imported, {2 * GOOD_PROJECTS + DUPLICATES} skipped as identical, "
                                    f"{rejected} rejected, {IGNORED} ignored (not distributions) into 'local'")
    assert call(capsys, "check", "--config", config)[0] == 0


def test_a_clean_directory_exits_zero_and_a_group_imports_into_its_upload_to(capsys, tmp_path: Path,
                                                                            config: str) -> None:
    write(tmp_path / "dl" / "demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    code, out, _ = call(capsys, "import", str(tmp_path / "dl"), "--repo", "all", "--config", config)
    assert code == 0 and out == "1 imported, 0 skipped as identical, 0 rejected, 0 ignored (not distributions) " \
                                "into 'local'\n"
    with database.connection_context():
        assert [f.filename for f in File.select()] == ["demo-1.0-py3-none-any.whl"]


def test_an_empty_directory_imports_nothing(capsys, tmp_path: Path, config: str) -> None:
    (tmp_path / "empty").mkdir()
    code, out, _ = call(capsys, "import", str(tmp_path / "empty"), "--repo", "local", "--config", config)
    assert code == 0 and out.startswith("0 imported")


def test_oversized_files_are_rejected_with_the_limit(capsys, tmp_path: Path) -> None:
    config = tmp_path / "small.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[server]\nmax_upload_mb = 1\n')
    write(tmp_path / "dl" / "big-1.0.tar.gz", b"\0" * (2 * 2**20))
    (tmp_path / "data").mkdir()
    code, out, _ = call(capsys, "import", str(tmp_path / "dl"), "--repo", "local", "--config", str(config))
    assert code == 1 and "rejected big-1.0.tar.gz: File too large: the limit is 1 MB" in out
    assert list((tmp_path / "data" / "tmp").iterdir()) == []


def test_an_unreadable_file_is_rejected_not_fatal(capsys, tmp_path: Path, config: str, monkeypatch) -> None:
    write(tmp_path / "dl" / "demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    write(tmp_path / "dl" / "locked-1.0-py3-none-any.whl", wheel_bytes("locked", "1.0"))
    real_open = os.open

    def refusing(path, *args, **kwargs):
        if Path(path).name.startswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kwargs)
    monkeypatch.setattr(os, "open", refusing)
    code, out, _ = call(capsys, "import", str(tmp_path / "dl"), "--repo", "local", "--config", config)
    assert code == 1 and "rejected locked-1.0-py3-none-any.whl: cannot read the file: Permission denied" in out
    assert out.splitlines()[-1].startswith("1 imported")


def test_links_out_of_the_directory_and_special_files_are_not_imported(capsys, tmp_path: Path,
                                                                       config: str) -> None:
    """Run as root on a folder someone else can write to, import must not read what that someone cannot."""
    outside = tmp_path / "elsewhere"
    write(outside / "private-1.0-py3-none-any.whl", wheel_bytes("private", "1.0"))
    write(outside / "deep" / "deeper-1.0-py3-none-any.whl", wheel_bytes("deeper", "1.0"))
    folder = tmp_path / "dl"
    write(folder / "real" / "inside-1.0-py3-none-any.whl", wheel_bytes("inside", "1.0"))
    (folder / "copy").mkdir()
    (folder / "copy" / "inside-1.0-py3-none-any.whl").symlink_to(folder / "real" / "inside-1.0-py3-none-any.whl")
    (folder / "private-1.0-py3-none-any.whl").symlink_to(outside / "private-1.0-py3-none-any.whl")
    (folder / "up").symlink_to(outside / "deep", target_is_directory=True)
    os.mkfifo(folder / "fifo-1.0-py3-none-any.whl")
    code, out, _ = call(capsys, "import", str(folder), "--repo", "local", "--config", config)
    assert code == 1
    assert f"rejected private-1.0-py3-none-any.whl: a link to a file outside {folder}; not imported" in out
    # A link inside the folder is the same bytes as the file it names; the FIFO is never opened.
    assert out.splitlines()[-1] == "1 imported, 1 skipped as identical, 1 rejected, 1 ignored (not distributions) " \
                                   "into 'local'"
    with database.connection_context():
        assert [f.filename for f in File.select()] == ["inside-1.0-py3-none-any.whl"]


@pytest.mark.parametrize("args, words", [
    (["--repo", "ghost"], "repository 'ghost' not found"),
    (["--repo", "pypi"], "is a proxy of an upstream index; upload to a hosted repository"),
    ([], "Missing option '--repo'"),
])
def test_refusals_are_one_line(capsys, tmp_path: Path, config: str, args: list[str], words: str) -> None:
    (tmp_path / "dl").mkdir()
    code, out, err = call(capsys, "import", str(tmp_path / "dl"), *args, "--config", config)
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and err.startswith("pypilite: ") and words in err


def test_a_group_without_upload_to_is_refused(capsys, tmp_path: Path, config: str) -> None:
    (tmp_path / "dl").mkdir()
    assert call(capsys, "repo", "add", "both", "--type", "group", "--member", "local", "--config", config)[0] == 0
    code, _, err = call(capsys, "import", str(tmp_path / "dl"), "--repo", "both", "--config", config)
    assert code == 1 and err == "pypilite: group 'both' has no hosted upload_to repository; upload to a hosted " \
                                "repository\n"


def test_the_command_in_a_subprocess(tmp_path: Path, config: str) -> None:
    """Exit statuses and one-line errors as a shell sees them."""
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "app.py", "import", *args, "--config", config], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)

    missing = run(str(tmp_path / "nowhere"), "--repo", "local")
    assert missing.returncode == 2 and missing.stderr.count("\n") == 1 and "does not exist" in missing.stderr
    write(tmp_path / "afile", b"x")
    not_dir = run(str(tmp_path / "afile"), "--repo", "local")
    assert not_dir.returncode == 2 and not_dir.stderr.count("\n") == 1 and "is a file" in not_dir.stderr
    write(tmp_path / "dl" / "demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    write(tmp_path / "dl" / "demo-1.0.tar.gz", b"broken")
    mixed = run(str(tmp_path / "dl"), "--repo", "local")
    assert mixed.returncode == 1 and "Traceback" not in mixed.stderr
    # (the first command to open the data dir also logs the first admin's password, once)
    assert mixed.stderr.splitlines()[-1] == "pypilite: 1 of 2 files rejected (listed above)"
    assert mixed.stdout.splitlines() == [
        "rejected demo-1.0.tar.gz: Invalid sdist: not a gzip-compressed tar archive, or a truncated one",
        "1 imported, 0 skipped as identical, 1 rejected, 0 ignored (not distributions) into 'local'"]
    (tmp_path / "dl" / "demo-1.0.tar.gz").unlink()
    again = run(str(tmp_path / "dl"), "--repo", "local")
    assert again.returncode == 0 and again.stdout.startswith("0 imported, 1 skipped as identical")


def test_a_full_disk_stops_the_import_in_one_line(capsys, tmp_path: Path, config: str, monkeypatch) -> None:
    import errno

    from pypilite.storage import LocalBlobStore
    for version in ("1.0", "2.0"):
        write(tmp_path / "dl" / f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version))
    real_commit = LocalBlobStore.commit
    commits = []

    def filling_up(self, blob):
        if len(commits) >= 2:  # the first wheel and its metadata fit, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        commits.append(blob)
        return real_commit(self, blob)
    monkeypatch.setattr(LocalBlobStore, "commit", filling_up)
    code, out, err = call(capsys, "import", str(tmp_path / "dl"), "--repo", "local", "--config", config)
    assert code == 1 and out == ""
    assert err == "pypilite: import into 'local' stopped after 1 of 2 files: No space left on device\n"
    assert list((tmp_path / "data" / "tmp").iterdir()) == []
    with database.connection_context():
        assert [f.filename for f in File.select()] == ["demo-1.0-py3-none-any.whl"]
