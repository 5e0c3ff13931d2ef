"""Benchmark pypilite on this machine, side by side with pypiserver when it can be installed.

`python bench/run.py [--projects 200] [--versions 5] [--duration 10] [--rounds 3] [--large-mb 500]
[--skip-large] [--no-peer]`

What it measures and how to read it: bench/README.md. Every loop is bounded and every process stopped on the
way out.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.metadata
import io
import shutil
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

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
    children,
    clean_env,
    free_port,
    gunicorn_args,
    install_venv,
    launch,
    load_python,
    load_wrk,
    median_rps,
    parse_bench_args,
    start_floor,
    tail,
    versions,
)
from corpus import Dist, median_wheel_size, wheels, write_corpus, write_large_wheel

UPLOAD_TIMEOUT = 900
FLOOR = "gunicorn floor"
SAMPLE_INTERVAL = 0.01
HTML = "text/html"
JSON = "application/vnd.pypi.simple.v1+json"
FORMATS = {"HTML": HTML, "JSON": JSON}
AUTHENTICATED = "authenticated"


@dataclass
class Server:
    """A server under test: its gunicorn master, where it listens, and how its URLs are spelled."""

    name: str
    process: subprocess.Popen[bytes]
    port: int
    log: Path
    simple_prefix: str
    upload_path: str
    description: str
    file_path: str  # a file's URL path, formatted with the Dist's sha256 and filename
    auth: tuple[str, str] | None = None
    formats: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def project_path(self, project: str) -> str:
        return f"{self.simple_prefix}{project}/"

    def file_url(self, dist: Dist) -> str:
        return self.file_path.format(sha256=dist.sha256, filename=dist.filename)

    def pids(self) -> dict[str, int]:
        """The master and its (single) worker, looked up now: gunicorn replaces a worker that dies."""
        workers = children(self.process.pid)
        if len(workers) != 1:
            raise BenchError(f"{self.name}: expected one gunicorn worker, found {len(workers)}")
        return {"master": self.process.pid, "worker": workers[0]}


@dataclass(frozen=True)
class UploadRun:
    count: int
    seconds: float


@dataclass(frozen=True)
class LargeUpload:
    size: int
    seconds: float
    idle_kib: dict[str, int]
    small_request_kib: dict[str, int]
    peak_kib: dict[str, int]


@dataclass
class Results:
    corpus_upload: UploadRun
    pages: dict[tuple[str, str], list[Load]] = field(default_factory=dict)
    downloads: dict[str, list[Load]] = field(default_factory=dict)
    twine: dict[str, UploadRun] = field(default_factory=dict)
    large: dict[str, LargeUpload] = field(default_factory=dict)


# --- processes -------------------------------------------------------------------------------------------

def start_pypilite(stack: contextlib.ExitStack, workdir: Path, name: str = "pypilite",
                   settings: dict[str, str] | None = None, workers: int = 1) -> Server:
    """pypilite as production runs it (gunicorn.conf.py), but with one worker (unless told otherwise) and a
    data dir in `workdir` (shared by every instance started in it); `settings` are more PYPILITE_* variables."""
    data_dir = workdir / "pypilite-data"
    port = free_port()
    env = clean_env() | {
        "PYPILITE_STORAGE_DATA_DIR": str(data_dir),
        "PYPILITE_SERVER_HOST": LOOPBACK,
        "PYPILITE_SERVER_PORT": str(port),
    } | (settings or {})
    argv = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py",
            *gunicorn_args(importlib.metadata.version("gunicorn")), "--workers", str(workers), "wsgi:app"]
    log = workdir / f"{name}.log"
    process = launch(stack, name, argv, env, REPO_ROOT, log, port)
    password = (data_dir / "initial-admin-password").read_text().strip()
    description = f"pypilite (this checkout) on gunicorn {importlib.metadata.version('gunicorn')}"
    return Server(name, process, port, log, "/local/simple/", "/local/", description,
                  "/files/local/{sha256}/{filename}", auth=("admin", password))


def _install_pypiserver(venv: Path) -> Path:
    """A throwaway venv with pypiserver and gunicorn from the registry; its python, or BenchError."""
    # pypiserver at its best: its docs prescribe the watchdog cache beyond a few packages (else every request
    # rescans the packages dir), and watchdog 2.3+ reports the file opens of pypiserver's own hashing, which
    # empties that cache on every request (pypiserver issue #502).
    return install_venv(sys.executable, venv, ["pypiserver", "watchdog<2.3", "gunicorn"])


def start_pypiserver(stack: contextlib.ExitStack, workdir: Path, dists: list[Dist]) -> Server | None:
    """pypiserver with the same corpus copied into its packages dir, or None (and why) if it cannot run."""
    print("peer: installing pypiserver, watchdog<2.3 and gunicorn into a throwaway venv ...", flush=True)
    try:
        python = _install_pypiserver(workdir / "pypiserver-venv")
    except BenchError as exc:
        print(f"peer: pypiserver cannot be installed ({exc}); continuing without it")
        return None
    packages = workdir / "pypiserver-packages"
    packages.mkdir()
    for dist in dists:
        shutil.copyfile(dist.path, packages / dist.filename)
    port = free_port()
    # No auth, so the large upload can be sent to both servers alike; it listens on loopback only.
    factory = f"pypiserver:app(root={str(packages)!r}, authenticate=[], password_file='.', disable_fallback=True)"
    argv = [str(python), "-m", "gunicorn", *gunicorn_args(versions(python, "gunicorn")["gunicorn"]),
            "--bind", f"{LOOPBACK}:{port}", "--timeout", "600", factory]
    log = workdir / "pypiserver.log"
    try:
        process = launch(stack, "pypiserver", argv, clean_env(), workdir, log, port)
    except BenchError as exc:
        print(f"peer: pypiserver does not start ({exc}); continuing without it")
        return None
    return Server("pypiserver", process, port, log, "/simple/", "/", _peer_description(python), "/packages/{filename}")


def _peer_description(python: Path) -> str:
    script = ("from importlib.metadata import version as v; "
              "print(f\"pypiserver {v('pypiserver')} with watchdog {v('watchdog')} on gunicorn {v('gunicorn')}\")")
    done = subprocess.run([str(python), "-c", script], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout.strip()


# --- uploads ---------------------------------------------------------------------------------------------

class MultipartFile:
    """A multipart/form-data body that reads the file from disk as it is sent.

    It has a length and read(), so requests sends it with a Content-Length in small chunks: the client
    never holds the file in memory, and the server sees the body a real uploader sends.
    """

    def __init__(self, fields: dict[str, str], file_field: str, path: Path) -> None:
        boundary = uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={boundary}"
        head = b"".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
            for name, value in fields.items()
        )
        head += (f'--{boundary}\r\nContent-Disposition: form-data; name="{file_field}"; filename="{path.name}"\r\n'
                 "Content-Type: application/octet-stream\r\n\r\n").encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self._length = len(head) + path.stat().st_size + len(tail)
        self._file = path.open("rb")
        self._parts: list[BinaryIO] = [io.BytesIO(head), self._file, io.BytesIO(tail)]

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> bytes:
        chunks = []
        while self._parts and (size < 0 or size > 0):
            chunk = self._parts[0].read(size)
            if not chunk:
                self._parts.pop(0)
                continue
            chunks.append(chunk)
            size = size - len(chunk) if size > 0 else size
        return b"".join(chunks)

    def close(self) -> None:
        self._file.close()


def upload(session: requests.Session, server: Server, dist: Dist) -> None:
    """One legacy-API upload, as twine sends it; any answer but 200 stops the benchmark."""
    fields = {":action": "file_upload", "protocol_version": "1", "name": dist.project, "version": dist.version,
              "filetype": dist.filetype, "pyversion": dist.pyversion, "sha256_digest": dist.sha256}
    body = MultipartFile(fields, "content", dist.path)
    try:
        response = session.post(server.base_url + server.upload_path, data=body, auth=server.auth,
                                headers={"Content-Type": body.content_type}, timeout=UPLOAD_TIMEOUT)
    except requests.RequestException as exc:
        raise BenchError(f"{server.name}: upload of {dist.filename} failed: {exc}; "
                         f"server log: {tail(server.log)}") from None
    finally:
        body.close()
    if response.status_code != 200:
        raise BenchError(f"{server.name}: upload of {dist.filename} answered {response.status_code}: "
                         f"{response.text.strip()[:200]}")


def upload_corpus(server: Server, dists: list[Dist]) -> UploadRun:
    started = time.perf_counter()
    with requests.Session() as session:
        for dist in dists:
            upload(session, server, dist)
    return UploadRun(len(dists), time.perf_counter() - started)


# --- pages -----------------------------------------------------------------------------------------------

def served_formats(server: Server, expected: dict[str, list[str]]) -> list[str]:
    """Fetch every project page once per format, which also warms both servers up.

    A format answered in another media type is left out (pypiserver has no PEP 691 JSON); a page that
    lacks one of its files stops the benchmark, since its numbers would mean nothing.
    """
    served = []
    with requests.Session() as session:
        for label, media_type in FORMATS.items():
            pages = {p: session.get(server.base_url + server.project_path(p), headers={"Accept": media_type},
                                    timeout=30) for p in expected}
            if not all(r.headers.get("Content-Type", "").startswith(media_type) for r in pages.values()):
                print(f"{server.name}: does not serve {label} ({media_type}) project pages; skipped")
                continue
            for project, response in pages.items():
                missing = [f for f in expected[project] if f not in response.text]
                if response.status_code != 200 or missing:
                    raise BenchError(f"{server.name}: {label} page of {project} answered {response.status_code}"
                                     f" and lacks {len(missing)} of its files")
            served.append(media_type)
    return served


def _headers(media_type: str, auth: tuple[str, str] | None) -> dict[str, str]:
    return {"Accept": media_type} | (basic_auth(auth) if auth is not None else {})


def _page_runs(servers: list[Server]) -> list[tuple[str, Server, dict[str, str]]]:
    """Every (label, server, headers) measured in a round: each format anonymously on every server, and each
    format with Basic credentials on pypilite (whose credential cache should make that cost next to nothing)."""
    runs = []
    for label, media_type in FORMATS.items():
        for server in servers:
            if media_type in server.formats:
                runs.append((label, server, _headers(media_type, None)))
        for server in servers:
            if media_type in server.formats and server.auth is not None:
                runs.append((f"{label} {AUTHENTICATED}", server, _headers(media_type, server.auth)))
    return runs


def measure_pages(servers: list[Server], projects: list[str], args: argparse.Namespace, scratch: Path,
                  results: Results) -> None:
    """Rounds of pypilite, pypiserver, pypilite, ...: a slow spell on a shared machine hits both alike. Every
    page is asked once first, in each format and with each credentials, so that the rounds measure what a
    server answers to a page it has served before (as every page of a busy index is), not its first answers."""
    with requests.Session() as session:
        for _label, server, headers in _page_runs(servers):
            for project in projects:
                session.get(server.base_url + server.project_path(project), headers=headers, timeout=30)
    for round_no in range(1, args.rounds + 1):
        for label, server, headers in _page_runs(servers):
            load = _load(server.base_url, [server.project_path(p) for p in projects], headers, args, scratch)
            results.pages.setdefault((server.name, label), []).append(load)
            _print_round(round_no, args.rounds, label, server.name, load)


def measure_downloads(servers: list[Server], floor_url: str, dists: list[Dist], args: argparse.Namespace,
                      scratch: Path, results: Results) -> None:
    """Every wheel in turn, from each server in alternation; each is downloaded and checked against its sha256
    first (and so has been served before when it is measured, as for pages). The gunicorn floor, asked for
    the same paths, is measured in the same rounds: nothing on one gunicorn sync worker answers faster, so it
    bounds what any ratio between the servers can be on this machine."""
    measured = wheels(dists)
    with requests.Session() as session:
        for server in servers:
            for dist in measured:
                data = session.get(server.base_url + server.file_url(dist), timeout=30).content
                if hashlib.sha256(data).hexdigest() != dist.sha256:
                    raise BenchError(f"{server.name}: {dist.filename} came back with other bytes")
    targets = [(server.name, server.base_url, [server.file_url(dist) for dist in measured]) for server in servers]
    targets.append((FLOOR, floor_url, targets[0][2]))
    for round_no in range(1, args.rounds + 1):
        for name, base_url, paths in targets:
            load = _load(base_url, paths, {}, args, scratch)
            results.downloads.setdefault(name, []).append(load)
            _print_round(round_no, args.rounds, "wheel download", name, load)


def _load(base_url: str, paths: list[str], headers: dict[str, str], args: argparse.Namespace,
          scratch: Path) -> Load:
    if WRK:
        return load_wrk(WRK, base_url, paths, headers, args.duration, scratch)
    return load_python(urlsplit(base_url).port or 80, paths, headers, args.duration)


def _print_round(round_no: int, rounds: int, label: str, name: str, load: Load) -> None:
    print(f"round {round_no}/{rounds}  {label:<18}  {name:<14}  {load.rps:9.1f} req/s"
          f"  ({load.requests} requests, {load.errors} errors)", flush=True)


# --- twine -----------------------------------------------------------------------------------------------

def twine_uploads(servers: list[Server], dists: list[Dist], workdir: Path, results: Results) -> None:
    """One real `twine upload` of every file in `dists` to each server, timed from start to exit."""
    print("client: installing twine into a throwaway venv ...", flush=True)
    try:
        python = install_venv(sys.executable, workdir / "twine-venv", ["twine"])
    except BenchError as exc:
        print(f"client: twine cannot be installed ({exc}); no twine figures")
        return
    home = workdir / "twine-home"
    home.mkdir()
    # twine alone: no ~/.pypirc, no keyring, no TWINE_* settings of this machine's.
    env = {k: v for k, v in clean_env().items() if not k.startswith(("TWINE_", "PIP_"))} | {
        "HOME": str(home), "PYTHON_KEYRING_BACKEND": "keyring.backends.null.Keyring"}
    for server in servers:
        user, password = server.auth or ("anyone", "anything")
        argv = [str(python), "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                "--repository-url", server.base_url + server.upload_path, "-u", user, "-p", password,
                *(str(dist.path) for dist in dists)]
        started = time.perf_counter()
        done = subprocess.run(argv, env=env, cwd=home, capture_output=True, text=True, timeout=UPLOAD_TIMEOUT)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
            raise BenchError(f"{server.name}: twine upload failed: {last[0]}")
        results.twine[server.name] = UploadRun(len(dists), seconds)
        print(f"twine upload of {len(dists)} files  {server.name:<10}  {seconds:6.2f} s", flush=True)


# --- memory ----------------------------------------------------------------------------------------------

def _status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{key}:"):
            return int(line.split()[1])
    raise BenchError(f"/proc/{pid}/status has no {key}")


def _reset_peak(pid: int) -> bool:
    """Reset the kernel's peak RSS (VmHWM) so it covers what is measured next, not start-up and the page runs."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class RssSampler:
    """Polls VmRSS of some processes in a thread: a second witness beside VmHWM, which some kernels lack or
    cannot reset."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self.peak_kib = {role: _status_kib(pid, "VmRSS") for role, pid in pids.items()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL):
            for role, pid in self.pids.items():
                with contextlib.suppress(OSError, BenchError):
                    self.peak_kib[role] = max(self.peak_kib[role], _status_kib(pid, "VmRSS"))

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


def _peak_during(pids: dict[str, int], action: Callable[[], object]) -> dict[str, int]:
    """The highest RSS of each process while `action` runs: VmHWM where it could be reset, else polling."""
    reset = {role: _reset_peak(pid) for role, pid in pids.items()}
    with RssSampler(pids) as sampler:
        action()
    return {role: max(sampler.peak_kib[role], _status_kib(pid, "VmHWM") if reset[role] else 0)
            for role, pid in pids.items()}


def large_upload(server: Server, dist: Dist) -> LargeUpload:
    """Stream one large wheel to the server and record its processes' resident memory: idle, at the peak of
    a small request with the same credentials (a password check can outweigh the upload: scrypt works in
    32 MiB), and at the peak of the upload."""
    pids = server.pids()
    idle = {role: _status_kib(pid, "VmRSS") for role, pid in pids.items()}
    with requests.Session() as session:
        index = server.base_url + server.simple_prefix
        small = _peak_during(pids, lambda: session.get(index, auth=server.auth, timeout=30).raise_for_status())
        started = time.perf_counter()
        peak = _peak_during(pids, lambda: upload(session, server, dist))
        seconds = time.perf_counter() - started
    return LargeUpload(dist.path.stat().st_size, seconds, idle, small, peak)


# --- report ----------------------------------------------------------------------------------------------

# (metric, pypilite, pypiserver, notes); the ratio column is computed from the two values.
Row = tuple[str, float | None, float | None, str]


def _ratio(ours: float | None, theirs: float | None) -> str:
    return f"{ours / theirs:.2f}" if ours is not None and theirs else "-"


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _page_row(results: Results, label: str, rounds: int) -> Row:
    pages = {name: results.pages.get((name, label), []) for name in ("pypilite", "pypiserver")}
    return _rate_row(f"project page {label}: req/s", pages, rounds)


def _rate_row(metric: str, loads_by_server: dict[str, list[Load]], rounds: int) -> Row:
    medians: dict[str, float] = {}
    spread = []
    for name in ("pypilite", "pypiserver"):
        loads = loads_by_server.get(name)
        if not loads:
            continue
        rates = [load.rps for load in loads]
        medians[name] = statistics.median(rates)
        errors = sum(load.errors for load in loads)
        spread.append(f"{name} {min(rates):.0f}-{max(rates):.0f}" + (f", {errors} errors" if errors else ""))
    paired = by_round(loads_by_server.get("pypilite", []), loads_by_server.get("pypiserver", []))
    spread += [f"pypilite/pypiserver {paired}"] if paired else []
    return (f"{metric} (median of {rounds})", medians.get("pypilite"), medians.get("pypiserver"),
            "; ".join(spread) or "not served")


def _with_floor(row: Row, floor: list[Load] | None) -> Row:
    """The row, its notes saying what the gunicorn floor answered in the same rounds and what share of it each
    server reached: a ratio between the servers can be no larger than the floor's ratio to the slower one."""
    if not floor:
        return row
    metric, ours, theirs, notes = row
    rate = median_rps(floor)
    shares = ", ".join(f"{name} {value / rate:.2f}" for name, value in (("pypilite", ours), ("pypiserver", theirs))
                       if value is not None)
    return metric, ours, theirs, f"{notes}; {FLOOR} (a bare WSGI callable, the same bytes) {rate:.0f}: {shares} of it"


