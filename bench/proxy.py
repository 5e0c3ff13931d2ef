"""Benchmark pypilite's proxy repository side by side with proxpi and devpi-server, all three caching the same
static upstream on this machine.

`python bench/proxy.py [--projects 200] [--versions 5] [--duration 10] [--rounds 3] [--no-peers]
[--long-pages 3]`

The setup and how to read it: bench/README.md. Every loop is bounded and every process stopped on the way out.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import hashlib
import html
import importlib.metadata
import json
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

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
    by_round,
    clean_env,
    free_port,
    gunicorn_args,
    install_venv,
    launch,
    load_python,
    load_wrk,
    median_rps,
    parse_bench_args,
    stop,
    tail,
    versions,
)
from corpus import Dist, wheels, write_corpus

# The same freshness everywhere: pypilite's cache_ttl, proxpi's PROXPI_INDEX_TTL, devpi's mirror expiry.
CACHE_TTL = 600
REMOTE_TIMEOUT = 10
REQUEST_TIMEOUT = 30
# A file a server has not yet cached (proxpi redirects to the upstream while its download runs) is asked again
# this many times, this far apart, before the benchmark gives up on that server.
CACHED_TRIES = 25
CACHED_PAUSE = 0.2
DEVPI_INIT_TIMEOUT = 120
# The long pages whose first fetch is timed: a project with many releases on a public index lists thousands of
# files, and a cache stores every one of them on its first fetch.
LONG_PAGE_VERSIONS = 1000
UPSTREAM_LOG_SETTLE = 0.5
HTML = "text/html"
PAGES = "cached project page HTML"
FILES = "cached file download"
METRICS = (PAGES, FILES)
JSON = "application/vnd.pypi.simple.v1+json"
PYPILITE = "pypilite"
PROXPI = "proxpi"
DEVPI = "devpi"
UPSTREAM = "static upstream"
PEERS = (PROXPI, DEVPI)


@dataclass
class Server:
    """A server under test (or the upstream itself), where it listens and where its project pages are."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    page_prefix: str
    description: str
    file_paths: list[str] = field(default_factory=list)
    page_headers: dict[str, str] = field(default_factory=lambda: {"Accept": HTML})
    warm_seconds: float | None = None
    # Median milliseconds a first (uncached) page or file request took beyond the upstream's own answer.
    cold_page_ms: float | None = None
    cold_file_ms: float | None = None
    long_page_ms: float | None = None  # the same for a page of 2 x LONG_PAGE_VERSIONS files

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def page_path(self, project: str) -> str:
        return f"{self.page_prefix}{project}/"

    def paths(self, metric: str, projects: list[str]) -> list[str]:
        return [self.page_path(p) for p in projects] if metric == PAGES else self.file_paths


@dataclass
class Results:
    loads: dict[tuple[str, str], list[Load]] = field(default_factory=dict)
    # Requests the upstream logged while a server was being measured: more than 0 means it was not all cached.
    upstream_hits: dict[tuple[str, str], int] = field(default_factory=dict)


# --- the upstream ----------------------------------------------------------------------------------------

def write_upstream(root: Path, dists: list[Dist]) -> None:
    """A static PEP 503 tree: simple/index.html, simple/<project>/index.html with `#sha256=` on every link, and
    the files under files/."""
    files = root / "files"
    files.mkdir(parents=True)
    by_project: dict[str, list[Dist]] = {}
    for dist in dists:
        by_project.setdefault(dist.project, []).append(dist)
        (files / dist.filename).write_bytes(dist.path.read_bytes())
    simple = root / "simple"
    for project, project_dists in by_project.items():
        anchors = "\n".join(f'<a href="../../files/{html.escape(d.filename)}#sha256={d.sha256}">'
                            f"{html.escape(d.filename)}</a><br>" for d in project_dists)
        page = simple / project / "index.html"
        page.parent.mkdir(parents=True)
        page.write_text(f"<!DOCTYPE html>\n<html><head><title>Links for {project}</title></head><body>\n"
                        f"{anchors}\n</body></html>\n")
    anchors = "\n".join(f'<a href="{p}/">{p}</a><br>' for p in by_project)
    (simple / "index.html").write_text(f"<!DOCTYPE html>\n<html><body>\n{anchors}\n</body></html>\n")


