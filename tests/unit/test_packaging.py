"""The package builds as a wheel that carries what the server needs and runs without the checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement

import pypilite

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Built from a copy of the sources (the checkout stays clean), offline, with the installed setuptools."""
    work = tmp_path_factory.mktemp("build")
    source = work / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "pypilite", source / "pypilite", ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "--quiet", "--wheel-dir", str(work / "dist"), str(source)], check=True, timeout=300)
    [built] = (work / "dist").glob("pypilite-*.whl")
    return built


def test_the_wheel_holds_the_templates_and_static_files(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    shipped = {path.relative_to(ROOT).as_posix() for folder in ("templates", "static")
               for path in (ROOT / "pypilite" / "web" / folder).rglob("*") if path.is_file()}
    assert shipped and shipped <= names
    assert not any(name.startswith(("tests/", "bench/")) for name in names)


def test_the_wheel_declares_runtime_dependencies_apart_from_the_test_tools(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        [metadata] = [name for name in archive.namelist() if name.endswith(".dist-info/METADATA")]
        fields = Parser().parsestr(archive.read(metadata).decode())
    assert fields["Version"] == pypilite.__version__
    requirements = [Requirement(line) for line in fields.get_all("Requires-Dist")]
    runtime = {r.name.lower() for r in requirements if r.marker is None}
    testing = {r.name.lower() for r in requirements if r.marker is not None and r.marker.evaluate({"extra": "test"})}
    assert {"flask", "gunicorn", "peewee", "requests", "packaging", "pkginfo", "prometheus-client"} <= runtime
    test_tools = {"pytest", "playwright", "schemathesis", "twine", "uv"}
    assert test_tools <= testing and not test_tools & runtime


def test_the_installed_console_script_runs_away_from_the_checkout(wheel: Path, tmp_path: Path) -> None:
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(target), str(wheel)], check=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(target)}
    result = subprocess.run([str(target / "bin" / "pypilite"), "--help"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    where = subprocess.run([sys.executable, "-c", "import pypilite; print(pypilite.__file__)"], cwd=tmp_path,
                           env=env, capture_output=True, text=True, timeout=60, check=True)
    assert Path(where.stdout.strip()).is_relative_to(target)
