"""pypilite as a user gets it, outside this checkout: the sdist, the wheel and the zipapp built by
deploy/build.py from a clean copy of the checkout; the wheel installed in a fresh venv and the zipapp run by a
bare Python (no venv, no pip install), each serving an upload from twine and an install by pip; and the
systemd unit, verified by systemd itself."""

from __future__ import annotations

import os
import platform
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests import clients
from tests.integration.conftest import (
    BIN,
    ROOT,
    STARTUP_SECONDS,
    build,
    free_port,
    isolated_env,
    make_project,
    new_venv,
    required,
    run,
    unavailable,
    uv,
)

# Bare interpreters that may run the zipapp: the machine's own, and the ones pyenv keeps.
PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
PYTHONS = sorted({Path(sys.executable).resolve().parent / "python3", Path("/usr/bin/python3"),
                  *PYENV.glob("3.1[1-9]*/bin/python3")})


@dataclass(frozen=True)
class Distributions:
    sdist: Path
    wheel: Path
    pyz: Path


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> Distributions:
    """Built as CI builds them: from the tracked files alone, with deploy/build.py, asking no index."""
    if not clients.wheelhouse_ready():
        unavailable(f"the wheelhouse was filled for another pyproject.toml: run `{clients.COMMAND}`")
    wheelhouse = clients.WHEELHOUSE
    checkout = tmp_path_factory.mktemp("checkout")
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        if (ROOT / name).is_file() and not (ROOT / name).is_symlink():
            (checkout / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, checkout / name)
    out = tmp_path_factory.mktemp("dist")
    env = isolated_env(tmp_path_factory.mktemp("build-home"))
    run([sys.executable, checkout / "deploy" / "build.py", "--offline", "--wheelhouse", wheelhouse,
         "--out", out], env=env, cwd=checkout, timeout=600)
    (sdist,), (wheel,) = out.glob("pypilite-*.tar.gz"), out.glob("pypilite-*.whl")
    return Distributions(sdist=sdist, wheel=wheel, pyz=out / "pypilite.pyz")


def test_the_sdist_and_wheel_hold_the_server_and_nothing_of_the_checkout(dists: Distributions) -> None:
    names = zipfile.ZipFile(dists.wheel).namelist()
    assert "pypilite/serving.py" in names and "pypilite/web/templates/ui/base.html" in names
    assert not [name for name in names if name.startswith(("tests/", "bench/", "deploy/"))]
    entry_points = next(name for name in names if name.endswith(".dist-info/entry_points.txt"))
    assert "pypilite = pypilite.cli:main" in zipfile.ZipFile(dists.wheel).read(entry_points).decode()
    with tarfile.open(dists.sdist) as sdist:
        members = {member.split("/", 1)[1] for member in sdist.getnames() if "/" in member}
    assert {"pyproject.toml", "README.md", "pypilite/serving.py"} <= members


def test_the_zipapp_carries_every_compiled_module_for_each_python_and_platform(dists: Distributions) -> None:
    """What the pyz promises to Pythons not installed here: each finds its own build of every compiled module,
    and nothing is built for another architecture (abi3 modules do not name theirs, so one would replace)."""
    names = zipfile.ZipFile(dists.pyz).namelist()
    builds = {name.removeprefix("site-packages/") for name in names if name.endswith(".so")}
    for module in ("markupsafe/_speedups", "comrak/comrak"):
        for python in ("311", "312", "313", "314"):
            wanted = f"{module}.cpython-{python}-{platform.machine()}-linux-gnu.so"
            assert wanted in builds or f"{module}.abi3.so" in builds, wanted
    assert not [name for name in builds if "-linux-gnu" in name and platform.machine() not in name]
    assert not [name for name in names if name.startswith("site-packages/bin/")]


@dataclass
class Served:
    url: str
    data: Path
    process: subprocess.Popen[bytes]
    log: Path

    def banner(self) -> str:
        return self.log.read_text()


