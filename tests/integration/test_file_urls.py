"""File URLs under the path of the index that listed them, with real pip, uv and poetry: two sources on one
host each get their own credentials, a group serves only what its pages list (its members as its reader
may see them, behind its dependency-confusion guard), and the older /files/… URLs that lockfiles record
keep working."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests

from tests import clients
from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, client, new_venv, run, start_server, stop_server, uv
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
API = "/api/v1"
UPSTREAM_NAMESAKE = wheel("shared-name", "2.0")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    server = Upstream(tmp_path_factory.mktemp("urls-upstream"), [UPSTREAM_NAMESAKE, wheel("public-dep", "1.0")],
                      json_api=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def server(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`all` (public, the default index) holds the private `team`; `inner` is a private group of `team`;
    `private` is a second private repository on the same host."""
    live = start_server("gunicorn", tmp_path_factory.mktemp("urls"), [
        {"name": "local", "repository_type": "hosted"},
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "private", "repository_type": "hosted", "public": False},
        {"name": "up", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2},
        {"name": "all", "repository_type": "group", "members": ["local", "team", "up"], "upload_to": "local"},
        {"name": "inner", "repository_type": "group", "members": ["team"], "public": False},
    ])
    for repo, name in (("team", "team-pkg"), ("private", "private-pkg"), ("local", "shared-name")):
        _upload(live, repo, name, "1.0")
    yield live
    stop_server(live.process)


def _admin(live: LiveServer, method: str, path: str, body: dict) -> dict:
    response = requests.request(method, f"{live.url}{API}{path}", json=body, auth=("admin", live.admin_password),
                                timeout=10)
    assert response.status_code in (200, 201), response.text
    return response.json()


def _upload(live: LiveServer, repo: str, name: str, version: str) -> None:
    data = wheel_bytes(name, version)
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
              "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    response = requests.post(f"{live.url}/{repo}/", data=fields, auth=("admin", live.admin_password), timeout=30,
                             files={"content": (f"{name.replace('-', '_')}-{version}-py3-none-any.whl", data)})
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def tokens(server: LiveServer) -> dict[str, str]:
    """dev may read team, private and inner; each token is narrowed to what one source needs. outsider may
    read team only."""
    for name in ("dev", "outsider"):
        _admin(server, "POST", "/users", {"name": name, "password": f"{name}-password-long"})
    for repo in ("team", "private", "inner"):
        _admin(server, "PUT", f"/repos/{repo}/permissions/dev", {"level": "read"})
    _admin(server, "PUT", "/repos/team/permissions/outsider", {"level": "read"})
    narrowed = {"default": ["all", "team"], "private": ["private"], "inner": ["inner", "team"]}
    return {name: _admin(server, "POST", "/tokens", {"user": "dev", "repos": repos, "read_only": True})["token"]
            for name, repos in narrowed.items()}


def _with(url: str, token: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=f"__token__:{token}@{parts.netloc}").geturl()


def _file_url(live: LiveServer, index: str, project: str, auth: tuple[str, str] | None = None) -> str:
    """The absolute URL of the project's first file on the page of `index` ("" for the default)."""
    page = f"{live.url}{index}/simple/{project}/"
    response = requests.get(page, headers={"Accept": JSON}, auth=auth, timeout=30)
    response.raise_for_status()
    return urljoin(page, response.json()["files"][0]["url"]).split("#")[0]


def test_pages_link_files_under_their_own_index(server: LiveServer, tokens: dict[str, str]) -> None:
    admin = ("admin", server.admin_password)
    assert _file_url(server, "/team", "team-pkg", admin).startswith(f"{server.url}/team/files/team/")
    assert _file_url(server, "/inner", "team-pkg", admin).startswith(f"{server.url}/inner/files/team/")
    assert _file_url(server, "/all", "team-pkg", admin).startswith(f"{server.url}/all/files/team/")
    assert _file_url(server, "", "team-pkg", admin).startswith(f"{server.url}/simple/files/team/")
    assert _file_url(server, "", "public-dep").startswith(f"{server.url}/simple/files/up/")


@pytest.mark.parametrize("index, token", [("/team", "default"), ("/inner", "inner")])
def test_pip_and_uv_install_from_a_private_repository_and_a_private_group(
        server: LiveServer, tokens: dict[str, str], client_env: dict[str, str], tmp_path: Path, index: str,
        token: str) -> None:
    url = _with(f"{server.url}{index}/simple/", tokens[token])
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", url, "team-pkg"], env=client_env)
    run([uv(), "pip", "install", "--python", python, "--reinstall", "--no-cache", "--index-url", url, "team-pkg"],
        env=client_env)
    assert "Version: 1.0" in run([python, "-m", "pip", "show", "team-pkg"], env=client_env).stdout


def test_two_sources_on_one_host_each_get_their_own_credentials(
        server: LiveServer, tokens: dict[str, str], client_env: dict[str, str], tmp_path: Path) -> None:
    """A group and a private repository, each with a token that reads nothing of the other: pip chooses
    credentials by the longest path prefix, uv by the index whose path (less /simple) the URL is under, so
    each file must live under its own index's path. uv takes /simple/ for the whole host: it is given the
    group's own URL."""
    private = _with(f"{server.url}/private/simple/", tokens["private"])
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", _with(f"{server.url}/simple/", tokens["default"]),
         "--extra-index-url", private, "team-pkg", "private-pkg"], env=client_env)
    run([uv(), "pip", "install", "--python", python, "--reinstall", "--no-cache", "--index-url",
         _with(f"{server.url}/all/simple/", tokens["default"]), "--extra-index-url", private, "team-pkg",
         "private-pkg"], env=client_env)


