"""From nothing to a served install, each way issue 23 ships pypilite: the wheel into a fresh venv, and the
zipapp under a bare Python. Each way is timed in three steps: install (a venv and `pip install` of the wheel
from the wheelhouse; for the zipapp, a copy of one file), start (until /health answers; the zipapp unpacks
itself on its first start), and a served install (twine uploads a package, pip installs it into a fresh
venv). The zipapp's second start is timed too.

    python bench/from_nothing.py          # builds dist/ with deploy/build.py --offline first

Needs the wheelhouse `python -m tests.clients` fills; talks only to loopback.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from common import LOOPBACK, REPO_ROOT, free_port, launch

WHEELHOUSE = REPO_ROOT / "tests" / ".clients" / "wheelhouse"
BIN = Path(sys.executable).parent


def main() -> int:
    if not WHEELHOUSE.is_dir():
        raise SystemExit("from_nothing: no wheelhouse: run `python -m tests.clients` first")
    with tempfile.TemporaryDirectory(prefix="pypilite-bench-") as tmp, contextlib.ExitStack() as stack:
        work = Path(tmp)
        dist = work / "dist"
        subprocess.run([sys.executable, REPO_ROOT / "deploy" / "build.py", "--offline", "--wheelhouse", WHEELHOUSE,
                        "--out", dist], check=True, capture_output=True)
        (wheel,) = dist.glob("pypilite-*.whl")
        package = _package(work)
        print(f"zipapp: {(dist / 'pypilite.pyz').stat().st_size / 1e6:.1f} MB")

        home = work / "wheel-home"
        venv = work / "venv"
        installed = _timed(lambda: (subprocess.run([sys.executable, "-m", "venv", venv], check=True),
                                    _pip(venv / "bin" / "python", "install", "--no-index", "--find-links",
                                         WHEELHOUSE, wheel)))
        _report("wheel", installed, *_serve(stack, [venv / "bin" / "pypilite"], home, package))

        home = work / "pyz-home"
        pyz = work / "pypilite.pyz"
        copied = _timed(lambda: shutil.copy(dist / "pypilite.pyz", pyz))
        bare = ["/usr/bin/python3", "-I", pyz] if Path("/usr/bin/python3").exists() else [sys.executable, "-I", pyz]
        _report("zipapp, first start", copied, *_serve(stack, bare, home, package))
        _report("zipapp, second start", 0.0, *_serve(stack, bare, home, package))
    return 0


def _serve(stack: contextlib.ExitStack, command: list[str | Path], home: Path, package: Path) -> tuple[float, float]:
    """Seconds to a healthy server, then seconds for an upload and an install from it."""
    port = free_port()
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    data = home / f"data-{port}"
    env = {"HOME": str(home), "TMPDIR": str(home / "tmp"), "PATH": "/usr/bin:/bin",
           "PYPILITE_STORAGE_DATA_DIR": str(data), "PYPILITE_SERVER_HOST": LOOPBACK,
           "PYPILITE_SERVER_PORT": str(port), "GUNICORN_CMD_ARGS": "--workers 2"}
    started = time.perf_counter()
    launch(stack, "pypilite", [str(c) for c in command], env, home, home / f"server-{port}.log", port)
    up = time.perf_counter() - started
    url = f"http://{LOOPBACK}:{port}"
    password = (data / "initial-admin-password").read_text().strip()
    client = home / f"client-{port}"

    def upload_and_install() -> None:
        subprocess.run([BIN / "twine", "upload", "--non-interactive", "--repository-url", f"{url}/local/", "-u",
                        "admin", "-p", password, package], check=True, capture_output=True)
        subprocess.run([sys.executable, "-m", "venv", client], check=True)
        _pip(client / "bin" / "python", "install", "--index-url", f"{url}/simple/", "timed-package==1.0")

    return up, _timed(upload_and_install)


def _package(work: Path) -> Path:
    source = work / "timed-package"
    (source / "timed_package").mkdir(parents=True)
    (source / "timed_package" / "__init__.py").write_text("")
    (source / "pyproject.toml").write_text('[build-system]\nrequires = ["setuptools"]\n'
                                           'build-backend = "setuptools.build_meta"\n'
                                           '[project]\nname = "timed-package"\nversion = "1.0"\n')
    subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--wheel", "--outdir", work / "package", source],
                   check=True, capture_output=True)
    (built,) = (work / "package").glob("*.whl")
    return built


def _pip(python: Path, *args: str | Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(python.parent.parent), "PIP_CONFIG_FILE": os.devnull}
    subprocess.run([python, "-m", "pip", "--disable-pip-version-check", "-q", *args], check=True, env=env)


def _timed(step: Callable[[], object]) -> float:
    started = time.perf_counter()
    step()
    return time.perf_counter() - started


def _report(way: str, install: float, start: float, served: float) -> None:
    print(f"{way:22} install {install:5.1f} s  start {start:5.1f} s  upload+install {served:5.1f} s  "
          f"total {install + start + served:5.1f} s", flush=True)


if __name__ == "__main__":
    sys.exit(main())
