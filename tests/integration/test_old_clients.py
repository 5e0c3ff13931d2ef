"""Older clients than the test environment's own, downloaded by the README's test command into tests/.clients:
pip 23.0.1 (what Debian 12 ships) crashed on every PEP 691 JSON page that carried the legacy
dist-info-metadata key as PEP 658 wrote it (a dict), so it could install nothing, not even a newer pip."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import ROOT, LiveServer, new_venv, run

CLIENTS = ROOT / "tests" / ".clients"
OLD_PIPS = ("23.0.1",)


def _wheel(version: str) -> Path:
    found = CLIENTS / f"pip-{version}-py3-none-any.whl"
    if not found.is_file():
        pytest.fail(f"{found} is missing: the README's test command makes it (python -m tests.clients)")
    return found


@pytest.mark.parametrize("version", OLD_PIPS)
def test_an_old_pip_installs_from_json_pages(live: LiveServer, client_env: dict[str, str], tmp_path: Path,
                                             version: str) -> None:
    data = wheel_bytes("old-pip-demo", "1.0")
    uploaded = requests.post(f"{live.url}/local/", auth=("admin", live.admin_password), timeout=30, data={
        ":action": "file_upload", "protocol_version": "1", "name": "old-pip-demo", "version": "1.0",
        "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()},
        files={"content": ("old_pip_demo-1.0-py3-none-any.whl", data)})
    assert uploaded.status_code == 200, uploaded.text
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--no-index", _wheel(version)], env=client_env)
    assert f"pip {version}" in run([python, "-m", "pip", "--version"], env=client_env).stdout
    for index in (live.simple("local"), live.simple()):  # hosted, and the group
        run([python, "-m", "pip", "install", "--force-reinstall", "--index-url", index, "old-pip-demo"],
            env=client_env)
