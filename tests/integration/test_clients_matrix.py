"""The client matrix: four pips, uv, poetry, pdm, pipenv, hatch and flit, as tests/clients.py installs them,
against one real server (gunicorn, two workers), each set up with the UI's own snippet (web/clientsetup.py).
A missing client is skipped on a developer's machine and a failure under CI."""

from __future__ import annotations

import http.client
import json
import shlex
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
import requests

from pypilite.web import clientsetup
from tests import clients
from tests.integration.conftest import (
    LiveServer,
    build,
    client,
    isolated_env,
    make_project,
    run,
    start_server,
    stop_server,
    uv,
)
from tests.upstream import Upstream, wheel

API = "/api/v1"


# The name clients reach pypilite by: not loopback's own (pip, pdm and pipenv trust those over plain http), as
# a LAN server's would be; reserved, so it never resolves, and only the gateway knows it.
HOST = "packages.test"


class _Gateway(BaseHTTPRequestHandler):
    """The clients' only route off loopback, as their HTTP proxy: a read of HOST goes to pypilite on this
    machine, and every other request is noted and refused."""

    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if self.command not in ("GET", "HEAD") or url.hostname != HOST:
            self.server.asked.append(f"{self.command} {self.path}")  # type: ignore[attr-defined]
            self.send_error(502)
            return
        connection = http.client.HTTPConnection("127.0.0.1", url.port, timeout=60)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in ("proxy-connection", "connection")}
        connection.request(self.command, urlunsplit(("", "", url.path, url.query, "")), headers=headers)
        response = connection.getresponse()
        body = response.read()
        connection.close()
        self.send_response_only(response.status, response.reason)
        for key, value in response.getheaders():
            if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "GET":
            self.wfile.write(body)

    do_CONNECT = do_POST = do_PUT = do_HEAD = do_GET

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def gateway() -> Iterator[ThreadingHTTPServer]:
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    proxy.daemon_threads = True
    proxy.asked = []  # type: ignore[attr-defined]
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    yield proxy
    proxy.shutdown()
    proxy.server_close()


@pytest.fixture(autouse=True)
def asks_nothing_else(gateway: ThreadingHTTPServer) -> Iterator[None]:
    """No client of the matrix asks anything but pypilite: a test that did fails, naming what was asked."""
    gateway.asked.clear()  # type: ignore[attr-defined]
    yield
    assert gateway.asked == []  # type: ignore[attr-defined]


@pytest.fixture
def env(tmp_path: Path, gateway: ThreadingHTTPServer) -> dict[str, str]:
    return tool_env(tmp_path / "home", gateway)


@pytest.fixture(scope="module")
def root(server: LiveServer) -> str:
    """pypilite's address as the install tests' clients use it: over plain http, by a name of the LAN."""
    return f"http://{HOST}:{urlsplit(server.url).port}"


def tool_env(home: Path, gateway: ThreadingHTTPServer, **extra: str) -> dict[str, str]:
    """isolated_env, plus every tool's configuration, data and cache under the temp HOME, no prompts, no
    update checks, and no route but loopback and the gateway."""
    proxy = f"http://127.0.0.1:{gateway.server_address[1]}"
    routes = {key: proxy for key in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                                     "all_proxy")} | {"NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"}
    (home / "hatch").mkdir(parents=True, exist_ok=True)
    (home / "hatch" / "config.toml").touch()
    return isolated_env(
        home,
        POETRY_CONFIG_DIR=str(home / "poetry" / "config"), POETRY_DATA_DIR=str(home / "poetry" / "data"),
        POETRY_CACHE_DIR=str(home / "poetry" / "cache"), POETRY_VIRTUALENVS_IN_PROJECT="true",
        POETRY_NO_INTERACTION="1", POETRY_KEYRING_ENABLED="false",
        PDM_CONFIG_FILE=str(home / "pdm" / "config.toml"), PDM_CACHE_DIR=str(home / "pdm" / "cache"),
        PDM_LOG_DIR=str(home / "pdm" / "log"), PDM_CHECK_UPDATE="false", PDM_NON_INTERACTIVE="1",
        PDM_PYTHON=sys.executable, PDM_IGNORE_SAVED_PYTHON="1",
        PIPENV_CACHE_DIR=str(home / "pipenv" / "cache"), PIPENV_VENV_IN_PROJECT="1", PIPENV_YES="1",
        PIPENV_NOSPIN="1", PIPENV_IGNORE_VIRTUALENVS="1", PIPENV_PYTHON=sys.executable,
        HATCH_CONFIG=str(home / "hatch" / "config.toml"), HATCH_DATA_DIR=str(home / "hatch" / "data"),
        HATCH_CACHE_DIR=str(home / "hatch" / "cache"),
        # pipenv's virtualenv would otherwise refresh its seed wheels from the public index, in processes that
        # outlive pipenv
        VIRTUALENV_NO_PERIODIC_UPDATE="1",
        **routes, **extra)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """`all` groups the hosted `local` with a proxy of a local upstream; `team` is private, and so is `inside`,
    which groups it with the same proxy. gunicorn writes its access log, to see who asked."""
    tmp = tmp_path_factory.mktemp("matrix")
    upstream = Upstream(tmp / "upstream", [wheel("public-dep", "1.0")], json_api=True).start()
    live = start_server("gunicorn", tmp, [
        {"name": "local", "repository_type": "hosted"},
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2},
        {"name": "all", "repository_type": "group", "members": ["local", "pypi"], "upload_to": "local"},
        {"name": "inside", "repository_type": "group", "members": ["team", "pypi"], "public": False},
    ], settings={"GUNICORN_CMD_ARGS": "--access-logfile -", "PYTHONUNBUFFERED": "1"})
    yield live
    stop_server(live.process)
    upstream.stop()