def start_upstream(stack: contextlib.ExitStack, workdir: Path, dists: list[Dist], unmeasured: list[Dist]) -> Server:
    """`python -m http.server` (a ThreadingHTTPServer) on the tree of `dists` and `unmeasured` (whose files the
    rounds do not download), pinned to the servers' CPU: idle while the caches are measured, and measured itself
    on the same CPU as they are."""
    root = workdir / "upstream"
    write_upstream(root, dists + unmeasured)
    port = free_port()
    argv = [sys.executable, "-u", "-m", "http.server", "--bind", LOOPBACK, "--directory", str(root), str(port)]
    log = workdir / "upstream.log"
    process = launch(stack, UPSTREAM, argv, clean_env(), workdir, log, port, health="/simple/")
    description = f"{UPSTREAM}: python {sys.version.split()[0]} -m http.server (threaded, HTTP/1.0)"
    server = Server(UPSTREAM, process, port, log, "/simple/", description)
    server.file_paths = [f"/files/{d.filename}" for d in wheels(dists)]
    return server


class UpstreamLog:
    """The requests the upstream logged since last asked (http.server writes one line per request to stderr,
    `... "GET /path HTTP/1.1" 200 -`)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0

    def new_requests(self) -> list[str]:
        with self.path.open("rb") as fh:
            fh.seek(self.offset)
            text = fh.read()
        complete = text[:text.rfind(b"\n") + 1]  # a line still being written is read next time
        self.offset += len(complete)
        return re.findall(r'"((?:GET|HEAD) \S+)', complete.decode(errors="replace"))


# --- the servers under test ------------------------------------------------------------------------------

def _toml_tables(repositories: list[dict[str, object]]) -> str:
    """[[repository]] tables (strings, ints and lists of strings; JSON spells those as TOML does)."""
    return "\n\n".join("[[repository]]\n" + "\n".join(f"{k} = {json.dumps(v)}" for k, v in repository.items())
                       for repository in repositories) + "\n"


def start_pypilite(stack: contextlib.ExitStack, workdir: Path, upstream_url: str) -> Server:
    """pypilite as production runs it (gunicorn.conf.py) with one worker, a fresh data dir, and a proxy `up` of
    the upstream (plus the hosted `local` and the `all` group the default config expects)."""
    config = workdir / "pypilite.toml"
    config.write_text(_toml_tables([
        {"name": "local", "repository_type": "hosted"},
        {"name": "up", "repository_type": "proxy", "remote_url": upstream_url, "cache_ttl": CACHE_TTL,
         "remote_timeout": REMOTE_TIMEOUT},
        {"name": "all", "repository_type": "group", "members": ["local", "up"], "upload_to": "local"},
    ]))
    port = free_port()
    env = clean_env() | {
        "PYPILITE_CONFIG": str(config),
        "PYPILITE_STORAGE_DATA_DIR": str(workdir / "pypilite-data"),
        "PYPILITE_SERVER_HOST": LOOPBACK,
        "PYPILITE_SERVER_PORT": str(port),
    }
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
            *gunicorn_args(importlib.metadata.version("gunicorn")), "wsgi:app"]
    log = workdir / "pypilite.log"
    process = launch(stack, PYPILITE, argv, env, REPO_ROOT, log, port)
    description = (f"pypilite (this checkout) on gunicorn {importlib.metadata.version('gunicorn')}, 1 sync worker, "
                   "proxy repository `up`")
    return Server(PYPILITE, process, port, log, "/up/simple/", description)


def _install(name: str, venv: Path, packages: list[str]) -> Path | None:
    print(f"peer: installing {', '.join(packages)} into a throwaway venv ...", flush=True)
    try:
        return install_venv(sys.executable, venv, packages)
    except BenchError as exc:
        print(f"peer: {name} cannot be installed ({exc}); continuing without it")
        return None


def start_proxpi(stack: contextlib.ExitStack, workdir: Path, upstream_url: str) -> Server | None:
    """proxpi's Flask app under gunicorn with one sync worker, configured through its environment variables."""
    python = _install(PROXPI, workdir / "proxpi-venv", ["proxpi", "gunicorn"])
    if python is None:
        return None
    found = versions(python, "proxpi", "gunicorn")
    port = free_port()
    env = clean_env() | {
        "PROXPI_INDEX_URL": upstream_url,
        "PROXPI_INDEX_TTL": str(CACHE_TTL),
        "PROXPI_EXTRA_INDEX_URLS": "",
        "PROXPI_CACHE_DIR": str(workdir / "proxpi-cache"),
        "PROXPI_CONNECT_TIMEOUT": str(REMOTE_TIMEOUT),
        "PROXPI_READ_TIMEOUT": str(REMOTE_TIMEOUT),
    }
    argv = [str(python), "-m", "gunicorn", *gunicorn_args(found["gunicorn"]), "--bind", f"{LOOPBACK}:{port}",
            "proxpi.server:app"]
    log = workdir / "proxpi.log"
    try:
        process = launch(stack, PROXPI, argv, env, workdir, log, port)
    except BenchError as exc:
        print(f"peer: proxpi does not start ({exc}); continuing without it")
        return None
    description = f"proxpi {found['proxpi']} on gunicorn {found['gunicorn']}, 1 sync worker"
    return Server(PROXPI, process, port, log, "/index/", description)


