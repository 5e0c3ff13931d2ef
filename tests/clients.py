"""The clients the client tests drive, made under tests/.clients by the README's test command
(`.venv/bin/python -m tests.clients`): pip wheels of other versions than the test environment's own, one
virtual environment per tool at a pinned version, and the wheelhouse deploy/build.py builds the zipapp from.
What is there at its version is kept; the tests never fetch anything and fail naming this command when
something is missing."""

from __future__ import annotations

import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CLIENTS = Path(__file__).resolve().parent / ".clients"
COMMAND = ".venv/bin/python -m tests.clients"
# The latest pip; Debian 12's and 22.3.1, of the releases that crashed on JSON pages' legacy dist-info-metadata
# (22.3 to 23.1); one that reads HTML pages only (JSON came with 22.2).
PIPS = ("26.3", "23.0.1", "22.3.1", "21.3")
TOOLS = {"poetry": "2.5.1", "pdm": "2.29.4", "pipenv": "2026.10.3", "hatch": "1.18.2", "flit": "4.2.0"}
# Pins besides the tool's own: pdm 2.29 calls hishel 1's storage, which hishel 2 removed.
ALSO = {"pdm": ("hishel[httpx2]<2",)}


ROOT = Path(__file__).resolve().parent.parent
WHEELHOUSE = CLIENTS / "wheelhouse"


def pip_wheel(version: str) -> Path:
    return CLIENTS / f"pip-{version}-py3-none-any.whl"


def tool(name: str) -> Path:
    """The tool's command, in its own virtual environment."""
    return CLIENTS / name / "bin" / name


def _requirements(name: str) -> list[str]:
    return [f"{name}=={TOOLS[name]}", *ALSO.get(name, ())]


def _marker(name: str) -> Path:
    """Written after a tool's install succeeded, naming what was installed: a venv without it is redone."""
    return CLIENTS / name / "installed.txt"


def _run(args: list[str | Path]) -> None:
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args))} exited {result.returncode}:\n{result.stdout}{result.stderr}")


def _download_pip(version: str) -> None:
    if not pip_wheel(version).is_file():  # one version a call: pip refuses several of one project
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", CLIENTS, f"pip=={version}"])


def _make_venv(name: str) -> None:
    wanted = "\n".join(_requirements(name)) + "\n"
    if _marker(name).is_file() and _marker(name).read_text() == wanted and tool(name).is_file():
        return
    venv = CLIENTS / name
    shutil.rmtree(venv, ignore_errors=True)
    _run([sys.executable, "-m", "venv", venv])
    _run([venv / "bin" / "python", "-m", "pip", "install", "-q", "--disable-pip-version-check",
          *_requirements(name)])
    _marker(name).write_text(wanted)


def wheelhouse_ready() -> bool:
    """Whether the wheelhouse was filled for this pyproject.toml's dependencies."""
    marker = WHEELHOUSE / "pyproject.toml"
    return marker.is_file() and marker.read_text() == (ROOT / "pyproject.toml").read_text()


def _fill_wheelhouse() -> None:
    """pypilite's dependencies for every target of the zipapp, fetched again when pyproject.toml changes."""
    if not wheelhouse_ready():
        _run([sys.executable, ROOT / "deploy" / "build.py", "--fetch-only", "--wheelhouse", WHEELHOUSE])
        (WHEELHOUSE / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())


def main() -> None:
    CLIENTS.mkdir(exist_ok=True)
    jobs = [(_download_pip, version) for version in PIPS] + [(_make_venv, name) for name in TOOLS]
    with ThreadPoolExecutor(max_workers=3) as pool:
        futures = [pool.submit(function, argument) for function, argument in jobs] + [pool.submit(_fill_wheelhouse)]
        for future in futures:
            future.result()
    print(f"tests/.clients: pip {', '.join(PIPS)}; " + ", ".join(f"{n} {v}" for n, v in TOOLS.items())
          + "; the zipapp's wheelhouse")


if __name__ == "__main__":
    main()