def serve(command: list[str | Path], tmp: Path, env: dict[str, str]) -> Served:
    """The server as a user starts it: no config, the embedded defaults, settings in the environment."""
    port = free_port()
    data = tmp / "data"
    env = {**env, "PYPILITE_STORAGE_DATA_DIR": str(data), "PYPILITE_SERVER_HOST": "127.0.0.1",
           "PYPILITE_SERVER_PORT": str(port), "GUNICORN_CMD_ARGS": "--workers 2"}
    log = tmp / "server.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(c) for c in command], cwd=tmp, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + STARTUP_SECONDS * 2  # a zipapp unpacks itself on its first start
    while time.monotonic() < deadline:
        assert process.poll() is None, f"server exited {process.returncode}:\n{log.read_text()}"
        try:
            if requests.get(f"{url}/health", timeout=1).status_code == 200:
                return Served(url=url, data=data, process=process, log=log)
        except requests.ConnectionError:
            time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"no answer within the deadline:\n{log.read_text()}")


def upload_and_install(served: Served, tmp: Path) -> None:
    """twine uploads a package as the first admin; pip installs it in a fresh venv from /simple/."""
    env = isolated_env(tmp / "client-home")
    password = (served.data / "initial-admin-password").read_text().strip()
    (wheel,) = [path for path in build(make_project(tmp, "shipped-app", "1.0"), tmp / "built", env)
                if path.suffix == ".whl"]
    run([BIN / "twine", "upload", "--non-interactive", "--repository-url", f"{served.url}/local/",
         "-u", "admin", "-p", password, wheel], env=env)
    python = new_venv(tmp / "client", env)
    run([python, "-m", "pip", "install", "--index-url", f"{served.url}/simple/", "shipped-app==1.0"], env=env)
    assert run([python, "-c", "import shipped_app; print(shipped_app.VERSION)"], env=env).stdout == "1.0\n"


def stop(served: Served, how: signal.Signals, group: bool = False) -> int:
    """SIGTERM to the master, as systemd sends it; Ctrl-C reaches the terminal's whole process group."""
    (os.killpg if group else os.kill)(served.process.pid, how)
    try:
        return served.process.wait(timeout=60)
    finally:
        if served.process.poll() is None:
            os.killpg(served.process.pid, signal.SIGKILL)


def assert_announced(served: Served) -> None:
    banner = served.banner()
    port = served.url.rsplit(":", 1)[1]
    assert f"--index-url http://127.0.0.1:{port}/simple/" in banner
    assert f"password in {served.data / 'initial-admin-password'}" in banner
    assert "gunicorn (2 workers)" in banner


@pytest.fixture
def outside(tmp_path: Path) -> Iterator[Path]:
    """A working directory with no checkout in it or above it, and no way to import this one."""
    assert not (tmp_path / "pypilite").exists() and ROOT not in tmp_path.parents
    yield tmp_path


def test_the_wheel_in_a_fresh_venv_serves_uploads_and_installs(dists: Distributions, outside: Path) -> None:
    env = isolated_env(outside / "home")
    venv = outside / "venv"
    python = new_venv(venv, env)
    wheelhouse = clients.WHEELHOUSE
    run([python, "-m", "pip", "install", "--no-index", "--find-links", wheelhouse, dists.wheel], env=env)
    helps = [run(command, env=env, cwd=cwd).stdout for command, cwd in
             (([venv / "bin" / "pypilite", "--help"], outside), ([sys.executable, "app.py", "--help"], ROOT))]
    assert "Without a command: serve" in helps[0]
    assert helps[0].replace("pypilite", "X") == helps[1].replace("app.py", "X").replace("pypilite", "X")
    served = serve([venv / "bin" / "pypilite"], outside, env)
    try:
        assert_announced(served)
        assert f"/venv/lib/python3.{sys.version_info.minor}/site-packages/pypilite/" in run(
            [python, "-c", "import pypilite; print(pypilite.__file__)"], env=env, cwd=outside).stdout
        upload_and_install(served, outside)
    finally:
        status = stop(served, signal.SIGTERM)
    assert status == 0, served.banner()
    assert not list((outside / "home" / "tmp").glob("pypilite-metrics-*")), "metrics directory left behind"


