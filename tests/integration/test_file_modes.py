"""The database holds password hashes and upstream credentials: it, its WAL files and its backups are the
owner's alone, from the first start on, and a data dir left readable by an earlier version is fixed."""

from __future__ import annotations

import hashlib
import stat
from pathlib import Path

import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import start_server, stop_server

SECRETS = ("pypilite.db", "pypilite.db-wal", "pypilite.db-shm", "initial-admin-password")


def _modes(data_dir: Path) -> dict[str, int]:
    return {name: stat.S_IMODE((data_dir / name).stat().st_mode) for name in SECRETS}


def test_the_database_and_its_backups_are_the_owners_alone(tmp_path: Path) -> None:
    server = start_server("gunicorn", tmp_path)
    try:
        data = wheel_bytes("demo", "1.0")
        requests.post(f"{server.url}/local/", auth=("admin", server.admin_password), timeout=30, data={
            ":action": "file_upload", "protocol_version": "1", "name": "demo", "version": "1.0",
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()},
            files={"content": ("demo-1.0-py3-none-any.whl", data)}).raise_for_status()
        assert _modes(server.data_dir) == dict.fromkeys(SECRETS, 0o600)
        backup = server.command("backup", str(tmp_path / "backup"))
        assert backup.returncode == 0, backup.stderr
        assert stat.S_IMODE((tmp_path / "backup" / "pypilite.db").stat().st_mode) == 0o600
    finally:
        stop_server(server.process)

    for name in ("pypilite.db", "pypilite.db-wal", "pypilite.db-shm"):  # as pypilite 0.1.0 left them
        if (server.data_dir / name).exists():
            (server.data_dir / name).chmod(0o644)
    (tmp_path / "again").mkdir()
    again = start_server("gunicorn", tmp_path / "again", data_dir=server.data_dir)
    try:
        assert requests.get(f"{again.url}/local/simple/demo/", timeout=10).status_code == 200
        assert _modes(again.data_dir) == dict.fromkeys(SECRETS, 0o600)
    finally:
        stop_server(again.process)