def _devpi_mirror(base_url: str, password: str, upstream_url: str) -> None:
    """Log in as root and create the mirror index root/up of the upstream, through devpi's REST API."""
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    with requests.Session() as session:
        login = session.post(f"{base_url}/+login", json={"user": "root", "password": password}, headers=headers,
                             timeout=REQUEST_TIMEOUT)
        if login.status_code != 200:
            raise BenchError(f"login as root answered {login.status_code}: {login.text.strip()[:200]}")
        token = base64.b64encode(f"root:{login.json()['result']['password']}".encode()).decode()
        created = session.put(f"{base_url}/root/up", headers=headers | {"X-Devpi-Auth": token},
                              json={"type": "mirror", "mirror_url": upstream_url}, timeout=REQUEST_TIMEOUT)
        if created.status_code not in (200, 201):
            raise BenchError(f"creating root/up answered {created.status_code}: {created.text.strip()[:200]}")


def start_devpi(stack: contextlib.ExitStack, workdir: Path, upstream_url: str) -> Server | None:
    """devpi-server as it runs by default (one process, waitress with its default threads), with no root/pypi
    (which would mirror the public index) and a mirror index root/up of the upstream instead."""
    python = _install(DEVPI, workdir / "devpi-venv", ["devpi-server"])
    if python is None:
        return None
    bin_dir = python.parent
    serverdir = workdir / "devpi-server"
    password = secrets.token_urlsafe(16)
    try:
        # Joined with "=": a password beginning with "-" (one in 64 from token_urlsafe) would read as an option.
        subprocess.run([str(bin_dir / "devpi-init"), "--serverdir", str(serverdir), "--no-root-pypi",
                        f"--root-passwd={password}"], check=True, capture_output=True, text=True,
                       timeout=DEVPI_INIT_TIMEOUT, env=clean_env())
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", None) or str(exc)
        print(f"peer: devpi-init failed ({detail.strip().splitlines()[-1]}); continuing without devpi")
        return None
    port = free_port()
    argv = [str(bin_dir / "devpi-server"), "--serverdir", str(serverdir), "--host", LOOPBACK, "--port", str(port),
            "--mirror-cache-expiry", str(CACHE_TTL), "--request-timeout", str(REMOTE_TIMEOUT)]
    log = workdir / "devpi.log"
    try:
        process = launch(stack, DEVPI, argv, clean_env(), workdir, log, port, health="/+api")
        _devpi_mirror(f"http://{LOOPBACK}:{port}", password, upstream_url)
    except BenchError as exc:
        print(f"peer: devpi-server does not start ({exc}); continuing without it")
        return None
    found = versions(python, "devpi-server", "waitress")
    description = (f"devpi-server {found['devpi-server']} on waitress {found['waitress']} (its default 50 threads), "
                   "1 process, mirror index root/up")
    return Server(DEVPI, process, port, log, "/root/up/+simple/", description)


