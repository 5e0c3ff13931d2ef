"""What the benchmarks share: starting and stopping servers pinned to a CPU, throwaway venvs for the peers,
and the load generators (wrk, else threads in this process) that cycle through a list of paths.

Every wait here is bounded, and every process started through `launch` is registered on an ExitStack that
stops its whole process group, so a benchmark leaves nothing running on Ctrl-C or errors.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import http.client
import importlib.metadata
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

REPO_ROOT = Path(__file__).resolve().parent.parent
LOOPBACK = "127.0.0.1"
SERVER_CPU = 0
CLIENT_CPU = 1
PINNED = shutil.which("taskset") is not None and {SERVER_CPU, CLIENT_CPU} <= os.sched_getaffinity(0)
WRK = shutil.which("wrk")
CONNECTIONS = 4
START_TIMEOUT = 60.0
STOP_TIMEOUT = 15.0
INSTALL_TIMEOUT = 600
# The Python load generator stops at this many requests per thread even if time remains.
MAX_REQUESTS_PER_THREAD = 1_000_000
GUNICORN_ARGS = ["--workers", "1", "--worker-class", "sync"]


class BenchError(Exception):
    """The benchmark cannot go on; the message says why in one line."""


@dataclass(frozen=True)
class Load:
    requests: int
    errors: int
    rps: float
    latency_ms: dict[str, float] = field(default_factory=dict)  # "p50", "p90", "p99" when asked for


def median_rps(loads: list[Load]) -> float:
    """The figure a benchmark quotes for a target measured in several rounds."""
    return statistics.median(load.rps for load in loads)


def by_round(ours: list[Load], theirs: list[Load]) -> str:
    """The ratio of two targets round by round: each pair measured back to back, so a slow spell of the machine
    that spans rounds cancels out of it, as it does not out of the ratio of the medians."""
    ratios = [a.rps / b.rps for a, b in zip(ours, theirs) if b.rps]
    if not ratios:
        return ""
    return f"by round {statistics.median(ratios):.2f} median ({min(ratios):.2f}-{max(ratios):.2f})"


# --- processes -------------------------------------------------------------------------------------------

def gunicorn_args(version: str) -> list[str]:
    """One sync worker, and no control socket where gunicorn has one (25.1 and later): its default path in
    $HOME is the same for every master, and a benchmark runs two at once and keeps out of $HOME."""
    major_minor = tuple(int(part) for part in re.findall(r"\d+", version)[:2])
    return GUNICORN_ARGS + (["--no-control-socket"] if major_minor >= (25, 1) else [])


def pinned(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if PINNED else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def clean_env() -> dict[str, str]:
    """The environment minus PYPILITE_* variables: pypilite refuses unknown ones, and stray ones would
    change what is measured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PYPILITE_")}


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the server's own process group (gunicorn stops its workers), SIGKILL if it hangs."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(STOP_TIMEOUT)


def tail(path: Path, lines: int = 5) -> str:
    return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])


