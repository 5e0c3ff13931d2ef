"""What the package firewall costs a cached proxy page in CPU, in-process: the same upstream proxied as `up`
(no policy) and `guarded` (every rule on, 10,000 advisories loaded), each page asked as a gunicorn sync
worker asks the app, through the memo (a repeated request) and past it (Flask, the page cache). `up` is
measured before the import (no rule at all) and after it (the default policy: known-malicious versions
blocked). CPU time of this process, best of ROUNDS, so other load on the machine blurs it less than it does
bench/policy.py.

    python bench/policy_cpu.py
"""

from __future__ import annotations

import gc
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROJECTS = 50
VERSIONS = 10
ADVISORIES = 10_000
REQUESTS = 2_000
ROUNDS = 7
POLICY = {"mode": "enforce", "min_release_age": "3d", "deny": ["evil-*", *(f"denied-{n}<2" for n in range(100))],
          "allow": ["bench-0001==1.0"], "licenses_deny": ["AGPL-3.0-only"], "block_vulnerable": "low",
          "block_malicious": True}


def main() -> None:
    sys.path.insert(0, str(ROOT))
    logging.disable(logging.WARNING)
    from werkzeug.test import EnvironBuilder

    from pypilite.advisories import ImportReport, import_records
    from pypilite.audit import Actor
    from tests.conftest import Index
    from tests.upstream import Upstream, wheel

    tmp = Path(tempfile.mkdtemp(prefix="pypilite-policy-bench-"))
    projects = [f"bench-{p:04d}" for p in range(1, PROJECTS + 1)]
    upstream = Upstream(tmp / "upstream", [wheel(p, f"1.{v}", license_expression="MIT") for p in projects
                                           for v in range(VERSIONS)], json_api=True).start()
    try:
        proxy = {"repository_type": "proxy", "remote_url": upstream.url}
        index = Index(tmp / "data", {"repository": [{"name": "up", **proxy},
                                                    {"name": "guarded", **proxy, "policy": POLICY}]})
        memo = index.app.wsgi_app
        roads: dict[str, Callable[..., Any]] = {"memo (repeated)": memo, "Flask (page cache)": memo.app}
        environs = {repo: [EnvironBuilder(path=f"/{repo}/simple/{p}/", headers={"Accept": "text/html"}).get_environ()
                           for p in projects] for repo in ("up", "guarded")}
        for project in projects:  # fetched and cached
            assert index.get(f"/up/simple/{project}/").status_code == 200
        gc.collect()
        bare = {road: min(_timed(app, environs["up"]) for _ in range(ROUNDS)) for road, app in roads.items()}
        index.run(import_records, (advisory_record(n, projects) for n in range(ADVISORIES)), "bench", ImportReport(),
                  Actor.command_line())
        for repo in ("up", "guarded"):
            for project in projects:  # fetched, licences read, cached
                assert index.get(f"/{repo}/simple/{project}/").status_code == 200
        gc.collect()  # the import's garbage, collected before measuring rather than during
        print(f"{PROJECTS} projects x {VERSIONS} files, {ADVISORIES:,} advisories; CPU µs per cached page, best of "
              f"{ROUNDS} x {REQUESTS}:")
        for road, app in roads.items():
            timings: dict[str, list[float]] = {"up": [], "guarded": []}
            for round_no in range(ROUNDS):  # in turns, which goes first alternating
                for repo in ("up", "guarded") if round_no % 2 else ("guarded", "up"):
                    timings[repo].append(_timed(app, environs[repo]))
            figures = {repo: min(found) for repo, found in timings.items()}
            print(f"  {road:20} no advisories {bare[road] * 1e6:6.1f}   default policy {figures['up'] * 1e6:6.1f}"
                  f"   every rule on {figures['guarded'] * 1e6:6.1f}   ratio to no advisories "
                  f"{figures['guarded'] / bare[road]:.2f}, to the default {figures['guarded'] / figures['up']:.2f}")
    finally:
        upstream.stop()


def advisory_record(n: int, projects: list[str]) -> tuple[str, dict[str, Any]]:
    """Advisory n of the benches' dump: two about each corpus project, the rest about other names."""
    name = projects[n % len(projects)] if n < 2 * len(projects) else f"other-package-{n}"
    ident = f"MAL-2026-{n}" if n % 10 == 9 else f"GHSA-bench-{n:05d}"
    return f"{n}.json", {"id": ident, "modified": "2026-11-01T10:00:00Z", "summary": "bench",
                         "database_specific": {"severity": "HIGH"}, "affected": [{
                             "package": {"ecosystem": "PyPI", "name": name},
                             "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0"}, {"fixed": "0.1"}]}]}]}


def _timed(app: Callable[..., Any], environs: list[dict[str, Any]]) -> float:
    started = time.process_time()
    for n in range(REQUESTS):
        body = app(dict(environs[n % len(environs)]), lambda *_args, **_kwargs: None)
        for _ in body:
            pass
        getattr(body, "close", lambda: None)()
    return (time.process_time() - started) / REQUESTS


if __name__ == "__main__":
    main()
