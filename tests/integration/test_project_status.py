"""PEP 792 on hosted projects, end to end with the real server and the real pip, uv and twine: a quarantined
project cannot be installed nor uploaded to; an archived one installs, says so, and takes no uploads; a
deprecated one installs and says so."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import LiveServer, build, make_project, new_venv, run, start_server, stop_server, uv

JSON = "application/vnd.pypi.simple.v1+json"
STATUSES = {"quarantined-pkg": "quarantined", "archived-pkg": "archived", "deprecated-pkg": "deprecated"}


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"status-{request.param}")
    live = start_server(request.param, tmp)
    env = {**live.env, "HOME": str(tmp / "home")}
    for project, status in STATUSES.items():
        dists = build(make_project(tmp / "src", project, "1.0"), tmp / "dist" / project, env)
        _twine(live, env, *dists)
        # Half through the API, half through the CLI: the same service behind both doors.
        if status == "archived":
            result = live.command("project", "status", "local", project, status, "--reason", f"{status} for test")
            assert result.returncode == 0, result.stderr
        else:
            response = requests.put(f"{live.url}/api/v1/repos/local/projects/{project}/status",
                                    json={"status": status, "reason": f"{status} for test"},
                                    auth=("admin", live.admin_password), timeout=30)
            assert response.status_code == 200, response.text
    yield live
    stop_server(live.process)


def _twine(live: LiveServer, env: dict[str, str], *dists: Path, check: bool = True):
    return run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                "--repository-url", f"{live.url}/local/", "-u", "admin", f"--password={live.admin_password}",
                *dists], env=env, check=check)


def _pip(server: LiveServer, env: dict[str, str], tmp_path: Path, project: str):
    python = new_venv(tmp_path / "venv", env)
    return run([python, "-m", "pip", "install", "--no-cache-dir", "--index-url", server.simple(), project],
               env=env, check=False)


def _uv(server: LiveServer, env: dict[str, str], tmp_path: Path, project: str):
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=env)
    return run([uv(), "pip", "install", "--no-cache", "--python", venv / "bin" / "python", "--index-url",
                server.simple(), project], env=env, check=False)


@pytest.mark.parametrize("installer", [_pip, _uv])
def test_a_quarantined_project_cannot_be_installed(server, client_env, tmp_path, installer) -> None:
    result = installer(server, client_env, tmp_path, "quarantined-pkg")
    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "No matching distribution found for quarantined-pkg" in output or "no versions of quarantined-pkg" in output
    page = requests.get(f"{server.simple()}quarantined-pkg/", headers={"Accept": JSON}, timeout=30).json()
    assert page["files"] == [] and page["project-status"] == {"status": "quarantined",
                                                              "reason": "quarantined for test"}


@pytest.mark.parametrize("project", ["archived-pkg", "deprecated-pkg"])
@pytest.mark.parametrize("installer", [_pip, _uv])
def test_archived_and_deprecated_projects_install_and_say_so(server, client_env, tmp_path, installer,
                                                             project: str) -> None:
    result = installer(server, client_env, tmp_path, project)
    assert result.returncode == 0, result.stdout + result.stderr
    page = requests.get(f"{server.simple()}{project}/", headers={"Accept": JSON}, timeout=30).json()
    status = STATUSES[project]
    assert page["meta"]["api-version"] == "1.4"
    assert page["project-status"] == {"status": status, "reason": f"{status} for test"}
    html = requests.get(f"{server.simple()}{project}/", timeout=30).text
    assert f'<meta name="pypi:project-status" content="{status}">' in html


@pytest.mark.parametrize("project", ["quarantined-pkg", "archived-pkg"])
def test_closed_projects_refuse_uploads_in_one_line(server, client_env, tmp_path, project: str) -> None:
    dists = build(make_project(tmp_path / "src", project, "2.0"), tmp_path / "dist", client_env)
    result = _twine(server, client_env, *dists, check=False)
    assert result.returncode != 0
    status = STATUSES[project]
    said = " ".join((result.stdout + result.stderr).split())  # twine wraps its lines
    assert f"Project {project} is {status} in repository 'local' and takes no new files: {status} for test" in said
    published = run([uv(), "publish", "--publish-url", f"{server.url}/local/", "--username", "admin",
                     f"--password={server.admin_password}", "--trusted-publishing", "never", "--no-progress",
                     *dists], env=client_env, check=False)
    assert published.returncode != 0 and f"is {status}" in published.stdout + published.stderr
    page = requests.get(f"{server.simple()}{project}/", headers={"Accept": JSON}, timeout=30).json()
    assert "2.0" not in page["versions"]


def test_a_deprecated_project_still_takes_uploads(server, client_env, tmp_path) -> None:
    dists = build(make_project(tmp_path / "src", "deprecated-pkg", "2.0"), tmp_path / "dist", client_env)
    _twine(server, client_env, *dists)