def test_uv_tool_install_gives_the_command(dists: Distributions, outside: Path) -> None:
    """`uv tool install` (like pipx) puts `pypilite` on the PATH in an environment of its own."""
    env = isolated_env(outside / "home", UV_TOOL_DIR=str(outside / "tools"), UV_TOOL_BIN_DIR=str(outside / "bin"),
                       UV_PYTHON_DOWNLOADS="never")
    run([uv(), "tool", "install", "--offline", "--no-index", "--find-links", clients.WHEELHOUSE,
         "--python", sys.executable, dists.wheel], env=env, cwd=outside)
    assert "Without a command: serve" in run([outside / "bin" / "pypilite", "--help"], env=env, cwd=outside).stdout
    listed = run([outside / "bin" / "pypilite", "repo", "list"], cwd=outside, check=False,
                 env={**env, "PYPILITE_STORAGE_DATA_DIR": str(outside / "nothing")})
    assert listed.stderr.startswith("pypilite: no data dir at ")


@pytest.mark.parametrize("python", PYTHONS, ids=str)
def test_the_zipapp_runs_on_a_bare_python(dists: Distributions, outside: Path, python: Path) -> None:
    """No venv, no pip install, an environment that names nothing but a home: serve, upload, install,
    Ctrl-C, then a backup of what it served."""
    required(python, "a CPython 3.11+ installed at that path")
    version = run([python, "-c", "import sys; print(sys.version_info >= (3, 11))"], env={}).stdout
    if version != "True\n":
        pytest.skip(f"{python} is older than 3.11")
    home = outside / "home"
    (home / "tmp").mkdir(parents=True)
    env = {"HOME": str(home), "TMPDIR": str(home / "tmp"), "PATH": "/usr/bin:/bin"}
    pyz = outside / "pypilite.pyz"
    shutil.copy(dists.pyz, pyz)
    served = serve([python, "-I", pyz], outside, env)
    try:
        assert_announced(served)
        upload_and_install(served, outside)
    finally:
        status = stop(served, signal.SIGINT, group=True)
    assert status == 0, served.banner()
    backup = run([python, "-I", pyz, "backup", outside / "backup"],
                 env={**env, "PYPILITE_STORAGE_DATA_DIR": str(served.data)}, cwd=outside)
    assert str(outside / "backup") in backup.stdout and (outside / "backup" / "pypilite.db").is_file()
    listed = run([python, "-I", pyz, "repo", "list"], env={**env, "PYPILITE_STORAGE_DATA_DIR": str(served.data)},
                 cwd=outside).stdout
    assert "local" in listed and "pypi" in listed


def test_the_systemd_unit_is_valid_and_hardened(dists: Distributions, outside: Path) -> None:
    """`systemd-analyze verify` checks every directive; the command it starts must exist, so the unit is
    checked with the installed wheel's `pypilite` in place of /opt/pypilite's."""
    analyze = required(Path(shutil.which("systemd-analyze") or "/usr/bin/systemd-analyze"),
                       "install Debian's systemd package")
    env = isolated_env(outside / "home")
    python = new_venv(outside / "venv", env)
    run([python, "-m", "pip", "install", "--no-index", "--find-links", clients.WHEELHOUSE, dists.wheel], env=env)
    unit = (ROOT / "deploy" / "pypilite.service").read_text()
    assert "ExecStart=/opt/pypilite/bin/pypilite serve\n" in unit
    installed = outside / "pypilite.service"
    installed.write_text(unit.replace("/opt/pypilite/bin/pypilite", str(outside / "venv" / "bin" / "pypilite")))
    verified = run([analyze, "verify", installed], env=env, check=False)
    assert (verified.returncode, verified.stdout + verified.stderr) == (0, "")
    for directive in ("User=pypilite", "ProtectSystem=strict", "ReadWritePaths=/var/lib/pypilite",
                      "NoNewPrivileges=yes", "Environment=PYPILITE_STORAGE_DATA_DIR=/var/lib/pypilite"):
        assert f"\n{directive}\n" in unit, directive
    # systemd's own review of the sandbox: exposure at most 2.0 of 10 ("OK").
    run([analyze, "security", "--offline=true", "--threshold=20", installed], env=env)