def test_poetry_with_two_sources_on_one_host_locks_and_installs(
        server: LiveServer, tokens: dict[str, str], client_env: dict[str, str], tmp_path: Path) -> None:
    project = tmp_path / "consumer"
    project.mkdir()
    (project / "pyproject.toml").write_text(f"""\
[tool.poetry]
package-mode = false

[tool.poetry.dependencies]
python = ">=3.8"
team-pkg = "*"
private-pkg = {{version = "*", source = "private"}}

[[tool.poetry.source]]
name = "main"
url = "{server.url}/simple/"
priority = "primary"

[[tool.poetry.source]]
name = "private"
url = "{server.url}/private/simple/"
priority = "explicit"
""")
    env = dict(client_env, POETRY_HTTP_BASIC_MAIN_USERNAME="__token__",
               POETRY_HTTP_BASIC_MAIN_PASSWORD=tokens["default"], POETRY_HTTP_BASIC_PRIVATE_USERNAME="__token__",
               POETRY_HTTP_BASIC_PRIVATE_PASSWORD=tokens["private"],
               POETRY_VIRTUALENVS_IN_PROJECT="true", POETRY_CACHE_DIR=str(tmp_path / "poetry-cache"),
               POETRY_CONFIG_DIR=str(tmp_path / "poetry-config"))
    poetry = client(clients.tool("poetry"))
    run([poetry, "lock"], env=env, cwd=project)
    run([poetry, "install", "--no-interaction"], env=env, cwd=project)
    shown = run([project / ".venv" / "bin" / "python", "-m", "pip", "list"], env=env).stdout
    assert "team-pkg" in shown and "private-pkg" in shown


def test_older_file_urls_keep_working(server: LiveServer, tokens: dict[str, str]) -> None:
    """What lockfiles recorded before files moved: /files/<repository that holds it>/<sha256>/<name>."""
    new = _file_url(server, "/team", "team-pkg", ("admin", server.admin_password))
    old = new.replace("/team/files/team/", "/files/team/")
    assert requests.get(old, timeout=10).status_code == 401
    answer = requests.get(old, auth=("__token__", tokens["default"]), timeout=10)
    assert answer.status_code == 200 and answer.content == requests.get(new, auth=("__token__", tokens["default"]),
                                                                        timeout=10).content
    assert requests.get(old + ".metadata", auth=("__token__", tokens["default"]), timeout=10).status_code == 200
    public = _file_url(server, "/local", "shared-name").replace("/local/files/local/", "/files/local/")
    assert requests.get(public, timeout=10).status_code == 200


def test_a_group_serves_only_what_its_pages_list(server: LiveServer, tokens: dict[str, str]) -> None:
    admin = ("admin", server.admin_password)
    team_file = _file_url(server, "/team", "team-pkg", admin)
    local_file = _file_url(server, "/local", "shared-name")
    # A member the group does not include: not served under the group's path, even to an administrator.
    outside = local_file.replace("/local/files/local/", "/inner/files/local/")
    assert requests.get(outside, auth=admin, timeout=10).status_code == 404
    # Another repository's file under a hosted repository's path.
    assert requests.get(team_file.replace("/team/files/", "/private/files/"), auth=admin, timeout=10).status_code == 404
    # A private member's file through the public group: its page shows it only to those who may read the member.
    through_group = team_file.replace("/team/files/", "/all/files/")
    assert requests.get(through_group, timeout=10).status_code == 404
    assert requests.get(through_group, auth=("__token__", tokens["default"]), timeout=10).status_code == 200
    # The guard: a hosted project hides its upstream namesake, so the group serves none of the namesake's files.
    assert requests.get(f"{server.url}/up/simple/shared-name/", timeout=30).status_code == 200
    namesake = f"{UPSTREAM_NAMESAKE.sha256}/{UPSTREAM_NAMESAKE.filename}"
    for path in (f"/all/files/up/{namesake}", f"/simple/files/up/{namesake}"):
        assert requests.get(f"{server.url}{path}", auth=admin, timeout=10).status_code == 404
        assert requests.get(f"{server.url}{path}.metadata", auth=admin, timeout=10).status_code == 404
    assert requests.get(f"{server.url}/up/files/up/{namesake}", timeout=30).content == UPSTREAM_NAMESAKE.data


def test_credentials_for_another_repository_are_refused(server: LiveServer, tokens: dict[str, str]) -> None:
    team_file = _file_url(server, "/team", "team-pkg", ("admin", server.admin_password))
    inner_file = team_file.replace("/team/files/", "/inner/files/")
    anonymous = requests.get(team_file, timeout=10)
    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    for url in (team_file, inner_file):
        assert requests.get(url, auth=("__token__", tokens["private"]), timeout=10).status_code == 403
    # The listing repository's permissions decide: reading the member is not reading the group.
    outsider = ("outsider", "outsider-password-long")
    assert requests.get(team_file, auth=outsider, timeout=10).status_code == 200
    assert requests.get(inner_file, auth=outsider, timeout=10).status_code == 403
    assert requests.get(inner_file, auth=("__token__", tokens["inner"]), timeout=10).status_code == 200