def launch(stack: contextlib.ExitStack, name: str, argv: list[str], env: dict[str, str], cwd: Path,
           log: Path, port: int, health: str = "/health", cpu: int = SERVER_CPU) -> subprocess.Popen[bytes]:
    """Start a server pinned to `cpu` in its own session (so it can be stopped as a group) and wait until
    `health` answers 200."""
    with log.open("wb") as out:
        process = subprocess.Popen(pinned(cpu) + argv, cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    stack.callback(stop, process)
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise BenchError(f"{name} exited with status {process.returncode}: {tail(log)}")
        try:
            if requests.get(f"http://{LOOPBACK}:{port}{health}", timeout=2).status_code == 200:
                return process
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise BenchError(f"{name} did not answer {health} within {START_TIMEOUT:.0f} s: {tail(log)}")


def start_floor(stack: contextlib.ExitStack, workdir: Path, body_bytes: int, name: str, app: str) -> str:
    """bench/floor.py's `app` (the Flask floor) or `wsgi` (the gunicorn floor), answering with `body_bytes`."""
    port = free_port()
    argv = [sys.executable, "-m", "gunicorn", *gunicorn_args(importlib.metadata.version("gunicorn")),
            "--bind", f"{LOOPBACK}:{port}", f"floor:{app}"]
    env = clean_env() | {"FLOOR_PAGE_BYTES": str(body_bytes)}
    log = workdir / f"{name.replace(' ', '-')}.log"
    launch(stack, name, argv, env, Path(__file__).parent, log, port, health="/health")
    return f"http://{LOOPBACK}:{port}"


def install_venv(python: str, venv: Path, packages: list[str]) -> Path:
    """A throwaway venv with `packages` from the registry (the machine's normal pip configuration); its
    python, or BenchError saying which step failed."""
    venv_python = venv / "bin" / "python"
    steps = {
        "creating the venv": [python, "-m", "venv", str(venv)],
        "pip install": [str(venv_python), "-m", "pip", "install", "--disable-pip-version-check", "--quiet",
                        *packages],
    }
    for step, argv in steps.items():
        try:
            subprocess.run(argv, check=True, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
        except subprocess.CalledProcessError as exc:
            last = (exc.stderr or exc.stdout or "").strip().splitlines()[-1:] or ["no output"]
            raise BenchError(f"{step} failed: {last[0]}") from None
        except (subprocess.TimeoutExpired, OSError) as exc:
            raise BenchError(f"{step} failed: {exc}") from None
    return venv_python


def versions(python: Path, *distributions: str) -> dict[str, str]:
    """The installed versions of some distributions in another venv."""
    script = ("import sys; from importlib.metadata import version as v; "
              "print(' '.join(v(name) for name in sys.argv[1:]))")
    done = subprocess.run([str(python), "-c", script, *distributions], capture_output=True, text=True,
                          timeout=60, check=True)
    return dict(zip(distributions, done.stdout.split()))


# --- load ------------------------------------------------------------------------------------------------

# wrk --latency's distribution lines, e.g. "     99%    3.21ms".
_LATENCY = re.compile(r"^\s+(50|90|99)(?:\.000)?%\s+([\d.]+)(us|ms|s)\s*$", re.MULTILINE)
_UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}

# With `strict`, the script also counts every answer but 200 (wrk itself counts only 4xx and 5xx, so a
# redirect elsewhere would pass for a served request) and prints the sum when it is done.
_STRICT_LUA = """\
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  not200 = 0
end
function response(status, headers, body)
  if status ~= 200 then not200 = not200 + 1 end
end
function done(summary, latency, requests)
  local n = 0
  for _, thread in ipairs(threads) do n = n + thread:get("not200") end
  io.write(string.format("answers other than 200: %d\\n", n))
end
"""


def wrk_script(directory: Path, paths: list[str], headers: dict[str, str], strict: bool = False) -> Path:
    """A wrk script that cycles through every project page, as many clients installing many projects do, rather
    than asking for one page over and over."""
    script = directory / f"pages-{uuid.uuid4().hex[:8]}.lua"
    entries = ",\n".join(f'  "{p}"' for p in paths)
    header_lines = "".join(f'wrk.headers["{name}"] = "{value}"\n' for name, value in headers.items())
    script.write_text(
        header_lines +
        f"local paths = {{\n{entries}\n}}\n"
        "local i = 0\n"
        "request = function()\n"
        "  i = i % #paths + 1\n"
        '  return wrk.format("GET", paths[i])\n'
        "end\n"
        + (_STRICT_LUA if strict else "")
    )
    return script


def load_wrk(wrk: str, base_url: str, paths: list[str], headers: dict[str, str], duration: int,
             scratch: Path, strict: bool = False, script: Path | None = None, connections: int = CONNECTIONS,
             latency: bool = False) -> Load:
    """wrk cycling through `paths`, or running a `script` of the caller's own instead (a strict one prints
    its count of answers other than 200 as wrk_script's does); with `latency`, its percentiles too."""
    script = script or wrk_script(scratch, paths, headers, strict)
    argv = [*pinned(CLIENT_CPU), wrk, "-t1", f"-c{connections}", f"-d{duration}s", *(["--latency"] if latency else []),
            "-s", str(script), base_url]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=duration + 60, check=True)
    except subprocess.CalledProcessError as exc:
        raise BenchError(f"wrk failed: {exc.stderr.strip() or exc.stdout.strip()}") from None
    out = done.stdout
    total = re.search(r"(\d+) requests in", out)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if not total or not rate:
        raise BenchError(f"wrk printed no request rate: {out.strip()[-200:]}")
    # wrk prints these two lines only when there is something to count.
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if strict:
        not_200 = re.search(r"answers other than 200: (\d+)", out)
        if not not_200:
            raise BenchError(f"wrk's script printed no count of answers: {out.strip()[-200:]}")
        errors = int(not_200.group(1))
    else:
        errors = int(non_2xx.group(1)) if non_2xx else 0
    errors += sum(map(int, socket_errors.groups())) if socket_errors else 0
    percentiles = {f"p{m.group(1)}": float(m.group(2)) * _UNIT_MS[m.group(3)] for m in _LATENCY.finditer(out)}
    return Load(int(total.group(1)), errors, float(rate.group(1)), percentiles)