@pytest.fixture(scope="module")
def token(server: LiveServer, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A developer's token, with upload rights on `team` (and so read rights on `inside`); `team-tool` is in
    `local` and `secret-lib` in `team`, both depending on `public-dep` from the upstream."""
    admin = ("admin", server.admin_password)
    for method, path, body in (("POST", "/users", {"name": "dev", "password": "dev-password-1234"}),
                               ("PUT", "/repos/team/permissions/dev", {"level": "upload"}),
                               ("PUT", "/repos/inside/permissions/dev", {"level": "read"})):
        response = requests.request(method, f"{server.url}{API}{path}", json=body, auth=admin, timeout=10)
        assert response.ok, response.text
    response = requests.post(f"{server.url}{API}/tokens", json={"user": "dev"}, auth=admin, timeout=10)
    assert response.ok, response.text
    tmp = tmp_path_factory.mktemp("matrix-dists")
    env = isolated_env(tmp / "home")
    for name, repo in (("team-tool", "local"), ("secret-lib", "team")):
        dists = build(make_project(tmp, name, "1.0", dependencies=("public-dep",)), tmp / name, env)
        run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
             "--repository-url", f"{server.url}/{repo}/", "-u", "admin", f"--password={server.admin_password}",
             *dists], env=env)
    return response.json()["token"]


def snippet(root: str, repo: str, public: bool, uploads: bool, snippet_id: str, token: str = "") -> str:
    """The UI's setup text for one client and repository, with a real token for its placeholder."""
    urls = clientsetup.endpoints(root, repo, public, uploads)
    found = next(s.text for s in clientsetup.snippets(urls) if s.id == snippet_id)
    return found.replace(clientsetup.TOKEN, token) if token else found


def run_lines(text: str, tool: Path, env: dict[str, str], cwd: Path) -> None:
    """A snippet's shell lines, one command each, the tool's name replaced by its path here."""
    for line in text.splitlines():
        if line and not line.startswith("#"):
            run([tool, *shlex.split(line)[1:]], env=env, cwd=cwd)


def publish_line(text: str) -> list[str]:
    """The snippet's `# publish:` command, split."""
    return shlex.split(next(line for line in text.splitlines() if line.startswith("# publish: ")).removeprefix(
        "# publish: "))


def imports(python: Path, env: dict[str, str], *modules: str) -> None:
    run([python, "-c", f"import {', '.join(modules)}"], env=env)


def install_with_pip(root: str, token: str, env: dict[str, str], tmp_path: Path, *requirements: str) -> None:
    """The test environment's pip installs what a tool published to `team`, with the token in the URL."""
    line = clientsetup.pip_install(clientsetup.endpoints(root, "team", False, False), "")
    run([sys.executable, "-m", *shlex.split(line.replace(clientsetup.TOKEN, token)), "--no-deps",
         "--target", tmp_path / "installed", *requirements], env=env)
    names = {path.name.split("-")[0] for path in (tmp_path / "installed").glob("*.dist-info")}
    assert names == {r.replace("-", "_") for r in requirements}


@pytest.mark.parametrize("version", clients.PIPS)
def test_pip_installs_from_a_group_and_with_credentials(root, token, env, tmp_path: Path, version: str) -> None:
    """Each pip from its wheel, in a venv without pip of its own: anonymous from the public group, and with
    the token in the URL (the UI's pip line for a private repository) from the private group."""
    pip = client(clients.pip_wheel(version)) / "pip"
    run([sys.executable, "-m", "venv", "--without-pip", tmp_path / "venv"], env=env)
    python = tmp_path / "venv" / "bin" / "python"
    assert f"pip {version} " in run([python, pip, "--version"], env=env).stdout
    for repo, public, requirement in (("all", True, "team-tool"), ("inside", False, "secret-lib")):
        line = clientsetup.pip_install(clientsetup.endpoints(root, repo, public, False), requirement)
        run([python, pip, *shlex.split(line.replace(clientsetup.TOKEN, token))[1:]], env=env)
    imports(python, env, "team_tool", "secret_lib", "public_dep")


def test_uv_syncs_from_a_private_group_with_credentials_from_the_environment(root, token, env, tmp_path) -> None:
    """The UI's uv pyproject.toml for a private repository (uv publishing, and installing from public ones:
    test_clients.py and test_access_clients.py). The project's own configuration is read, the user's none."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1"\nrequires-python = ">=3.8"\ndependencies = ["secret-lib"]\n\n'
        + snippet(root, "inside", False, False, "uv-pyproject"))
    name = clientsetup.INDEX_NAME.upper()
    env = {key: value for key, value in env.items() if key != "UV_NO_CONFIG"} | {
        f"UV_INDEX_{name}_USERNAME": "__token__", f"UV_INDEX_{name}_PASSWORD": token}
    run([uv(), "sync", "--python", sys.executable], env=env, cwd=project)
    imports(project / ".venv" / "bin" / "python", env, "secret_lib", "public_dep")


def test_poetry_installs_from_two_sources_on_one_host(root, token, env, tmp_path: Path) -> None:
    """The public group, then the private `team`, as the UI sets each up. poetry sends a file the credentials of
    the source whose URL shares the most leading path segments with it, the first configured among equals: under
    /files/ that is the group's (none), so team's files must live under /team/."""
    poetry = client(clients.tool("poetry"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1"\nrequires-python = ">=3.11"\n'
        'dependencies = ["team-tool", "secret-lib"]\n\n[tool.poetry]\npackage-mode = false\n')
    run_lines(snippet(root, "all", True, False, "poetry"), poetry, env, project)
    private = snippet(root, "team", False, False, "poetry", token).replace(clientsetup.INDEX_NAME, "team")
    run_lines(private, poetry, env, project)
    run([poetry, "lock"], env=env, cwd=project)
    run([poetry, "install"], env=env, cwd=project)
    imports(project / ".venv" / "bin" / "python", env, "team_tool", "secret_lib", "public_dep")


def test_poetry_publishes_to_a_private_repository(server, root, token, env, tmp_path: Path) -> None:
    poetry = client(clients.tool("poetry"))
    project = tmp_path / "poetry-demo"
    (project / "poetry_demo").mkdir(parents=True)
    (project / "poetry_demo" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "poetry-demo"\nversion = "1.0"\nrequires-python = ">=3.8"\n\n'
        '[build-system]\nrequires = ["poetry-core>=2"]\nbuild-backend = "poetry.core.masonry.api"\n')
    run([poetry, "build"], env=env, cwd=project)
    publish = [line for line in snippet(server.url, "team", False, True, "poetry", token).splitlines()
               if line.startswith(("poetry config repositories.", "poetry publish"))]
    run_lines("\n".join(publish), poetry, env, project)
    install_with_pip(root, token, env, tmp_path, "poetry-demo")


def test_pdm_asks_nothing_but_pypilite(server, root, token, env, tmp_path: Path) -> None:
    """The UI's pdm source, named `pypi`, replaces pdm's default index: lock and install ask pypilite alone
    (and nothing else, asks_nothing_else checks), and the lock file names only pypilite's files."""
    pdm = client(clients.tool("pdm"))
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[project]\nname = "consumer"\nversion = "0.1"\nrequires-python = ">=3.11"\ndependencies = ["team-tool"]\n\n'
        '[tool.pdm]\ndistribution = false\n\n' + snippet(root, "all", True, False, "pdm"))
    logged = server.log.stat().st_size
    run([pdm, "lock", "--static-urls"], env=env, cwd=project)
    run([pdm, "install", "--frozen-lockfile"], env=env, cwd=project)
    imports(project / ".venv" / "bin" / "python", env, "team_tool", "public_dep")
    lock = tomllib.loads((project / "pdm.lock").read_text())
    urls = [f["url"] for package in lock["package"] for f in package["files"]]
    assert urls and all(url.startswith(f"{root}/") for url in urls), urls
    with server.log.open("rb") as log:
        log.seek(logged)
        asked = [line for line in log.read().decode(errors="replace").splitlines() if '"pdm/' in line]
    assert any('"GET /all/simple/team-tool/ ' in line for line in asked), asked


