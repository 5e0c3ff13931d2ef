"""What the package firewall costs on cached proxy pages: one pypilite (gunicorn, one worker) proxying one
static upstream twice, as `up` without a policy and as `guarded` with every rule on and 10,000 advisories
loaded, their cached project pages measured in alternating rounds.

`python bench/policy.py [--projects 200] [--versions 5] [--duration 10] [--rounds 3] [--advisories 10000]`

The setup and how to read it: bench/README.md. Every loop is bounded and every process stopped on the way out.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import subprocess
import sys
from pathlib import Path

import requests

from common import (
    LOOPBACK,
    REPO_ROOT,
    WRK,
    BenchError,
    Load,
    bench_main,
    bench_parser,
    by_round,
    clean_env,
    free_port,
    gunicorn_args,
    launch,
    load_python,
    load_wrk,
    median_rps,
    parse_bench_args,
    tail,
)
from corpus import write_corpus
from proxy import CACHE_TTL, REMOTE_TIMEOUT, REQUEST_TIMEOUT, start_upstream

HTML = "text/html"
JSON = "application/vnd.pypi.simple.v1+json"
# Every rule on. The static upstream gives no upload times and the corpus declares no licence, so `undated` and
# `licenses_unknown` let its files through: every rule is evaluated for every file and the pages stay whole,
# the same size as without a policy.
POLICY = {
    "mode": "enforce",
    "min_release_age": "3d",
    "undated": "allow",
    "deny": ["evil-*", "typo-squat-*", *(f"denied-{n}<2" for n in range(100))],
    "allow": ["bench-proj-0001==1.0.0"],
    "licenses_deny": ["AGPL-3.0-only", "SSPL-1.0"],
    "licenses_unknown": "allow",
    "block_vulnerable": "low",
    "block_malicious": True,
}
# Loads the advisories into the data dir before the server starts: two about each corpus project (versions it
# does not have, so they match nothing there but are read and matched for every page built), the rest about
# other names, one in ten of them malicious.
LOAD_ADVISORIES = """
import json, sys
from pypilite.advisories import ImportReport, import_records
from pypilite.audit import Actor
from pypilite.config import load_config
from pypilite.database import database
from pypilite.services import open_services
from policy_cpu import advisory_record
config, count, projects = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3])
open_services(load_config(config))
with database.connection_context():
    records = (advisory_record(n, projects) for n in range(count))
    report = import_records(records, "bench", ImportReport(), Actor.command_line())
print(f"{report.stored} advisories stored")
"""


def start_pypilite(stack: contextlib.ExitStack, workdir: Path, upstream_url: str, advisories: int,
                   projects: list[str]) -> tuple[int, Path]:
    config = workdir / "pypilite.toml"
    proxy = {"repository_type": "proxy", "remote_url": upstream_url, "cache_ttl": CACHE_TTL,
             "remote_timeout": REMOTE_TIMEOUT}
    config.write_text(
        f'[storage]\ndata_dir = "{workdir / "pypilite-data"}"\n\n'
        + "".join(f"[[repository]]\n{_toml({'name': name, **proxy})}\n" for name in ("up", "guarded"))
        + f"[repository.policy]\n{_toml(POLICY)}\n")
    env = clean_env() | {"PYPILITE_CONFIG": str(config)}
    loaded = subprocess.run([sys.executable, "-c", LOAD_ADVISORIES, str(config), str(advisories), json.dumps(projects)],
                            cwd=REPO_ROOT, env=env | {"PYTHONPATH": str(Path(__file__).parent)}, capture_output=True,
                            text=True, timeout=600)
    if loaded.returncode != 0:
        raise BenchError(f"loading the advisories failed: {loaded.stderr.strip()[-300:]}")
    print(loaded.stdout.strip(), flush=True)
    port = free_port()
    env |= {"PYPILITE_SERVER_HOST": LOOPBACK, "PYPILITE_SERVER_PORT": str(port)}
    log = workdir / "pypilite.log"
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
            *gunicorn_args(importlib.metadata.version("gunicorn")), "wsgi:app"]
    launch(stack, "pypilite", argv, env, REPO_ROOT, log, port)
    return port, log


def _toml(table: dict[str, object]) -> str:
    """Keys of strings, ints, bools and lists of strings (JSON spells those as TOML does)."""
    return "\n".join(f"{key} = {json.dumps(value)}" for key, value in table.items()) + "\n"


def warm(port: int, projects: list[str], expected_files: int) -> None:
    """Every page of both repositories fetched, checked whole, and asked again with each Accept measured, so
    the rounds measure cached pages answered before."""
    with requests.Session() as session:
        for repo in ("up", "guarded"):
            for project in projects:
                for accept in (JSON, HTML, JSON):
                    response = session.get(f"http://{LOOPBACK}:{port}/{repo}/simple/{project}/",
                                           headers={"Accept": accept}, timeout=REQUEST_TIMEOUT)
                    if response.status_code != 200:
                        raise BenchError(f"/{repo}/simple/{project}/ answered {response.status_code}")
                    if accept == JSON and len(response.json()["files"]) != expected_files:
                        raise BenchError(f"/{repo}/simple/{project}/ does not list all {expected_files} files")


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
    dists = write_corpus(workdir / "corpus", args.projects, args.versions)
    projects = sorted({dist.project for dist in dists})
    upstream = start_upstream(stack, workdir, dists, [])
    port, log = start_pypilite(stack, workdir, f"{upstream.base_url}/simple/", args.advisories, projects)
    try:
        warm(port, projects, 2 * args.versions)
    except (BenchError, requests.RequestException) as exc:
        raise BenchError(f"{exc}; server log: {tail(log)}") from None
    if not WRK:
        print("wrk not found: a Python load generator is used, whose req/s are client-bound: compare the ratios only")
    loads: dict[tuple[str, str], list[Load]] = {}
    for round_no in range(1, args.rounds + 1):
        for accept in (HTML, JSON):
            # Which goes first alternates: a spell of load from elsewhere falls on both alike.
            for repo in ("up", "guarded") if round_no % 2 else ("guarded", "up"):
                paths = [f"/{repo}/simple/{project}/" for project in projects]
                headers = {"Accept": accept}
                load = (load_wrk(WRK, f"http://{LOOPBACK}:{port}", paths, headers, args.duration, workdir, strict=True)
                        if WRK else load_python(port, paths, headers, args.duration))
                if load.errors:
                    raise BenchError(f"{repo} {accept}: {load.errors} answers other than 200; {tail(log)}")
                loads.setdefault((repo, accept), []).append(load)
                print(f"round {round_no}/{args.rounds}  {accept:<36} {repo:<8} {load.rps:9.1f} req/s", flush=True)
    print(f"\ncached project pages, {len(projects)} projects x {2 * args.versions} files, {args.advisories:,} "
          f"advisories, {args.rounds} rounds x {args.duration} s, median req/s:\n")
    print("| page | no policy | every rule on | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for accept in (HTML, JSON):
        plain, guarded = median_rps(loads["up", accept]), median_rps(loads["guarded", accept])
        print(f"| {accept} | {plain:.0f} | {guarded:.0f} | {guarded / plain:.2f} "
              f"({by_round(loads['guarded', accept], loads['up', accept])}) |")


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__, duration=10)
    parser.add_argument("--advisories", type=int, default=10_000, help="advisories loaded (default 10000)")
    return bench_main(parse_bench_args(parser, argv, also_positive=("advisories",)), run, "pypilite-policy-bench-")


if __name__ == "__main__":
    sys.exit(main())