# --- warming ---------------------------------------------------------------------------------------------

class _Anchors(HTMLParser):
    """The href and text of every <a> on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[tuple[str, str]] = []
        self._href: str | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._href = dict(attrs).get("href") or ""
            self._text = []

    def handle_data(self, data: str) -> None:
        if self._href is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._href is not None:
            self.links.append((self._href, "".join(self._text).strip()))
            self._href = None


def _get_page(server: Server, session: requests.Session, project: str) -> requests.Response:
    """The server's HTML page of `project`, or BenchError."""
    response = session.get(server.base_url + server.page_path(project), headers={"Accept": HTML},
                           timeout=REQUEST_TIMEOUT)
    if response.status_code != 200 or not response.headers.get("Content-Type", "").startswith(HTML):
        raise BenchError(f"{server.name}: page of {project} answered {response.status_code} "
                         f"{response.headers.get('Content-Type', '')}: {response.text.strip()[:200]}")
    return response


def _page_links(page: requests.Response) -> dict[str, tuple[str, str]]:
    """filename -> (absolute URL, declared sha256) from an HTML project page."""
    parser = _Anchors()
    parser.feed(page.text)
    links = {}
    for href, text in parser.links:
        target, fragment = urldefrag(urljoin(page.url, href))
        filename = text or unquote(urlsplit(target).path.rsplit("/", 1)[-1])
        links[filename] = (target, fragment.removeprefix("sha256=") if fragment.startswith("sha256=") else "")
    return links


def _download_cached(server: Server, session: requests.Session, url: str, sha256: str) -> None:
    """Download one file until the server answers it itself (not with a redirect elsewhere), and check it."""
    for _ in range(CACHED_TRIES):
        response = session.get(url, timeout=REQUEST_TIMEOUT, allow_redirects=False)
        if response.status_code == 200:
            got = hashlib.sha256(response.content).hexdigest()
            if got != sha256:
                raise BenchError(f"{server.name}: {url} has sha256 {got}, its page declares {sha256}")
            return
        if not response.is_redirect:
            raise BenchError(f"{server.name}: {url} answered {response.status_code}: {response.text.strip()[:200]}")
        time.sleep(CACHED_PAUSE)
    raise BenchError(f"{server.name}: {url} still redirects elsewhere after {CACHED_TRIES} tries; not cached")


