"""A [[repository]] edited in the config after the repository exists changes nothing (the database is what
is served): the server says so once per differing key at start, and `repo update` applies it."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import TEST_REPOSITORIES
from tests.integration.conftest import start_server, stop_server

EDITED = [
    {"name": "local", "repository_type": "hosted", "public": False},
    {**TEST_REPOSITORIES[1], "cache_ttl": 30, "remote_url": "http://user:secret@127.0.0.1:9/simple/"},
    TEST_REPOSITORIES[2],
    {"name": "team", "repository_type": "hosted"},  # new: created, nothing to compare
]


def _warnings(log: Path) -> list[str]:
    return [line.split(": ", 1)[1] for line in log.read_text().splitlines()
            if "WARNING pypilite.preflight" in line]


@pytest.mark.parametrize("mode", ["app", "gunicorn"])
def test_each_drifted_key_is_said_once_and_repo_update_applies_it(tmp_path: Path, mode: str) -> None:
    for run in ("first", "edited", "again"):
        (tmp_path / run).mkdir()
    first = start_server(mode, tmp_path / "first")
    stop_server(first.process)
    edited = start_server(mode, tmp_path / "edited", EDITED, data_dir=first.data_dir)
    try:
        warnings = _warnings(edited.log)
        assert warnings == [
            "repository 'local': the config sets public = false, the database has true, which is served; apply "
            "the config with `python app.py repo update local --private`",
            "repository 'pypi': the config sets cache_ttl = 30, the database has 600, which is served; apply the "
            "config with `python app.py repo update pypi --cache-ttl 30`",
            "repository 'pypi': the config sets remote_url = 'http://***@127.0.0.1:9/simple/', the database has "
            f"'{TEST_REPOSITORIES[1]['remote_url']}', which is served; apply the config with `python app.py repo "
            "update pypi --remote-url URL  (the config's, with its credentials)`",
        ]
        assert "secret" not in edited.log.read_text()
        for command in (["repo", "update", "local", "--private"], ["repo", "update", "pypi", "--cache-ttl", "30",
                        "--remote-url", EDITED[1]["remote_url"]]):
            result = edited.command(*command)
            assert result.returncode == 0, result.stderr
    finally:
        stop_server(edited.process)
    again = start_server(mode, tmp_path / "again", EDITED, data_dir=first.data_dir)
    try:
        assert _warnings(again.log) == []
    finally:
        stop_server(again.process)
