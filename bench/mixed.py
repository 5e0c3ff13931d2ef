"""A mixed workload on a production-shaped pypilite: 90% project pages, 9% wheel downloads, 1% uploads.

`python bench/mixed.py [--projects 200] [--versions 5] [--duration 20] [--rounds 3] [--workers 4]
[--connections 16]`

Alone and behind deploy/nginx.conf, in alternating rounds; what it reports: bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import uuid
from pathlib import Path

from common import WRK, BenchError, Load, basic_auth, bench_main, bench_parser, load_wrk, parse_bench_args
from corpus import Dist, wheels, write_corpus
from limits import ACCEL_LOCATION, NGINX, REPOSITORIES, start_nginx
from run import start_pypilite, upload_corpus

# Uploads written ahead: more than a default run can send, so every upload is a new file.
UPLOAD_POOL = 1500


def _lua_bytes(data: bytes) -> str:
    """A Lua string literal holding exactly these bytes."""
    out = []
    for byte in data:
        char = chr(byte)
        out.append(char if 32 <= byte < 127 and char not in '"\\' else f"\\{byte:03d}")
    return '"' + "".join(out) + '"'


def _multipart(dist: Dist, boundary: str) -> bytes:
    fields = {":action": "file_upload", "protocol_version": "1", "name": dist.project, "version": dist.version,
              "filetype": dist.filetype, "pyversion": dist.pyversion, "sha256_digest": dist.sha256}
    head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
                    for name, value in fields.items())
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="content"; filename="{dist.filename}"\r\n'
             "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + dist.path.read_bytes() + f"\r\n--{boundary}--\r\n".encode()


def mixed_script(script: Path, pages: list[str], wheels: list[str], uploads: list[Dist],
                 auth: dict[str, str]) -> Path:
    """Every request i: an upload when i % 100 == 0, a download when i % 100 < 10, else a page; each kind
    cycles through its own list (uploads run out only after UPLOAD_POOL of them)."""
    boundary = uuid.uuid4().hex
    bodies = ",\n".join(_lua_bytes(_multipart(dist, boundary)) for dist in uploads)
    script.write_text(
        "local pages = {" + ",".join(f'"{p}"' for p in pages) + "}\n"
        "local wheels = {" + ",".join(f'"{w}"' for w in wheels) + "}\n"
        f"local bodies = {{\n{bodies}\n}}\n"
        f'local upload_headers = {{["Authorization"] = "{auth["Authorization"]}", '
        f'["Content-Type"] = "multipart/form-data; boundary={boundary}"}}\n'
        "local i, p, w, u = 0, 0, 0, 0\n"
        "local threads = {}\n"
        "function setup(thread) table.insert(threads, thread) end\n"
        "function init(args) not200 = 0 end\n"
        "request = function()\n"
        "  i = i + 1\n"
        "  if i % 100 == 0 then\n"
        "    u = u % #bodies + 1\n"
        '    return wrk.format("POST", "/local/", upload_headers, bodies[u])\n'
        "  elseif i % 100 < 10 then\n"
        "    w = w % #wheels + 1\n"
        '    return wrk.format("GET", wheels[w])\n'
        "  end\n"
        "  p = p % #pages + 1\n"
        '  return wrk.format("GET", pages[p])\n'
        "end\n"
        "function response(status, headers, body) if status ~= 200 then not200 = not200 + 1 end end\n"
        "function done(summary, latency, requests)\n"
        "  local n = 0\n"
        '  for _, thread in ipairs(threads) do n = n + thread:get("not200") end\n'
        '  io.write(string.format("answers other than 200: %d\\n", n))\n'
        "end\n")
    return script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, duration=20)
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (default 4)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    return parse_bench_args(parser, argv, also_positive=("workers", "connections"))


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
    if not WRK:
        raise BenchError("wrk is needed (Debian: apt-get install wrk)")
    if not Path(NGINX).exists():
        raise BenchError("nginx is needed (Debian: apt-get install nginx-light)")
    dists = write_corpus(workdir / "corpus", args.projects, args.versions)
    uploads = write_corpus(workdir / "uploads", UPLOAD_POOL, 1, prefix="bench-new")
    config = workdir / "pypilite.toml"
    config.write_text(REPOSITORIES)
    settings = {"PYPILITE_CONFIG": str(config)}
    direct = start_pypilite(stack, workdir, "pypilite", settings, workers=args.workers)
    print(f"pypilite: {args.workers} workers; uploading {len(dists)} files ...", flush=True)
    upload_corpus(direct, dists)
    accel = start_pypilite(stack, workdir, "pypilite-accel",
                           settings | {"PYPILITE_SERVER_X_ACCEL_REDIRECT": ACCEL_LOCATION}, workers=args.workers)
    _, front = start_nginx(stack, workdir, accel)
    pages = sorted({f"/local/simple/{d.project}/" for d in dists})
    wheel_urls = [f"/files/local/{d.sha256}/{d.filename}" for d in wheels(dists)]
    half = len(uploads) // 2  # each setup uploads files of its own: a second upload of one would change nothing
    scripts = {"pypilite": mixed_script(workdir / "direct.lua", pages, wheel_urls, uploads[:half],
                                        basic_auth(direct.auth)),
               "nginx + pypilite": mixed_script(workdir / "front.lua", pages, wheel_urls, uploads[half:],
                                                basic_auth(direct.auth))}
    targets = {"pypilite": direct.base_url, "nginx + pypilite": front}
    results: dict[str, list[Load]] = {name: [] for name in targets}
    for round_no in range(1, args.rounds + 1):
        for name, url in targets.items():
            measured = load_wrk(WRK, url, [], {}, args.duration, workdir, strict=True, script=scripts[name],
                                connections=args.connections, latency=True)
            results[name].append(measured)
            print(f"round {round_no}/{args.rounds}  {name:<17} {measured.rps:8.1f} req/s  p50 "
                  f"{measured.latency_ms.get('p50', 0):6.2f} ms  p99 {measured.latency_ms.get('p99', 0):7.2f} ms"
                  f"  ({measured.requests} requests, {measured.errors} not 200)", flush=True)
    print(f"\nmixed workload (90% pages, 9% wheels, 1% new uploads), {args.workers} sync workers, wrk -t1 "
          f"-c{args.connections}, {args.rounds} rounds x {args.duration} s, medians")
    print(f"{'setup':<17} {'req/s':>8} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8} {'not 200':>8}")
    for name, runs in results.items():
        cells = [statistics.median(r.rps for r in runs)]
        cells += [statistics.median(r.latency_ms.get(p, 0.0) for r in runs) for p in ("p50", "p90", "p99")]
        print(f"{name:<17} {cells[0]:8.0f} {cells[1]:8.2f} {cells[2]:8.2f} {cells[3]:8.2f} "
              f"{sum(r.errors for r in runs):8d}")


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, "pypilite-mixed-")


if __name__ == "__main__":
    sys.exit(main())
