"""Benchmark the two-node deployment (two gunicorn nodes, each with its own data dir, on one PostgreSQL and one
S3-compatible bucket) beside one node on SQLite with its blobs on disk, in one run, with the ratios.

`python bench/scaleout.py [--projects 50] [--versions 3] [--duration 5] [--rounds 3] [--workers 1]`

Each node of the pair runs `--workers` sync workers, the single node twice as many, so both setups have the
same workers; every server is pinned to the server CPU and the load to the client CPU, as in bench/run.py.
The database and the store are the tests' own: a throwaway PostgreSQL cluster (tests/postgres.py) and moto's
S3 server (tests/s3server.py), both on loopback. What it measures: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

from common import (
    CONNECTIONS,
    WRK,
    BenchError,
    Load,
    bench_main,
    bench_parser,
    by_round,
    load_wrk,
    median_rps,
    parse_bench_args,
)
from corpus import Dist, wheels, write_corpus
from run import JSON, Server, start_pypilite, upload

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests import postgres  # noqa: E402 - the tests' throwaway cluster, from the checkout
from tests.s3server import S3Server  # noqa: E402

ONE = "one node, SQLite + disk"
TWO = "two nodes, PostgreSQL + S3"
PRESIGNED = "the pair, presigned"
UPLOAD_THREADS = 2


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, duration=5)
    parser.set_defaults(projects=50, versions=3)
    parser.add_argument("--workers", type=int, default=1, help="sync workers per node of the pair (default 1)")
    return parse_bench_args(parser, argv, also_positive=("workers",))


def store_settings(stack: contextlib.ExitStack, workdir: Path) -> dict[str, str]:
    """A fresh database on the throwaway cluster and a bucket on a moto server of the run's own."""
    if not postgres.available():
        raise BenchError("PostgreSQL is needed (Debian: apt-get install postgresql)")
    store = S3Server(workdir / "moto.log").start()
    stack.callback(store.stop)
    return {"PYPILITE_DATABASE_URL": postgres.fresh_database_url(), **store.settings(store.new_bucket(), "blobs/")}


def start_pair(stack: contextlib.ExitStack, workdir: Path, workers: int, settings: dict[str, str],
               tag: str = "") -> list[Server]:
    """Two nodes, each with a data dir of its own; the first node on a database creates the first admin, whose
    password the others are given as a copy in their data dirs (the only file the bench writes there)."""
    password = workdir / "node-a" / "pypilite-data" / "initial-admin-password"
    servers = []
    for node in ("a", "b"):
        home = workdir / f"node-{node}{tag}"
        if password.exists():
            (home / "pypilite-data").mkdir(parents=True)
            shutil.copy(password, home / "pypilite-data" / password.name)
        home.mkdir(exist_ok=True)
        servers.append(start_pypilite(stack, home, f"node-{node}{tag}", settings, workers))
    return servers


def upload_split(servers: list[Server], dists: list[Dist]) -> float:
    """Uploads per second: UPLOAD_THREADS clients at once, each sending its share to one server in turn."""
    started = time.perf_counter()
    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        futures = [pool.submit(_upload_all, servers[n % len(servers)], dists[n::UPLOAD_THREADS])
                   for n in range(UPLOAD_THREADS)]
        for future in futures:
            future.result(timeout=900)
    return len(dists) / (time.perf_counter() - started)


def _upload_all(server: Server, dists: list[Dist]) -> None:
    with requests.Session() as session:
        for dist in dists:
            upload(session, server, dist)


