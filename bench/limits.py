"""pypilite against the limits: nginx serving the same index as static files, and a minimal Flask page.

`python bench/limits.py [--projects 200] [--versions 5] [--duration 10] [--rounds 3] [--installs 3]
[--skip-install]`

What runs and how to read it: bench/README.md. Figures are ratios measured in alternation within one run.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from common import (
    CLIENT_CPU,
    CONNECTIONS,
    LOOPBACK,
    PINNED,
    REPO_ROOT,
    SERVER_CPU,
    WRK,
    BenchError,
    Load,
    basic_auth,
    bench_main,
    bench_parser,
    clean_env,
    free_port,
    launch,
    load_wrk,
    median_rps,
    parse_bench_args,
    pinned,
    start_floor,
)
from corpus import install_project_name, median_wheel_size, wheels, write_corpus, write_install_corpus
from run import Server, start_pypilite, upload_corpus

JSON = "application/vnd.pypi.simple.v1+json"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
ACCEL_LOCATION = "/_pypilite_blobs/"
# No upstream is ever asked: the group's guard answers every corpus project from the hosted member, and the
# proxy points at a closed loopback port in case anything did.
REPOSITORIES = """\
[[repository]]
name = "local"
repository_type = "hosted"

[[repository]]
name = "pypi"
repository_type = "proxy"
remote_url = "http://127.0.0.1:9/simple/"

[[repository]]
name = "all"
repository_type = "group"
members = ["local", "pypi"]
upload_to = "local"