def test_pipenv_installs_from_a_public_and_a_private_source(root, token, env, tmp_path: Path) -> None:
    """The UI's Pipfile sources, one public and one private, its token from the environment."""
    pipenv = client(clients.tool("pipenv"))
    project = tmp_path / "project"
    project.mkdir()
    private = snippet(root, "team", False, False, "pipenv").replace(f'"{clientsetup.INDEX_NAME}"', '"team"')
    sources = snippet(root, "all", True, False, "pipenv") + "\n" + private
    (project / "Pipfile").write_text(
        sources + '\n[packages]\nteam-tool = "*"\nsecret-lib = {version = "*", index = "team"}\n')
    run([pipenv, "install"], env=env | {"PYPILITE_TOKEN": token}, cwd=project)
    assert set(json.loads((project / "Pipfile.lock").read_text())["default"]) == {
        "team-tool", "secret-lib", "public-dep"}
    imports(project / ".venv" / "bin" / "python", env, "team_tool", "secret_lib", "public_dep")


def test_hatch_publishes_to_a_private_repository(server, root, token, env, tmp_path: Path) -> None:
    """Credentials from hatch's environment variables; the files then install with pip."""
    hatch = client(clients.tool("hatch"))
    dists = build(make_project(tmp_path, "hatch-demo", "1.0"), tmp_path / "dist", env)
    run([hatch, "publish", "--no-prompt", *dists], cwd=tmp_path, env=env | {
        "HATCH_INDEX_REPO": f"{server.url}/team/", "HATCH_INDEX_USER": "__token__", "HATCH_INDEX_AUTH": token})
    install_with_pip(root, token, env, tmp_path, "hatch-demo")