def _timed(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return (time.perf_counter() - started) * 1000


def _first_page(server: Server, upstream: Server, session: requests.Session,
                project: str) -> tuple[float, dict[str, tuple[str, str]]]:
    """The server's page of `project`, asked once: the milliseconds it took beyond the upstream's own answer to
    the same request (asked just before), and its links."""
    direct = _timed(lambda: session.get(upstream.base_url + upstream.page_path(project), timeout=30))
    pages: list[requests.Response] = []
    extra = _timed(lambda: pages.append(_get_page(server, session, project))) - direct
    return extra, _page_links(pages[0])


def warm(server: Server, upstream: Server, expected: dict[str, dict[str, str]], measured: set[str]) -> None:
    """Fetch every project page once and download every file once through the server, so that all of it is
    cached; each page must list exactly the corpus's files with their sha256, and each file must hash to it.
    Records the paths of the `measured` files (the wheels) to cycle through, how long the whole cold pass took,
    and what each first request cost beyond the upstream's own answer to the same request, asked just before."""
    started = time.perf_counter()
    paths = []
    page_extra, file_extra = [], []
    with requests.Session() as session:
        for project, files in expected.items():
            extra, links = _first_page(server, upstream, session, project)
            page_extra.append(extra)
            if set(links) != set(files):
                raise BenchError(f"{server.name}: page of {project} lists {sorted(links)}, not {sorted(files)}")
            for filename, sha256 in files.items():
                url, declared = links[filename]
                if declared != sha256:
                    raise BenchError(f"{server.name}: page of {project} declares sha256 {declared!r} for "
                                     f"{filename}, the upstream {sha256}")
                parts = urlsplit(url)
                if (parts.hostname, parts.port) != (LOOPBACK, server.port):
                    raise BenchError(f"{server.name}: {filename} links to another server: {url}")
                direct = _timed(lambda: session.get(f"{upstream.base_url}/files/{filename}", timeout=30).content)
                file_extra.append(_timed(lambda: _download_cached(server, session, url, sha256)) - direct)
                if filename in measured:
                    paths.append(parts.path + (f"?{parts.query}" if parts.query else ""))
    server.file_paths = paths
    server.warm_seconds = time.perf_counter() - started
    server.cold_page_ms = statistics.median(page_extra)
    server.cold_file_ms = statistics.median(file_extra)


def first_long_fetch(server: Server, upstream: Server, expected: dict[str, dict[str, str]]) -> None:
    """Fetch each long page once, the server's first fetch of it; each must list exactly the upstream's files with
    their sha256. Records the median time beyond the upstream's own answer to the same request, asked just
    before."""
    extra = []
    with requests.Session() as session:
        for project, files in expected.items():
            ms, links = _first_page(server, upstream, session, project)
            extra.append(ms)
            if {filename: sha256 for filename, (_, sha256) in links.items()} != files:
                raise BenchError(f"{server.name}: the long page of {project} does not list the upstream's "
                                 f"{len(files)} files with their sha256 ({len(links)} listed)")
    server.long_page_ms = statistics.median(extra)


# --- measuring -------------------------------------------------------------------------------------------

def pypilite_variants(pypilite: Server, workdir: Path) -> list[Server]:
    """The same pypilite's cached pages asked for otherwise: through the `all` group, with credentials (the
    initial admin's), and as PEP 691 JSON; measured in the same rounds, against the peers' HTML pages."""
    password = (workdir / "pypilite-data" / "initial-admin-password").read_text().strip()
    group = dataclasses.replace(pypilite, name=f"{PYPILITE} group", page_prefix="/all/simple/")
    return [
        group,
        dataclasses.replace(group, name=f"{PYPILITE} group, authenticated",
                            page_headers={"Accept": HTML} | basic_auth(("admin", password))),
        dataclasses.replace(pypilite, name=f"{PYPILITE} JSON", page_headers={"Accept": JSON}),
        dataclasses.replace(group, name=f"{PYPILITE} group JSON", page_headers={"Accept": JSON}),
    ]


def ask_again(servers: list[Server], variants: list[Server], projects: list[str]) -> None:
    """Every path the rounds measure, asked once more of each server with the headers it is measured with.
    Filling a cache writes, and a write can end what a server remembers of its answers (pypilite's memo of
    them): the rounds measure a warm cache answering what it has answered before, not its first answers
    after the cold pass's last write."""
    with requests.Session() as session:
        for metric in METRICS:
            for server in [*servers, *(variants if metric == PAGES else [])]:
                headers = server.page_headers if metric == PAGES else {}
                for path in server.paths(metric, projects):
                    response = session.get(server.base_url + path, headers=headers, timeout=REQUEST_TIMEOUT)
                    if response.status_code != 200:
                        raise BenchError(f"{server.name}: {path} answered {response.status_code} when asked again")


def measure(servers: list[Server], variants: list[Server], upstream: Server, projects: list[str],
            args: argparse.Namespace, scratch: Path) -> Results:
    """Rounds of pypilite, proxpi, devpi, upstream for each metric: a slow spell of the machine hits all alike.
    The upstream's log tells whether a cache asked it anything while it was measured."""
    results = Results()
    upstream_log = UpstreamLog(upstream.log)
    upstream_log.new_requests()
    for round_no in range(1, args.rounds + 1):
        for metric in METRICS:
            for server in [*servers, *(variants if metric == PAGES else []), upstream]:
                paths = server.paths(metric, projects)
                headers = server.page_headers if metric == PAGES else {}
                if WRK:
                    load = load_wrk(WRK, server.base_url, paths, headers, args.duration, scratch, strict=True)
                else:
                    load = load_python(server.port, paths, headers, args.duration)
                if server is upstream:
                    # Its last requests may still be logged after wrk returns: they are not the next server's.
                    time.sleep(UPSTREAM_LOG_SETTLE)
                asked = upstream_log.new_requests()
                key = (server.name, metric)
                results.loads.setdefault(key, []).append(load)
                note = ""
                if server is not upstream:
                    results.upstream_hits[key] = results.upstream_hits.get(key, 0) + len(asked)
                    if asked:
                        shown = ", ".join(asked[:3]) + (", ..." if len(asked) > 3 else "")
                        note = f"; upstream asked {len(asked)}x: {shown}"
                print(f"round {round_no}/{args.rounds}  {metric:<24}  {server.name:<15}  {load.rps:9.1f} req/s"
                      f"  ({load.requests} requests, {load.errors} errors{note})", flush=True)
    return results


# --- report ----------------------------------------------------------------------------------------------

def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours is not None and theirs else "-"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _rows(results: Results, servers: list[Server], rounds: int) -> list[list[str]]:
    names = [PYPILITE, *PEERS, UPSTREAM]
    rows = []
    for metric in METRICS:
        medians: dict[str, float] = {}
        notes = []
        for name in names:
            loads = results.loads.get((name, metric))
            if not loads:
                continue
            rates = [load.rps for load in loads]
            medians[name] = statistics.median(rates)
            errors = sum(load.errors for load in loads)
            hits = results.upstream_hits.get((name, metric), 0)
            notes.append(f"{name} {min(rates):.0f}-{max(rates):.0f}" + (f", {errors} errors" if errors else "")
                         + (f", upstream asked {hits}x" if hits else ""))
        for peer in PEERS:
            paired = by_round(results.loads.get((PYPILITE, metric), []), results.loads.get((peer, metric), []))
            notes += [f"pypilite/{peer} {paired}"] if paired else []
        rows.append([f"{metric}: req/s (median of {rounds})", *(_cell(medians.get(n)) for n in names),
                     *(_ratio(medians.get(PYPILITE), medians.get(peer)) for peer in PEERS), "; ".join(notes)])
    warmed = {server.name: server.warm_seconds for server in servers}
    rows.append(["cold pass, every page + file once: seconds", *(_cell(warmed.get(n)) for n in names),
                 *(_ratio(warmed.get(PYPILITE), warmed.get(peer)) for peer in PEERS),
                 "one client, one request at a time, fills the cache (lower is better)"])
    long_files = f"{2 * LONG_PAGE_VERSIONS:,}-file page"
    for what, attribute in (("page", "cold_page_ms"), ("file", "cold_file_ms"), (long_files, "long_page_ms")):
        extra = {server.name: getattr(server, attribute) for server in servers}
        if all(value is None for value in extra.values()):
            continue
        rows.append([f"first {what} request: ms beyond the upstream's own (median)",
                     *(_cell(extra.get(n)) for n in names), *("-" for _ in PEERS),
                     "what a cache adds to an uncached request (lower is better)"])
    return rows


def print_table(results: Results, args: argparse.Namespace, servers: list[Server], variants: list[Server],
                upstream: Server, files: int) -> None:
    generator = f"wrk -t1 -c{CONNECTIONS}" if WRK else f"python threads x{CONNECTIONS} (wrk missing)"
    pinning = (f"servers and upstream on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}" if PINNED
               else "not pinned")
    print()
    print(f"corpus: {args.projects} projects x {args.versions} versions = {files} files (a wheel and an sdist "
          f"each); load: {generator}, "
          f"{args.rounds} rounds x {args.duration} s per figure; {pinning}; cache TTL {CACHE_TTL} s everywhere")
    for server in [*servers, upstream]:
        print(f"  {server.description}")
    header = ["metric", PYPILITE, PROXPI, DEVPI, UPSTREAM, "pypilite/proxpi", "pypilite/devpi", "notes"]
    cells = [header] + _rows(results, servers, args.rounds)
    widths = [max(len(row[i]) for row in cells) for i in range(len(header) - 1)]
    for row in cells:
        print("  ".join([f"{row[0]:<{widths[0]}}", *(f"{c:>{w}}" for c, w in zip(row[1:-1], widths[1:])),
                         row[-1]]).rstrip())
    print("ratios = pypilite / peer; req/s: higher is better. Every file was checked against its page's sha256 "
          "while warming.")
    peers = {peer: median_rps(results.loads[(peer, PAGES)])
             for peer in PEERS if (peer, PAGES) in results.loads}
    for variant in variants:
        rate = median_rps(results.loads[(variant.name, PAGES)])
        against = ", ".join(f"{rate / peers[peer]:.2f}x {peer}'s HTML page" for peer in peers)
        print(f"  {variant.name + ':':<34} {rate:9.1f} req/s" + (f"  ({against})" if against else ""))


# --- main ------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, duration=10)
    parser.add_argument("--no-peers", action="store_true", help="do not install and run proxpi and devpi-server")
    parser.add_argument("--long-pages", type=int, default=3,
                        help=f"projects of {2 * LONG_PAGE_VERSIONS:,} files whose first fetch is timed (default 3; "
                             "0 skips it)")
    args = parse_bench_args(parser, argv)
    if args.long_pages < 0:
        parser.error("--long-pages must not be negative")
    return args


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
    """The whole benchmark in `workdir`; every process it starts is registered on `stack` to be stopped."""
    dists = write_corpus(workdir / "corpus", args.projects, args.versions)
    expected: dict[str, dict[str, str]] = {}
    for dist in dists:
        expected.setdefault(dist.project, {})[dist.filename] = dist.sha256
    long = write_corpus(workdir / "long-corpus", args.long_pages, LONG_PAGE_VERSIONS, prefix="bench-long")
    long_expected: dict[str, dict[str, str]] = {}
    for dist in long:
        long_expected.setdefault(dist.project, {})[dist.filename] = dist.sha256
    if not WRK:
        print("wrk not found (Debian: apt-get install wrk); falling back to a Python load generator, whose "
              "req/s are client-bound: compare the ratios only")
    upstream = start_upstream(stack, workdir, dists, long)
    upstream_url = f"{upstream.base_url}/simple/"
    print(f"upstream: {len(dists)} files of {len(expected)} projects, and {len(long)} of {len(long_expected)} long "
          f"pages, on {upstream_url}", flush=True)
    servers = [start_pypilite(stack, workdir, upstream_url)]
    if not args.no_peers:
        servers += [peer for peer in (start_proxpi(stack, workdir, upstream_url),
                                      start_devpi(stack, workdir, upstream_url)) if peer is not None]
    for server in list(servers):
        print(f"{server.name}: up on {server.base_url}; warming: {len(expected)} pages, {len(dists)} files ...",
              flush=True)
        try:
            warm(server, upstream, expected, {dist.filename for dist in wheels(dists)})
        except (BenchError, requests.RequestException) as exc:
            if server.name == PYPILITE:
                raise BenchError(f"{exc}; server log: {tail(server.log)}") from None
            print(f"peer: {server.name} failed while warming ({exc}); continuing without it")
            stop(server.process)
            servers.remove(server)
    variants = pypilite_variants(servers[0], workdir)
    estimate = args.rounds * (len(METRICS) * (len(servers) + 1) + len(variants)) * (args.duration + 1)
    if estimate > CACHE_TTL * 0.8:
        print(f"warning: measuring takes about {estimate} s, close to the cache TTL of {CACHE_TTL} s: pages may "
              "be revalidated with the upstream while they are measured (the notes count upstream requests)")
    ask_again(servers, variants, list(expected))
    results = measure(servers, variants, upstream, list(expected), args, workdir)
    # Last: what a server does after storing a long page (devpi works on in the background) slows whatever is
    # measured next on the same CPU.
    for server in servers if long_expected else []:
        print(f"{server.name}: first fetch of {len(long_expected)} pages of {2 * LONG_PAGE_VERSIONS:,} files ...",
              flush=True)
        try:
            first_long_fetch(server, upstream, long_expected)
        except (BenchError, requests.RequestException) as exc:
            if server.name == PYPILITE:
                raise BenchError(f"{exc}; server log: {tail(server.log)}") from None
            print(f"peer: {server.name} failed the long pages ({exc}); its figure is left out")
    print_table(results, args, servers, variants, upstream, len(dists))


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, "pypilite-proxy-bench-")


if __name__ == "__main__":
    sys.exit(main())