def _authenticated_row(results: Results, label: str, rounds: int) -> list[Row]:
    """pypilite's authenticated page rate, given as a share of its anonymous rate measured in the same rounds."""
    loads = results.pages.get(("pypilite", f"{label} {AUTHENTICATED}"))
    anonymous = results.pages.get(("pypilite", label))
    if not loads or not anonymous:
        return []
    rate = median_rps(loads)
    share = rate / median_rps(anonymous)
    errors = sum(load.errors for load in loads)
    note = f"{share:.0%} of pypilite's anonymous {label}" + (f", {errors} errors" if errors else "")
    return [(f"project page {label}, {AUTHENTICATED}: req/s (median of {rounds})", rate, None, note)]


def _mib_pair(ours: LargeUpload, theirs: LargeUpload | None, attribute: str, role: str) -> str:
    values = [getattr(measured, attribute)[role] / 1024 for measured in (ours, theirs) if measured is not None]
    return " / ".join(f"{v:.1f}" for v in values)


def _large_rows(ours: LargeUpload, theirs: LargeUpload | None) -> list[Row]:
    rate = f"{ours.size / 1e6 / ours.seconds:.0f} MB/s"
    if theirs:
        rate += f" / {theirs.size / 1e6 / theirs.seconds:.0f} MB/s"
    rows: list[Row] = [(f"large upload, {ours.size / 1e6:.0f} MB file: seconds", ours.seconds,
                        theirs.seconds if theirs else None, rate)]
    for role in ("worker", "master"):
        rows.append((f"large upload: {role} peak RSS MiB", ours.peak_kib[role] / 1024,
                     theirs.peak_kib[role] / 1024 if theirs else None,
                     f"idle {_mib_pair(ours, theirs, 'idle_kib', role)}, "
                     f"small request {_mib_pair(ours, theirs, 'small_request_kib', role)}"))
    return rows


