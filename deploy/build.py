"""Build pypilite's distributions: the sdist, the wheel, and `pypilite.pyz`, one file that runs with any
CPython 3.11+ on Linux (glibc 2.17+) on the build machine's architecture, or `--arch`'s, and needs nothing else.

    python deploy/build.py                      # into dist/, fetching dependencies from pip's index
    python deploy/build.py --fetch-only         # fill the wheelhouse and stop (tests do this once, online)
    python deploy/build.py --offline            # from the wheelhouse alone

Needs `build` and `shiv` (the `test` extra). The zipapp holds every dependency for each supported Python side
by side: compiled modules carry their Python in their file names, so each interpreter loads its own and ignores
the others. One architecture a file: abi3 modules do not name theirs. shiv unpacks them once, on first run,
under ~/.shiv (or $SHIV_ROOT).
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Every CPython with its own wheels of pypilite's compiled dependencies; a newer one loads their abi3 builds
# or the pure-Python fallbacks.
PYTHONS = ("3.11", "3.12", "3.13", "3.14", "3.15")
MANYLINUX = [f"manylinux_2_{minor}" for minor in (17, 24, 26, 27, 28)] + ["manylinux2014"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="where the sdist, wheel and pyz go")
    parser.add_argument("--wheelhouse", type=Path, default=ROOT / "build" / "wheelhouse",
                        help="dependencies' wheels for every supported Python and platform")
    parser.add_argument("--arch", default=platform.machine(), choices=("x86_64", "aarch64"),
                        help="the Linux architecture the zipapp runs on (default: this machine's)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--fetch-only", action="store_true", help="fill the wheelhouse, build nothing")
    mode.add_argument("--offline", action="store_true", help="use the wheelhouse alone, ask no index")
    args = parser.parse_args()
    try:
        if not args.offline:
            fetch(args.wheelhouse, args.arch)
        if not args.fetch_only:
            for path in build(args.out, args.wheelhouse, args.arch, offline=args.offline):
                print(f"{path} ({path.stat().st_size / 1e6:.1f} MB)")
    except subprocess.CalledProcessError as exc:
        print(f"build: {' '.join(map(str, exc.cmd[:4]))}… failed (exit {exc.returncode})", file=sys.stderr)
        return 1
    return 0


def dependencies() -> list[str]:
    with open(ROOT / "pyproject.toml", "rb") as fh:
        return list(tomllib.load(fh)["project"]["dependencies"])


def fetch(wheelhouse: Path, arch: str) -> None:
    """Wheels of every dependency for every target. Those published only as source (peewee) are built here
    first; they are pure Python, so one wheel serves every target."""
    wheelhouse.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--wheel-dir", wheelhouse, *dependencies()], check=True)
    for python in PYTHONS:
        subprocess.run([*pip, "download", "--dest", wheelhouse, "--find-links", wheelhouse,
                        *_target(python, arch), *dependencies()], check=True)


def build(out: Path, wheelhouse: Path, arch: str, offline: bool) -> list[Path]:
    """The sdist and wheel from this checkout, then the zipapp from the wheel and the wheelhouse."""
    out.mkdir(parents=True, exist_ok=True)
    isolation = ["--no-isolation"] if offline else []
    subprocess.run([sys.executable, "-m", "build", "--sdist", "--wheel", *isolation, "--outdir", out, ROOT],
                   check=True, stdout=subprocess.DEVNULL)
    sdist, wheel = (max(out.glob(pattern), key=lambda path: path.stat().st_mtime)
                    for pattern in ("pypilite-*.tar.gz", "pypilite-*.whl"))
    pyz = out / "pypilite.pyz"
    with tempfile.TemporaryDirectory() as tmp:
        site = Path(tmp) / "site-packages"
        for python in PYTHONS:
            # Each Python apart, then merged: pip --target would replace a package another one installed.
            target = Path(tmp) / python
            subprocess.run([sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", "install",
                            "--no-index", "--find-links", wheelhouse, "--target", target, "--no-compile",
                            *_target(python, arch), wheel], check=True)
            shutil.rmtree(target / "bin", ignore_errors=True)  # scripts name one interpreter's path
            shutil.copytree(target, site, dirs_exist_ok=True)
        subprocess.run([sys.executable, "-m", "shiv", "--site-packages", site, "--console-script", "pypilite",
                        "--python", "/usr/bin/env python3", "--output-file", pyz, "--compressed",
                        "--reproducible"], check=True, stdout=subprocess.DEVNULL)
    return [sdist, wheel, pyz]


def _target(python: str, arch: str) -> list[str]:
    """pip's options for wheels of one CPython on one Linux architecture."""
    platforms = [f"--platform={tag}_{arch}" for tag in MANYLINUX]
    return ["--only-binary=:all:", "--implementation=cp", f"--python-version={python}", *platforms]


if __name__ == "__main__":
    sys.exit(main())
