"""Live fixtures: the real server in a subprocess on a free loopback port, and real clients isolated from
this machine's own pip, uv and twine settings (which add indexes and a wheel folder of their own)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn

import pytest
import requests
import urllib3

from tests import clients
from tests.conftest import TEST_REPOSITORIES

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
STARTUP_SECONDS = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user with no configuration of any client (pip, uv, twine, poetry, pdm, pipenv, hatch,
    flit) at all, and no keyring; its temp files (a gunicorn's metrics directory too) stay in `home`, removed
    with the test's own directory even when a test kills the server."""
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("PIP_", "UV_", "TWINE_", "POETRY_", "PDM_", "PIPENV_", "HATCH_", "FLIT_",
                                   "VIRTUALENV_", "PYPILITE_", "XDG_", "VIRTUAL_ENV", "PYTHON", "GUNICORN_"))}
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    env.update({
        "HOME": str(home),
        "TMPDIR": str(home / "tmp"),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_NO_INPUT": "1",
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "UV_NO_CONFIG": "1",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring",
        "NO_COLOR": "1",
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    })
    env.update(extra)
    return env


def run(args: list[str | Path], env: dict[str, str], cwd: Path | None = None, check: bool = True,
        timeout: float = 300) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in args], env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{args} exited {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
    return result


@dataclass
class LiveServer:
    url: str
    data_dir: Path
    admin_password: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str] = field(default_factory=dict)  # the server's environment: its config and data dir

    def simple(self, repo: str | None = None) -> str:
        return f"{self.url}/{repo}/simple/" if repo else f"{self.url}/simple/"

    def command(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """`python app.py ARGS` on this server's config and data dir (running or not)."""
        return run([sys.executable, "app.py", *args], env=self.env, cwd=ROOT, check=False, timeout=timeout)

    def assert_check_clean(self) -> str:
        """`python app.py check`: every row has its blob and every blob its bytes; returns its summary."""
        result = self.command("check")
        assert result.returncode == 0 and " 0 missing, 0 corrupt" in result.stdout, result.stdout + result.stderr
        return result.stdout


def repositories_toml(repositories: list[dict]) -> str:
    """[[repository]] tables for a config file (the values used in tests are strings, ints, bools, lists, and
    tables of those: a policy)."""
    tables = []
    for repository in repositories:
        lines = ["[[repository]]"] + [f"{key} = {_toml(value)}" for key, value in repository.items()]
        tables.append("\n".join(lines))
    return "\n\n".join(tables) + "\n"


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, dict):
        return "{" + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + "}"
    return json.dumps(value)


def start_server(mode: str, tmp: Path, repositories: list[dict] = TEST_REPOSITORIES,
                 data_dir: Path | None = None, settings: dict[str, str] | None = None, *, workers: int = 2,
                 preexec_fn: Callable[[], None] | None = None, admin_password: str | None = None) -> LiveServer:
    """The real server; its `pypi` proxy points at `repositories`' upstreams, never at the internet.
    `data_dir` may be one an earlier server used (a restart); `settings` are more PYPILITE_* variables (the
    upstream breaker is off unless they turn it on: tests that break an upstream expect the next request to ask
    it again; test_upstream_breaker.py turns it on);
    `preexec_fn` runs in the server process before it starts (e.g. to set a resource limit that its gunicorn
    workers inherit); `admin_password` is the first admin's, for a node on a database another node made."""
    port = free_port()
    data_dir = data_dir or tmp / "data"
    config = tmp / f"pypilite-{port}.toml"
    config.write_text(repositories_toml(repositories))
    env = isolated_env(tmp / "server-home", PYPILITE_CONFIG=str(config), PYPILITE_STORAGE_DATA_DIR=str(data_dir),
                       PYPILITE_SERVER_HOST="127.0.0.1", PYPILITE_SERVER_PORT=str(port),
                       **{"PYPILITE_SERVER_UPSTREAM_BACKOFF": "0", **(settings or {})})
    # No command: serve, with gunicorn as in production, or with werkzeug's development server.
    command = [sys.executable, "app.py", *(["--dev"] if mode == "app" else [])]
    env["GUNICORN_CMD_ARGS"] = f"--workers {workers} {env.get('GUNICORN_CMD_ARGS', '')}".strip()
    log = tmp / f"server-{mode}-{port}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   start_new_session=True, preexec_fn=preexec_fn)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except (requests.ConnectionError, requests.Timeout):  # not listening yet, or its workers still booting
            time.sleep(0.1)
    else:
        stop_server(process)
        raise AssertionError(f"server did not answer within {STARTUP_SECONDS}s:\n{log.read_text()}")
    password = admin_password or (data_dir / "initial-admin-password").read_text().strip()
    return LiveServer(url=url, data_dir=data_dir, admin_password=password, process=process, log=log, env=env)