def _table_rows(results: Results, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    up = results.corpus_upload
    rows.append((f"corpus upload, {up.count} files: seconds", up.seconds, None, "pypilite only"))
    rows.append(("corpus upload: uploads/s", up.count / up.seconds, None, "pypilite only"))
    for label in FORMATS:
        rows.append(_page_row(results, label, args.rounds))
        rows.extend(_authenticated_row(results, label, args.rounds))
    rows.append(_with_floor(_rate_row("wheel download: req/s", results.downloads, args.rounds),
                            results.downloads.get(FLOOR)))
    if results.twine:
        count = next(iter(results.twine.values())).count
        ours, theirs = results.twine.get("pypilite"), results.twine.get("pypiserver")
        rows.append((f"twine upload of {count} files: seconds", ours.seconds if ours else None,
                     theirs.seconds if theirs else None, "one `twine upload` run each, from start to exit"))
    if "pypilite" in results.large:
        rows.extend(_large_rows(results.large["pypilite"], results.large.get("pypiserver")))
    return rows


def print_table(results: Results, args: argparse.Namespace, servers: list[Server], dists: int) -> None:
    generator = f"wrk -t1 -c{CONNECTIONS}" if WRK else f"python threads x{CONNECTIONS} (wrk missing)"
    pinning = f"server on CPU {SERVER_CPU}, client on CPU {CLIENT_CPU}" if PINNED else "not pinned"
    print()
    print(f"corpus: {args.projects} projects x {args.versions} versions = {dists} files (a wheel and an sdist "
          f"each); load: {generator}, "
          f"{args.rounds} rounds x {args.duration} s per figure; 1 sync worker each; {pinning}")
    print("servers: " + "; ".join(server.description for server in servers))
    rows = _table_rows(results, args)
    header = ("metric", "pypilite", "pypiserver", "ratio", "notes")
    cells = [header] + [(m, _cell(a), _cell(b), _ratio(a, b), note) for m, a, b, note in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(4)]
    for row in cells:
        print(f"{row[0]:<{widths[0]}}  {row[1]:>{widths[1]}}  {row[2]:>{widths[2]}}  {row[3]:>{widths[3]}}  {row[4]}")
    print("ratio = pypilite / pypiserver; req/s: higher is better; seconds and RSS: lower is better")


# --- main ------------------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = bench_parser(__doc__, duration=10)
    parser.add_argument("--large-mb", type=int, default=500, help="size of the large wheel in MB (default 500)")
    parser.add_argument("--twine-files", type=int, default=200,
                        help="files in the timed `twine upload` to each server (default 200; 0 skips it)")
    parser.add_argument("--skip-large", action="store_true", help="skip the large upload")
    parser.add_argument("--no-peer", action="store_true", help="do not install and run pypiserver")
    args = parse_bench_args(parser, argv, also_positive=("large_mb",))
    if args.twine_files < 0:
        parser.error("--twine-files must not be negative")
    return args


def run(args: argparse.Namespace, workdir: Path, stack: contextlib.ExitStack) -> None:
    """The whole benchmark in `workdir`; every process it starts is registered on `stack` to be stopped."""
    dists = write_corpus(workdir / "corpus", args.projects, args.versions)
    expected: dict[str, list[str]] = {}
    for dist in dists:
        expected.setdefault(dist.project, []).append(dist.filename)
    if not WRK:
        print("wrk not found (Debian: apt-get install wrk); falling back to a Python load generator, whose "
              "req/s are client-bound: compare the ratios only")
    pypilite = start_pypilite(stack, workdir)
    print(f"pypilite: up on {pypilite.base_url}, uploading {len(dists)} files ...", flush=True)
    results = Results(upload_corpus(pypilite, dists))
    peer = None if args.no_peer else start_pypiserver(stack, workdir, dists)
    servers = [pypilite] + ([peer] if peer else [])
    for server in servers:
        server.formats = served_formats(server, expected)
    measure_pages(servers, list(expected), args, workdir, results)
    floor_url = start_floor(stack, workdir, median_wheel_size(dists), FLOOR, "wsgi")
    measure_downloads(servers, floor_url, dists, args, workdir, results)
    if args.twine_files:
        releases = -(-args.twine_files // 2)  # a wheel and an sdist each
        twine = write_corpus(workdir / "twine", releases, 1, prefix="twine-proj")[: args.twine_files]
        twine_uploads(servers, twine, workdir, results)
    if not args.skip_large:
        large = write_large_wheel(workdir / "large", args.large_mb * 1_000_000)
        for server in servers:
            print(f"{server.name}: streaming a {large.path.stat().st_size / 1e6:.0f} MB upload ...", flush=True)
            results.large[server.name] = large_upload(server, large)
    print_table(results, args, servers, len(dists))


def main(argv: list[str] | None = None) -> int:
    return bench_main(parse_args(argv), run, "pypilite-bench-")


if __name__ == "__main__":
    sys.exit(main())
