"""The processes themselves: a bad configuration stops `python app.py` and gunicorn with one line naming
the key, never a traceback."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.integration.conftest import ROOT, free_port, isolated_env, run

COMMANDS = {
    "app": [sys.executable, "app.py"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "1", "wsgi:app"],
}


@pytest.mark.parametrize("mode", sorted(COMMANDS))
@pytest.mark.parametrize("setting, words", [
    ({"PYPILITE_SERVER_PORT": "eighty"}, "PYPILITE_SERVER_PORT must be an integer"),
    ({"PYPILITE_SERVER_POTR": "1"}, "unknown config variable: PYPILITE_SERVER_POTR"),
    ({"PYPILITE_CONFIG": "/nonexistent/pypilite.toml"}, "config file not found"),
])
def test_bad_configuration_stops_with_one_line(tmp_path: Path, mode: str, setting: dict[str, str],
                                               words: str) -> None:
    env = isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"),
                       PYPILITE_SERVER_HOST="127.0.0.1", **{"PYPILITE_SERVER_PORT": str(free_port()), **setting})
    result = run(COMMANDS[mode], env=env, cwd=ROOT, check=False, timeout=60)
    assert result.returncode != 0
    assert f"pypilite: {words}" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_bad_toml_is_one_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[server]\nport = \n")
    env = isolated_env(tmp_path / "home")
    result = run([sys.executable, "app.py", "serve", "--config", config], env=env, cwd=ROOT, check=False)
    assert result.returncode == 1
    assert result.stderr.startswith("pypilite: invalid TOML") and result.stderr.count("\n") == 1