def basic_auth(auth: tuple[str, str]) -> dict[str, str]:
    """The Authorization header for HTTP Basic with (user, password)."""
    return {"Authorization": "Basic " + base64.b64encode(":".join(auth).encode()).decode()}


def _fetch(conn: http.client.HTTPConnection, path: str, headers: dict[str, str]) -> tuple[bool, bool]:
    """One GET: whether it answered 200, and whether the connection may be used again."""
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
    except (OSError, http.client.HTTPException):
        return False, False
    return response.status == 200, not response.will_close


def _python_client(port: int, paths: list[str], headers: dict[str, str], deadline: float, offset: int,
                   tally: list[int]) -> None:
    """One keep-alive connection, reopened whenever the server closes it (gunicorn's sync worker always does)."""
    conn: http.client.HTTPConnection | None = None
    for n in range(MAX_REQUESTS_PER_THREAD):
        if time.monotonic() >= deadline:
            break
        if conn is None:
            conn = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        ok, reusable = _fetch(conn, paths[(offset + n) % len(paths)], headers)
        if not reusable:
            conn.close()
            conn = None
        tally[0] += 1
        tally[1] += not ok
    if conn is not None:
        conn.close()


def load_python(port: int, paths: list[str], headers: dict[str, str], duration: int) -> Load:
    """The fallback without wrk: threads in this process, pinned to the client CPU while they run."""
    affinity = os.sched_getaffinity(0)
    if PINNED:
        os.sched_setaffinity(0, {CLIENT_CPU})
    try:
        started = time.monotonic()
        tallies = [[0, 0] for _ in range(CONNECTIONS)]
        threads = [threading.Thread(target=_python_client, daemon=True,
                                    args=(port, paths, headers, started + duration,
                                          i * len(paths) // CONNECTIONS, tallies[i]))
                   for i in range(CONNECTIONS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(duration + 30)
        elapsed = time.monotonic() - started
    finally:
        os.sched_setaffinity(0, affinity)
    count = sum(t[0] for t in tallies)
    return Load(count, sum(t[1] for t in tallies), count / elapsed)


def bench_parser(doc: str, duration: int) -> argparse.ArgumentParser:
    """The options every benchmark has: its generated corpus, and how long and how often it measures."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--projects", type=int, default=200, help="projects in the corpus (default 200)")
    parser.add_argument("--versions", type=int, default=5, help="versions per project (default 5)")
    parser.add_argument("--duration", type=int, default=duration,
                        help=f"seconds per measurement (default {duration})")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per figure (default 3)")
    return parser


def parse_bench_args(parser: argparse.ArgumentParser, argv: list[str] | None,
                     also_positive: tuple[str, ...] = ()) -> argparse.Namespace:
    """The arguments, with the shared counts and `also_positive` refused below 1."""
    args = parser.parse_args(argv)
    for name in ("projects", "versions", "duration", "rounds", *also_positive):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def bench_main(args: Any, run: Callable[[Any, Path, contextlib.ExitStack], None], prefix: str) -> int:
    """Run a benchmark in a temp dir that is removed afterwards; every process it registers on the stack is
    stopped on the way out, on Ctrl-C, SIGTERM and errors alike. Returns the exit status."""
    # SIGTERM unwinds like Ctrl-C, so the servers started here are stopped either way.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with contextlib.ExitStack() as stack:
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix=prefix,
                                                                           ignore_cleanup_errors=True)))
            run(args, workdir, stack)
    except BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130
    return 0