def test_flit_publishes_to_a_private_repository(server, root, token, env, tmp_path: Path) -> None:
    """flit builds and publishes, credentials from its environment variables; the files then install with pip."""
    flit = client(clients.tool("flit"))
    project = tmp_path / "flit-demo"
    (project / "flit_demo").mkdir(parents=True)
    (project / "flit_demo" / "__init__.py").write_text('"""A flit demo."""\n__version__ = "1.0"\n')
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["flit_core>=3.4,<5"]\nbuild-backend = "flit_core.buildapi"\n\n'
        '[project]\nname = "flit-demo"\ndynamic = ["version", "description"]\n')
    run([flit, "publish"], cwd=project, env=env | {
        "FLIT_INDEX_URL": f"{server.url}/team/", "FLIT_USERNAME": "__token__", "FLIT_PASSWORD": token})
    install_with_pip(root, token, env, tmp_path, "flit-demo")


def test_uv_publishes_with_the_ui_pyproject(server, root, token, env, tmp_path: Path) -> None:
    """The `publish-url` and the publish line of the UI's uv pyproject.toml for a private repository."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text('[project]\nname = "consumer"\nversion = "0.1"\n\n'
                                           + snippet(server.url, "team", False, True, "uv-pyproject", token))
    dists = build(make_project(tmp_path, "uv-demo", "1.0"), tmp_path / "dist", env)
    env = {key: value for key, value in env.items() if key != "UV_NO_CONFIG"}
    run([uv(), *publish_line(snippet(server.url, "team", False, True, "uv-pyproject", token))[1:], "--no-progress",
         *dists], env=env, cwd=project)
    install_with_pip(root, token, env, tmp_path, "uv-demo")


def test_pdm_publishes_to_a_private_repository(server, root, token, env, tmp_path: Path) -> None:
    """The publish line of the UI's pdm snippet, on files built beforehand (pdm would fetch a build backend)."""
    pdm = client(clients.tool("pdm"))
    project = make_project(tmp_path, "pdm-demo", "1.0")
    build(project, project / "dist", env)
    run([pdm, *publish_line(snippet(server.url, "team", False, True, "pdm", token))[1:], "--no-build"], env=env,
        cwd=project)
    install_with_pip(root, token, env, tmp_path, "pdm-demo")
