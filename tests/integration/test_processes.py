"""The processes themselves: a bad configuration stops `python app.py` and gunicorn with one line naming
the key, never a traceback."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import ROOT, free_port, isolated_env, run, stop_server

COMMANDS = {
    "app": [sys.executable, "app.py", "--dev"],
    "pypilite": [sys.executable, "app.py"],
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


def test_embedded_defaults_serve_without_a_config(tmp_path: Path) -> None:
    """No config file at all: the contract's repositories exist and answer (nothing here asks the upstream)."""
    port = free_port()
    env = isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"),
                       PYPILITE_SERVER_HOST="127.0.0.1", PYPILITE_SERVER_PORT=str(port))
    process = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        for path in ("/simple/", "/local/simple/", "/pypi/simple/", "/all/simple/"):
            assert requests.get(url + path, timeout=5).status_code == 200, path
        assert (tmp_path / "data" / "initial-admin-password").is_file()
    finally:
        stop_server(process)


def test_gunicorn_believes_no_forwarded_header(tmp_path: Path) -> None:
    """gunicorn.conf.py lets gunicorn skip its check of the peer's address ("*"): that is safe only while it has
    no header to believe, from anyone (pypilite reads X-Forwarded-* itself, from a proxy on this machine)."""
    env = isolated_env(tmp_path / "home", PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"),
                       PROMETHEUS_MULTIPROC_DIR=str(tmp_path / "metrics"))
    result = run([*COMMANDS["gunicorn"], "--print-config"], env=env, cwd=ROOT, timeout=60)
    settings = {key.strip(): value.strip() for key, _, value in
                (line.partition(" = ") for line in result.stdout.splitlines())}
    assert settings["forwarded_allow_ips"] == "['*']"
    assert settings["secure_scheme_headers"] == "{}" and settings["forwarder_headers"] == "[]"