[[repository]]
name = "scale"
repository_type = "hosted"
"""
ROOT_INDEX_REQUESTS = 50
INSTALL_TIMEOUT = 600


@dataclass(frozen=True)
class Target:
    """Something measured in every round: a label, who serves it, and the requests it cycles through."""

    measure: str
    server: str
    base_url: str
    paths: list[str]
    headers: dict[str, str]
    script: Path | None = None  # a wrk script of its own (per-path headers)


# --- servers ---------------------------------------------------------------------------------------------

def build_static_tree(pypilite: Server, blobs: Path, tree: Path, projects: list[str]) -> None:
    """pypilite's own pages and blobs, laid out under pypilite's URLs, for nginx to serve as files."""
    with requests.Session() as session:
        for path in ["/local/simple/"] + [f"/local/simple/{p}/" for p in projects]:
            page = session.get(pypilite.base_url + path, timeout=30)
            page.raise_for_status()
            target = tree / path.strip("/") / "index.html"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(page.content)
            if path == "/local/simple/":
                continue
            for file in session.get(pypilite.base_url + path, headers={"Accept": JSON}, timeout=30).json()["files"]:
                sha256 = file["hashes"]["sha256"]
                directory = tree / "local" / "files" / "local" / sha256  # where the pages link
                directory.mkdir(parents=True, exist_ok=True)
                os.link(blobs / sha256[:2] / sha256[2:4] / sha256, directory / file["filename"])
                metadata = (file.get("core-metadata") or {}).get("sha256")
                if metadata:
                    os.link(blobs / metadata[:2] / metadata[2:4] / metadata,
                            directory / f"{file['filename']}.metadata")


def start_nginx(stack: contextlib.ExitStack, workdir: Path, accel: Server, tree: Path | None = None
                ) -> tuple[str, str]:
    """One nginx worker: deploy/nginx.conf in front of `accel`, and the static tree (if any) on another port.
    Returns the static server's URL (empty without a tree) and the front's."""
    static_port, front_port = free_port(), free_port()
    data = workdir / "pypilite-data"
    site = (REPO_ROOT / "deploy" / "nginx.conf").read_text()
    prefix = workdir / "nginx"
    prefix.mkdir()
    for shipped, here in (("listen 80;", f"listen {LOOPBACK}:{front_port};"),
                          ("127.0.0.1:8080", f"{LOOPBACK}:{accel.port}"),
                          ("/var/lib/pypilite/data/", f"{data}/"),
                          ("/var/cache/nginx/pypilite", f"{prefix}/decisions")):
        if shipped not in site:
            raise BenchError(f"deploy/nginx.conf no longer says {shipped!r}")
        site = site.replace(shipped, here)
    temp_paths = "".join(f"{kind}_temp_path {prefix}/{kind};\n"
                         for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = prefix / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.geteuid() == 0 else "") +
        f"worker_processes 1;\npid {prefix}/nginx.pid;\nerror_log {prefix}/error.log;\n"
        "events { worker_connections 1024; }\n"
        f"http {{\naccess_log off;\nsendfile on;\ntcp_nopush on;\nkeepalive_requests 100000;\n{temp_paths}"
        f"server {{\nlisten {LOOPBACK}:{static_port};\nroot {tree or prefix};\nindex index.html;\n"
        "open_file_cache max=10000 inactive=60s;\n"
        "location /nginx-health { return 200; }\n}\n"
        f"{site}\n}}\n")
    argv = [NGINX, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"]
    launch(stack, "nginx", argv, clean_env(), prefix, prefix / "out.log", static_port, health="/nginx-health")
    return (f"http://{LOOPBACK}:{static_port}" if tree else ""), f"http://{LOOPBACK}:{front_port}"


# --- measures --------------------------------------------------------------------------------------------

def conditional_script(directory: Path, paths: list[str], etags: list[str]) -> Path:
    """A wrk script that revalidates each page with the ETag it was served with: every answer a 304."""
    script = directory / "revalidate.lua"
    entries = ",\n".join(f'  {{"{p}", {_lua_string(e)}}}' for p, e in zip(paths, etags))
    script.write_text(
        f"local pages = {{\n{entries}\n}}\nlocal i = 0\nrequest = function()\n  i = i % #pages + 1\n"
        '  return wrk.format("GET", pages[i][1], {["If-None-Match"] = pages[i][2]})\nend\n')
    return script


def _lua_string(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def measure(targets: list[Target], args: argparse.Namespace, scratch: Path) -> dict[tuple[str, str], list[Load]]:
    results: dict[tuple[str, str], list[Load]] = {}
    for round_no in range(1, args.rounds + 1):
        for target in targets:
            load = load_wrk(WRK, target.base_url, target.paths, target.headers, args.duration, scratch,
                            script=target.script)
            results.setdefault((target.measure, target.server), []).append(load)
            print(f"round {round_no}/{args.rounds}  {target.measure:<28} {target.server:<22} {load.rps:9.1f} req/s"
                  f"  ({load.requests} requests, {load.errors} errors)", flush=True)
    return results


def root_index_ms(base_url: str, path: str, accept: str) -> tuple[float, float]:
    """Median and 95th percentile milliseconds of the root index, one request after another."""
    timings = []
    with requests.Session() as session:
        for _ in range(ROOT_INDEX_REQUESTS):
            started = time.perf_counter()
            response = session.get(base_url + path, headers={"Accept": accept}, timeout=30)
            response.raise_for_status()
            timings.append((time.perf_counter() - started) * 1000)
    timings.sort()
    return statistics.median(timings), timings[int(len(timings) * 0.95) - 1]


def time_install(tool: str, index_url: str, workdir: Path) -> float:
    """Seconds for one install of the dependency chain into a fresh venv, with no cache and no other index."""
    venv = Path(tempfile.mkdtemp(prefix=f"{tool}-", dir=workdir))
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    home = venv / "home"
    home.mkdir()
    env = {k: v for k, v in clean_env().items() if not k.startswith(("PIP_", "UV_"))} | {
        "HOME": str(home), "PIP_CONFIG_FILE": os.devnull, "UV_NO_CONFIG": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    python = venv / "bin" / "python"
    if tool == "pip":
        argv = [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-cache-dir", "--index-url",
                index_url, install_project_name(1)]
    else:
        uv = shutil.which("uv", path=str(Path(sys.executable).parent)) or "uv"
        argv = [uv, "pip", "install", "--no-cache", "--python", str(python), "--index-url", index_url,
                install_project_name(1)]
    started = time.perf_counter()  # the client on the other CPU, as wrk is
    done = subprocess.run(pinned(CLIENT_CPU) + argv, env=env, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise BenchError(f"{tool} install from {index_url} failed: {(done.stderr or done.stdout).strip()[-300:]}")
    shutil.rmtree(venv, ignore_errors=True)
    return seconds


# --- report ----------------------------------------------------------------------------------------------

def report(results: dict[tuple[str, str], list[Load]], limits: dict[str, tuple[str, ...]]) -> None:
    """Every figure with its ratios to the limits named for its measure."""
    print(f"\n{'measure':<28} {'server':<22} {'req/s':>9}  ratios")
    for (measure_name, server), loads in results.items():
        rate = median_rps(loads)
        family = measure_name.split(",")[0]
        ratios = []
        for limit in limits.get(family, ()):
            base = results.get((family, limit))
            if base and server != limit:
                ratios.append(f"{rate / median_rps(base):.2f} {limit}")
        errors = sum(load.errors for load in loads)
        note = f"  ({errors} errors)" if errors else ""
        print(f"{measure_name:<28} {server:<22} {rate:9.0f}  {', '.join(ratios)}{note}")


# --- main ------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, duration=10)
    parser.add_argument("--installs", type=int, default=3, help="alternating installs per tool (default 3)")
    parser.add_argument("--skip-install", action="store_true", help="skip the pip and uv installs")
    parser.add_argument("--scale-projects", type=int, default=0,
                        help="also upload this many projects to a second repository and measure its pages")
    parser.add_argument("--scale-versions", type=int, default=4,
                        help="versions per project there, a wheel and an sdist each (default 4)")
    args = parse_bench_args(parser, argv, also_positive=("installs", "scale_versions"))
    if args.scale_projects < 0:
        parser.error("--scale-projects must not be negative")
    return args


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
    if not WRK:
        raise BenchError("wrk is needed (Debian: apt-get install wrk)")
    if not os.access(NGINX, os.X_OK):
        raise BenchError("nginx is needed (Debian: apt-get install nginx-light)")
    dists = write_corpus(workdir / "corpus", args.projects, args.versions)
    installable = write_install_corpus(workdir / "install-corpus")
    config = workdir / "pypilite.toml"
    config.write_text(REPOSITORIES)
    pypilite = start_pypilite(stack, workdir, settings={"PYPILITE_CONFIG": str(config)})
    print(f"pypilite: uploading {len(dists) + len(installable)} files ...", flush=True)
    seconds = upload_corpus(pypilite, dists + installable).seconds
    print(f"pypilite: {len(dists) + len(installable)} uploads in {seconds:.1f} s", flush=True)
    scale = write_corpus(workdir / "scale-corpus", args.scale_projects, args.scale_versions, prefix="bench-scale")
    if scale:
        print(f"pypilite: uploading {len(scale)} more files to `scale` ...", flush=True)
        seconds = upload_corpus(dataclasses.replace(pypilite, upload_path="/scale/"), scale).seconds
        print(f"pypilite: {len(scale)} uploads in {seconds:.1f} s", flush=True)
    accel = start_pypilite(stack, workdir, "pypilite-accel",
                           {"PYPILITE_CONFIG": str(config), "PYPILITE_SERVER_X_ACCEL_REDIRECT": ACCEL_LOCATION})
    projects = sorted({d.project for d in dists})
    tree = workdir / "static"
    everything = projects + sorted({d.project for d in installable})
    build_static_tree(pypilite, workdir / "pypilite-data" / "blobs", tree, everything)
    static, front = start_nginx(stack, workdir, accel, tree)
    pages = [f"/local/simple/{p}/" for p in projects]
    page_size = statistics.median_high((tree / p.strip("/") / "index.html").stat().st_size for p in pages)
    floor = start_floor(stack, workdir, page_size, "flask floor", "app")
    bare = start_floor(stack, workdir, page_size, "gunicorn floor", "wsgi")
    bare_wheel = start_floor(stack, workdir, median_wheel_size(dists), "gunicorn floor, wheel", "wsgi")
    scale_pages = sorted({f"/scale/simple/{d.project}/" for d in scale})
    html = {"Accept": "text/html"}
    with requests.Session() as session:  # every page asked once, as it is measured below
        etags = [session.get(pypilite.base_url + p, headers=html, timeout=30).headers["ETag"] for p in pages]
        for page in scale_pages:
            session.get(pypilite.base_url + page, headers=html, timeout=30).raise_for_status()
        wheel_urls = [f"/local/files/local/{d.sha256}/{d.filename}" for d in wheels(dists)]
        for url in wheel_urls:  # and every wheel once through nginx
            session.get(front + url, timeout=30).raise_for_status()
    group_pages = [p.replace("/local/", "/all/") for p in pages]
    auth = basic_auth(pypilite.auth)
    json_ = {"Accept": JSON}
    targets = [
        Target("page HTML", "flask floor", floor, pages, html),
        Target("page HTML", "gunicorn floor", bare, pages, html),
        Target("page HTML", "nginx static", static, pages, html),
        Target("page HTML", "pypilite hosted", pypilite.base_url, pages, html),
        Target("page HTML", "pypilite group", pypilite.base_url, group_pages, html),
        *([Target("page HTML", f"pypilite, {len(scale)} files", pypilite.base_url, scale_pages, html)]
          if scale else []),
        Target("page HTML, authenticated", "pypilite hosted", pypilite.base_url, pages, html | auth),
        Target("page HTML, authenticated", "pypilite group", pypilite.base_url, group_pages, html | auth),
        Target("page JSON", "pypilite hosted", pypilite.base_url, pages, json_),
        Target("page JSON", "pypilite group", pypilite.base_url, group_pages, json_),
        Target("page JSON, authenticated", "pypilite group", pypilite.base_url, group_pages, json_ | auth),
        Target("page HTML, 304 revalidation", "pypilite hosted", pypilite.base_url, pages, {},
               conditional_script(workdir, pages, etags)),
        Target("wheel download", "nginx static", static, wheel_urls, {}),
        Target("wheel download", "gunicorn floor", bare_wheel, wheel_urls, {}),
        Target("wheel download", "pypilite", pypilite.base_url, wheel_urls, {}),
        Target("wheel download", "nginx + pypilite accel", front, wheel_urls, {}),
        Target("wheel download, authenticated", "nginx + pypilite accel", front, wheel_urls, auth),
    ]
    results = measure(targets, args, workdir)
    report(results, {"page HTML": ("flask floor", "gunicorn floor"), "page JSON": ("flask floor", "gunicorn floor"),
                     "wheel download": ("nginx static", "gunicorn floor")})
    print("(authenticated and JSON pages: compare with the floors' HTML page above; the 304 with the 200)")
    print(f"\nroot index, {ROOT_INDEX_REQUESTS} sequential requests: median / p95 ms")
    hosted = len(projects) + len(installable)
    roots = [("/local/simple/", hosted), ("/all/simple/", hosted)]
    roots += [("/scale/simple/", args.scale_projects)] if scale else []
    for name, base, accept in (("pypilite HTML", pypilite.base_url, "text/html"),
                               ("pypilite JSON", pypilite.base_url, JSON),
                               ("nginx static HTML", static, "text/html")):
        for path, count in roots if name.startswith("pypilite") else roots[:1]:
            median, p95 = root_index_ms(base, path, accept)
            print(f"  {name:<18} {path:<15} {count:6d} projects  {median:7.2f} / {p95:7.2f}")
    if not args.skip_install:
        print(f"\ninstall of a {len(installable)}-project dependency chain, fresh venv, no cache: "
              f"median seconds of {args.installs}")
        for tool in ("pip", "uv"):
            times: dict[str, list[float]] = {"nginx static": [], "pypilite": [], "pypilite group": [],
                                             "nginx + pypilite accel": []}
            for _ in range(args.installs):
                for label, url in (("nginx static", f"{static}/local/simple/"),
                                   ("pypilite", f"{pypilite.base_url}/local/simple/"),
                                   ("pypilite group", f"{pypilite.base_url}/all/simple/"),
                                   ("nginx + pypilite accel", f"{front}/local/simple/")):
                    times[label].append(time_install(tool, url, workdir))
            base = statistics.median(times["nginx static"])
            for label, values in times.items():
                median = statistics.median(values)
                print(f"  {tool:<3} {label:<22} {median:6.2f} s  x{median / base:.2f} of nginx static")
    pinning = f"servers on CPU {SERVER_CPU}, wrk on CPU {CLIENT_CPU}" if PINNED else "not pinned"
    print(f"\ncorpus {args.projects} x {args.versions} = {len(dists)} files (a wheel and an sdist each); "
          f"wrk -t1 -c{CONNECTIONS}, {args.rounds} rounds x {args.duration} s, medians; {pinning}")


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, "pypilite-limits-")


if __name__ == "__main__":
    sys.exit(main())
