"""A proxy whose upstream is this server: refused at start when the URL says so (the default proxy reads pip's
configuration, which a team points at pypilite), and cut at once on the wire when it does not."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import ROOT, free_port, isolated_env, run, start_server, stop_server

COMMANDS = {
    "app": [sys.executable, "app.py", "--dev"],
    "pypilite": [sys.executable, "app.py"],
    "gunicorn": [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "--workers", "2", "wsgi:app"],
}


@pytest.mark.parametrize("mode", sorted(COMMANDS))
@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_default_proxy_on_pip_pointed_here_refuses_to_start(tmp_path: Path, mode: str, host: str) -> None:
    port = free_port()
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text(f"[global]\nindex-url = http://{host}:{port}/simple/\n")
    env = isolated_env(tmp_path / "home", PIP_CONFIG_FILE=str(pip_conf),
                       PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"),
                       PYPILITE_SERVER_HOST="127.0.0.1", PYPILITE_SERVER_PORT=str(port))
    result = run(COMMANDS[mode], env=env, cwd=ROOT, check=False, timeout=60)
    line = (f"pypilite: proxy repository 'pypi' would fetch from this server itself (http://{host}:{port}/simple/, "
            "its pip's index-url on this machine): set its remote_url to the upstream index")
    assert result.returncode != 0 and line in result.stderr.splitlines()


def test_repo_list_names_the_upstream_in_use(tmp_path: Path) -> None:
    pip_conf = tmp_path / "pip.conf"
    pip_conf.write_text("[global]\nindex-url = http://mirror.invalid/simple/\n")
    env = isolated_env(tmp_path / "home", PIP_CONFIG_FILE=str(pip_conf),
                       PYPILITE_STORAGE_DATA_DIR=str(tmp_path / "data"))
    (tmp_path / "data").mkdir()
    listed = run([sys.executable, "app.py", "repo", "list"], env=env, cwd=ROOT).stdout
    assert ("pypi\tproxy\tpublic\tremote_url=http://mirror.invalid/simple/ (pip's index-url on this machine) "
            "cache_ttl=") in listed


def test_a_loop_the_url_hides_is_cut_on_the_wire(tmp_path: Path) -> None:
    server = start_server("gunicorn", tmp_path, workers=2)
    try:
        # Added while serving, so the start-up check never saw it: the wire must catch it.
        added = server.command("repo", "add", "loop", "--type", "proxy", "--remote-url", f"{server.url}/loop/simple/")
        assert added.returncode == 0, added.stderr
        response = requests.get(f"{server.url}/loop/simple/anything/", timeout=60)
        assert response.status_code == 502 and "508" in response.text
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
        assert "a proxy repository's upstream is this server" in server.log.read_text()
        # The marker is the index's own: another index's proxy (another key) still reads this one.
        foreign = requests.get(f"{server.url}/local/simple/", headers={"X-Pypilite-Loop": "0" * 32}, timeout=10)
        assert foreign.status_code == 200
    finally:
        stop_server(server.process)