def stop_server(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def twine_form(filename: str, data: bytes) -> tuple[bytes, str]:
    """The multipart body twine sends for a wheel, and its Content-Type."""
    name, version = filename.split("-")[:2]
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
              "filetype": "bdist_wheel", "pyversion": "py3", "metadata_version": "2.1",
              "sha256_digest": hashlib.sha256(data).hexdigest(),
              "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest(),
              "content": (filename, data, "application/octet-stream")}
    return urllib3.encode_multipart_formdata(fields)


def described(server: LiveServer, sha256: str, wait: float = 30) -> str | None:
    """The UI metadata a proxy recorded for its file of this sha256, which it takes out of the file after
    the client had the last byte: waited for, up to `wait` seconds."""
    deadline = time.monotonic() + wait
    while True:
        with closing(sqlite3.connect(server.data_dir / "pypilite.db")) as db:
            found = db.execute("SELECT info_sha256 FROM file WHERE sha256 = ? AND origin_url != '' "
                               "AND info_sha256 IS NOT NULL", (sha256,)).fetchone()
        if found is not None or time.monotonic() > deadline:
            return found[0] if found else None
        time.sleep(0.05)


def listed(server: LiveServer, project: str, repo: str = "local") -> dict[str, dict]:
    """A project's files as its JSON simple page lists them, by filename; none for an unknown project."""
    response = requests.get(f"{server.simple(repo)}{project}/",
                            headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=30)
    if response.status_code == 404:
        return {}
    return {f["filename"]: f for f in response.json()["files"]}


def group_processes(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group: a server started by start_server is one group,
    gunicorn's master and all its workers."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def kill_server(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL the whole server at once, as a power cut or the OOM killer would, and wait until every process
    of it is gone, so a restart never shares the data dir with a dying worker."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait(timeout=30)
    deadline = time.monotonic() + 30
    while group_processes(process.pid):
        assert time.monotonic() < deadline, f"processes of group {process.pid} outlived SIGKILL"
        time.sleep(0.05)


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def live(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The real server, once as `python app.py` and once under gunicorn with two workers."""
    server = start_server(request.param, tmp_path_factory.mktemp(f"live-{request.param}"))
    yield server
    stop_server(server.process)


@pytest.fixture
def client_env(tmp_path: Path) -> dict[str, str]:
    return isolated_env(tmp_path / "home")


def make_project(directory: Path, name: str, version: str, *, dependencies: tuple[str, ...] = (),
                 marker: str = "") -> Path:
    """A tiny setuptools project; `marker` changes the bytes without changing name or version."""
    module = name.lower().replace("-", "_").replace(".", "_")
    source = directory / f"{module}-{version}-src{marker}"
    (source / module).mkdir(parents=True)
    deps = ", ".join(f'"{d}"' for d in dependencies)
    (source / "pyproject.toml").write_text(f"""\
[build-system]
requires = ["setuptools>=70.1"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"
description = "pypilite test package {name}"
requires-python = ">=3.8"
dependencies = [{deps}]
""")
    (source / module / "__init__.py").write_text(f"NAME = {name!r}\nVERSION = {version!r}\nMARKER = {marker!r}\n")
    return source


def build(source: Path, outdir: Path, env: dict[str, str]) -> list[Path]:
    """`python -m build`, without build isolation so no build dependency is fetched from anywhere."""
    outdir.mkdir(parents=True, exist_ok=True)
    before = set(outdir.iterdir())
    run([sys.executable, "-m", "build", "--no-isolation", "--outdir", outdir, source], env=env)
    return sorted(set(outdir.iterdir()) - before)


def new_venv(path: Path, env: dict[str, str]) -> Path:
    """A fresh virtual environment with the pip that Python bundles; returns its python."""
    run([sys.executable, "-m", "venv", path], env=env)
    return path / "bin" / "python"


def uv() -> str:
    found = shutil.which("uv", path=str(BIN))
    assert found, "uv is not installed in the test environment"
    return found


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """A failing live test shows the end of its server's log: the client's error alone rarely says why."""
    outcome = yield
    report = outcome.get_result()
    if report.failed:
        for value in getattr(item, "funcargs", {}).values():
            if isinstance(value, LiveServer) and value.log.exists():
                tail = "\n".join(value.log.read_text(errors="replace").splitlines()[-40:])
                report.sections.append((f"server log ({value.log.name})", tail))


def required(path: Path, how: str) -> Path:
    """A program the tests drive: skipped when missing on a developer's machine (`how` says how to get it),
    a failure under CI, which installs everything."""
    if path.exists():
        return path
    unavailable(f"{path} is missing: {how}")


def unavailable(reason: str) -> NoReturn:
    """A skip on a developer's machine, a failure under CI."""
    if os.environ.get("CI", "").lower() in ("", "0", "false"):
        pytest.skip(reason)
    pytest.fail(reason)


def client(path: Path) -> Path:
    """A client made by tests/clients.py."""
    return required(path, f"run `{clients.COMMAND}` (the README's test command)")
