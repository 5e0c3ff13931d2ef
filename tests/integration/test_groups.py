"""Groups with the real pip and twine: one URL for team and public packages, safe from dependency
confusion, with a pass-through list, private members kept private, and uploads landing in upload_to."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator

import pytest
import requests
from packaging.utils import canonicalize_name

from tests.integration.conftest import (
    LiveServer,
    build,
    isolated_env,
    make_project,
    new_venv,
    run,
    start_server,
    stop_server,
)
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    dists = [wheel("public-dep", "1.0"), wheel("team-tool", "9.0"), wheel("shared-name", "2.0"),
             wheel("secret-thing", "5.0")]
    server = Upstream(tmp_path_factory.mktemp("group-upstream"), dists, json_api=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def group(request, upstream, tmp_path_factory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"group-{request.param}")
    server = start_server(request.param, tmp, [
        {"name": "local", "repository_type": "hosted"},
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2},
        {"name": "all", "repository_type": "group", "members": ["team", "local", "pypi"], "upload_to": "local",
         "pass_through": ["Shared_Name"]},
    ])
    yield server
    stop_server(server.process)


@pytest.fixture(scope="module")
def published(group: LiveServer, tmp_path_factory) -> LiveServer:
    """The team's packages, uploaded with twine through the group URL (so they land in `local`), plus one
    in the private `team` repository."""
    tmp = tmp_path_factory.mktemp("group-dists")
    env = isolated_env(tmp / "home")
    for name, version, deps, repo in (("team-tool", "1.0", ("public-dep",), "all"),
                                      ("shared-name", "1.0", (), "all"),
                                      ("secret-thing", "1.0", (), "team")):
        dists = build(make_project(tmp, name, version, dependencies=deps), tmp / name, env)
        run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
             "--repository-url", f"{group.url}/{repo}/", "-u", "admin", f"--password={group.admin_password}", *dists],
            env=env)
    return group


def files(server: LiveServer, repo: str, project: str, auth=None) -> list[str]:
    response = requests.get(f"{server.simple(repo)}{project}/", headers={"Accept": JSON}, auth=auth, timeout=30)
    response.raise_for_status()
    return [f["filename"] for f in response.json()["files"]]


def test_upload_to_the_group_lands_in_upload_to(published: LiveServer) -> None:
    assert files(published, "local", "team-tool") == ["team_tool-1.0-py3-none-any.whl", "team_tool-1.0.tar.gz"]


def test_hosted_package_with_an_upstream_dependency_installs(published, client_env, tmp_path) -> None:
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", published.simple(), "team-tool"], env=client_env)
    shown = run([python, "-m", "pip", "list", "--format", "json"], env=client_env).stdout
    assert '"name": "team-tool", "version": "1.0"' in shown and '"name": "public-dep", "version": "1.0"' in shown


def test_upstream_cannot_outbid_a_hosted_name(published, client_env, tmp_path) -> None:
    assert files(published, "pypi", "team-tool") == ["team_tool-9.0-py3-none-any.whl"]
    assert all(name.startswith("team_tool-1.0") for name in files(published, "all", "team-tool"))
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", published.simple(), "team-tool"], env=client_env)
    assert "Version: 1.0" in run([python, "-m", "pip", "show", "team-tool"], env=client_env).stdout


def test_pass_through_merges_both(published, client_env, tmp_path) -> None:
    assert files(published, "all", "shared-name") == [
        "shared_name-1.0-py3-none-any.whl", "shared_name-1.0.tar.gz", "shared_name-2.0-py3-none-any.whl"]
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", published.simple(), "shared-name"], env=client_env)
    assert "Version: 2.0" in run([python, "-m", "pip", "show", "shared-name"], env=client_env).stdout


def test_private_member_is_invisible_to_anonymous_readers(published, client_env, tmp_path) -> None:
    admin = ("admin", published.admin_password)
    assert files(published, "all", "secret-thing", auth=admin) == [
        "secret_thing-1.0-py3-none-any.whl", "secret_thing-1.0.tar.gz"]
    root = requests.get(published.simple(), headers={"Accept": JSON}, timeout=10).json()
    assert "secret-thing" not in [p["name"] for p in root["projects"]]
    # Nor does the upstream's project of the same name stand in for it: that would hand an anonymous
    # machine an attacker's package under the team's private name.
    assert requests.get(f"{published.simple()}secret-thing/", timeout=10).status_code == 404
    python = new_venv(tmp_path / "venv", client_env)
    result = run([python, "-m", "pip", "install", "--index-url", published.simple(), "secret-thing"],
                 env=client_env, check=False)
    assert result.returncode != 0 and "secret-thing" in result.stderr


def ui_versions(server: LiveServer, repo: str, auth=None, sort: str = "name") -> dict[str, str]:
    """The web UI's listing of a repository: the version it shows for each project."""
    response = requests.get(f"{server.url}/ui/{repo}/", params={"sort": sort}, auth=auth, timeout=30)
    response.raise_for_status()
    rows = re.findall(r'<a class="name" href="[^"]*">([^<]*)</a>\s*<span class="version">([^<]*)</span>',
                      response.text)
    return {canonicalize_name(name): version for name, version in rows}


@pytest.mark.parametrize("sort", ["name", "newest"])
def test_the_ui_lists_a_group_as_its_pages_serve_it(published: LiveServer, sort: str) -> None:
    """/ui/all/ shows the version /all/simple/ serves: never an upstream namesake's that the guard hides,
    whether a hosted member holds the name or a private one the reader cannot see."""
    for project in ("team-tool", "secret-thing", "shared-name"):  # the upstream's namesakes, cached by the proxy
        assert requests.get(f"{published.simple('pypi')}{project}/", timeout=30).status_code == 200
    admin = ("admin", published.admin_password)
    assert ui_versions(published, "pypi", sort=sort)["team-tool"] == "9.0"
    for auth in (None, admin):
        shown = ui_versions(published, "all", auth, sort)
        assert shown["team-tool"] == "1.0"
        assert shown.get("secret-thing", "") == ("1.0" if auth else "")
        assert shown["shared-name"] == "2.0"  # passed through: merged, as pip sees it