def load_split(servers: list[Server], paths: list[str], headers: dict[str, str], duration: int,
               scratch: Path) -> Load:
    """CONNECTIONS connections in all, shared out over the servers (one wrk each, at once), summed."""
    share = CONNECTIONS // len(servers)
    results: list[Load] = []
    lock = threading.Lock()

    def measure(server: Server) -> None:
        load = load_wrk(WRK or "wrk", server.base_url, paths, headers, duration, scratch, connections=share)
        with lock:
            results.append(load)

    threads = [threading.Thread(target=measure, args=(server,)) for server in servers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(duration + 90)
    if len(results) != len(servers):
        raise BenchError("a load generator did not finish")
    return Load(sum(r.requests for r in results), sum(r.errors for r in results), sum(r.rps for r in results))


def check_served(servers: list[Server], dists: list[Dist]) -> None:
    """Every node lists what the other was sent, and serves its bytes."""
    for server in servers:
        for dist in wheels(dists)[:20]:
            page = requests.get(server.base_url + server.project_path(dist.project), timeout=30,
                                headers={"Accept": JSON})
            if page.status_code != 200 or dist.filename not in page.text:
                raise BenchError(f"{server.name} does not list {dist.filename}: {page.status_code}")
            body = requests.get(server.base_url + server.file_url(dist), timeout=30).content
            if body != dist.path.read_bytes():
                raise BenchError(f"{server.name} served other bytes for {dist.filename}")


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
    if not WRK:
        raise BenchError("wrk is needed (Debian: apt-get install wrk)")
    dists = write_corpus(workdir / "corpus", args.projects, args.versions)
    (workdir / "one").mkdir()
    settings = store_settings(stack, workdir)
    setups = {ONE: [start_pypilite(stack, workdir / "one", "one-node", workers=2 * args.workers)],
              TWO: start_pair(stack, workdir, args.workers, settings)}
    uploads: dict[str, float] = {}
    for name, servers in list(setups.items()):
        print(f"{name}: uploading {len(dists)} files ...", flush=True)
        uploads[name] = upload_split(servers, dists)
        check_served(servers, dists)
    # The same pair answering downloads with a redirect to the store: what a node's own part of one costs.
    setups[PRESIGNED] = start_pair(stack, workdir, args.workers, settings | {"PYPILITE_STORAGE_REDIRECT": "presigned"},
                                   "-presigned")
    pages = sorted({f"/local/simple/{d.project}/" for d in dists})
    files = [f"/files/local/{d.sha256}/{d.filename}" for d in wheels(dists)]
    loads: dict[tuple[str, str], list[Load]] = {}
    for round_no in range(1, args.rounds + 1):
        for label, paths, headers in (("pages (HTML)", pages, {}), ("pages (JSON)", pages, {"Accept": JSON}),
                                      ("downloads", files, {})):
            for name, servers in setups.items():
                if name == PRESIGNED and label != "downloads":
                    continue
                measured = load_split(servers, paths, headers, args.duration, workdir)
                if measured.errors:
                    raise BenchError(f"{name}: {measured.errors} answers other than 200 for {label}")
                loads.setdefault((label, name), []).append(measured)
                print(f"round {round_no}/{args.rounds}  {label:<13} {name:<27} {measured.rps:8.1f} req/s",
                      flush=True)
    print(f"\n{len(dists)} files; each node of the pair {args.workers} sync worker(s), the single node "
          f"{2 * args.workers}; wrk -t1 -c{CONNECTIONS} in all, {args.rounds} rounds x {args.duration} s, medians")
    print(f"{'':<14} {ONE:>26} {TWO:>28} {'ratio':>7}  ratio by round")
    for label in ("pages (HTML)", "pages (JSON)", "downloads"):
        one, two = median_rps(loads[(label, ONE)]), median_rps(loads[(label, TWO)])
        print(f"{label:<14} {one:20.0f} req/s {two:22.0f} req/s {two / one:7.2f}  "
              f"{by_round(loads[(label, TWO)], loads[(label, ONE)])}")
    one, two = median_rps(loads[("downloads", ONE)]), median_rps(loads[("downloads", PRESIGNED)])
    print(f"{'redirects':<14} {one:20.0f} req/s {two:22.0f} req/s {two / one:7.2f}  "
          f"{by_round(loads[('downloads', PRESIGNED)], loads[('downloads', ONE)])} (the pair: 302s to the store)")
    one, two = uploads[ONE], uploads[TWO]
    print(f"{'uploads':<14} {one:18.1f} files/s {two:20.1f} files/s {two / one:7.2f}  "
          f"({UPLOAD_THREADS} clients at once, one round)")
    print("ratio: the pair's figure over the single node's; 1.00 is parity")


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, "pypilite-scaleout-")


if __name__ == "__main__":
    sys.exit(main())
