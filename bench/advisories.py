"""What advisories cost: importing an OSV dump of COUNT records (`python app.py advisories import`, wall time
and peak memory of the command), and looking up a project's advisories for a page, in-process, for a project
with none and for one with HEAVY advisories and 500 versions.

    python bench/advisories.py [--count 10000]

`write_dump` makes the dump (deterministic, OSV JSON in a zip as the OSV project publishes it) for other
benchmarks too: projects `bench-0000` … are named as bench/corpus.py names them.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HEAVY = 100  # advisories about the project a page lookup is measured on, about as many as the busiest have
HEAVY_PROJECT = "bench-heavy"
VERSIONS = 500
ROUNDS = 20
_SEVERITIES = ("LOW", "MODERATE", "HIGH", "CRITICAL")


def write_dump(path: Path, count: int, projects: int = 200) -> Path:
    """An OSV zip of `count` records about `projects` projects (a third malicious), plus HEAVY about
    HEAVY_PROJECT; each record has a range and a short `versions` list, as real ones do."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for n in range(count + HEAVY):
            project = HEAVY_PROJECT if n >= count else f"bench-{n % projects:04}"
            ident = f"MAL-2026-{n}" if n % 3 == 2 else f"GHSA-{n:04x}-bnch-mark"
            record = {
                "schema_version": "1.6.0", "id": ident, "modified": "2026-12-01T00:00:00Z",
                "aliases": [f"CVE-2026-{n}"], "summary": f"benchmark advisory {n}",
                "database_specific": {"severity": _SEVERITIES[n % 4]},
                "affected": [{"package": {"ecosystem": "PyPI", "name": project},
                              "ranges": [{"type": "ECOSYSTEM", "events": [
                                  {"introduced": f"{n % 5}.0"}, {"fixed": f"{n % 5}.{n % 9 + 1}"}]}],
                              "versions": [f"{n % 5}.{minor}" for minor in range(n % 9 + 1)]}]}
            archive.writestr(f"{ident}.json", json.dumps(record))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        config = Path(tmp) / "bench.toml"
        config.write_text(f'[storage]\ndata_dir = "{data_dir}"\n')
        dump = write_dump(Path(tmp) / "PyPI-all.zip", args.count)
        print(f"{args.count + HEAVY} records, {dump.stat().st_size // 1024} KB zipped")
        _command(config, "repo", "list")  # migrate the new data dir outside the timing
        for label in ("first import", "re-import"):
            started = time.monotonic()
            _command(config, "advisories", "import", str(dump))
            print(f"{label:13} {time.monotonic() - started:6.2f} s wall")
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss // 1024
        print(f"peak memory of a command: {peak} MB")
        _lookups(config)


def _command(config: Path, *args: str) -> None:
    subprocess.run([sys.executable, "app.py", "--config", str(config), *args], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _lookups(config: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from pypilite import advisories
    from pypilite.config import load_config
    from pypilite.database import database
    from pypilite.services import open_services

    open_services(load_config(config))
    versions = [f"{major}.{minor}.{patch}" for major in range(5) for minor in range(10) for patch in range(10)]
    def one_by_one() -> None:
        project = advisories.for_project(HEAVY_PROJECT)
        for version in versions:
            project.affecting(version)

    with database.connection_context():
        for label, call in (
                ("generation()", advisories.generation),
                ("a project with none, a page", lambda: advisories.for_project("bench-none").affecting_each(versions)),
                (f"{HEAVY} advisories, a page of {VERSIONS}",
                 lambda: advisories.for_project(HEAVY_PROJECT).affecting_each(versions)),
                (f"{HEAVY} advisories, {VERSIONS} x affecting()", one_by_one)):
            print(f"{label:38} {min(_cpu(call) for _ in range(ROUNDS)) * 1e3:7.2f} ms CPU")


def _cpu(call: Callable[[], Any]) -> float:
    started = time.process_time()
    call()
    return time.process_time() - started


if __name__ == "__main__":
    main()
