"""Request bodies against the real server: anything but an upload is refused past 1 MiB before the server
reads it (a 300 MB JSON body to /api/v1/tokens used to sit in a worker's memory), so no worker grows; small
JSON bodies and uploads of several MB still go through."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import sys
from pathlib import Path

import requests

from tests.distfactory import wheel_bytes, write
from tests.integration.conftest import LiveServer, group_processes, run

MiB = 1024 * 1024
# How much a server process's peak memory may grow while refusing a body: a few buffers, never the body (the
# development server reads away what follows a refused body, 10 MB at a time, so its 413 is seen).
GROWTH_ALLOWED = 32 * MiB
# An answer that waits for a body the client never sends is no answer.
ANSWER_SECONDS = 30


def memory(live: LiveServer, field: str) -> dict[int, int]:
    """A /proc/<pid>/status memory figure (bytes) of every process of the server: gunicorn's master and workers."""
    found = {}
    for pid in group_processes(live.process.pid):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except FileNotFoundError:
            continue
        found[pid] = int(next(line.split()[1] for line in status.splitlines() if line.startswith(f"{field}:"))) * 1024
    return found


Start = tuple[dict[int, int], dict[int, int]]


def start_measuring(live: LiveServer) -> Start:
    """Each process's peak memory set back to what it holds now (Linux: clear_refs 5); returns that, and how
    much of it is file-backed."""
    for pid in group_processes(live.process.pid):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return memory(live, "VmRSS"), memory(live, "RssFile")


def growth(live: LiveServer, start: Start) -> int:
    """The most any process's peak memory rose above what it held at the start, less the file-backed pages it
    faulted back in meanwhile: on a busy machine the kernel takes those from an idle process, and the first
    request after that reads them in again, which is no allocation."""
    rss, files = start
    now = memory(live, "RssFile")
    return max(peak - rss.get(pid, 0) - max(now.get(pid, 0) - files.get(pid, 0), 0)
               for pid, peak in memory(live, "VmHWM").items())


def warm_up(live: LiveServer) -> None:
    """Every worker answers a JSON write once first, so what it loads for the first one is not counted."""
    for _ in range(8):
        requests.post(f"{live.url}/api/v1/tokens", json={"read_only": "no"}, auth=("admin", live.admin_password),
                      timeout=10)


def raw_request(live: LiveServer, head: str) -> socket.socket:
    host, port = live.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=ANSWER_SECONDS)
    credentials = base64.b64encode(f"admin:{live.admin_password}".encode()).decode()
    sock.sendall(f"{head}\r\nHost: {host}:{port}\r\nAuthorization: Basic {credentials}\r\n".encode())
    return sock


def answer(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass  # the server hung up on the rest of the body, after answering
    return received


def test_a_huge_content_length_is_refused_before_the_body(live: LiveServer) -> None:
    warm_up(live)
    start = start_measuring(live)
    with raw_request(live, "POST /api/v1/tokens HTTP/1.1") as sock:
        sock.sendall(b"Content-Type: application/json\r\nContent-Length: 300000000\r\n\r\n{\"read_only\": ")
        # The rest of the 300 MB never comes: only a server that did not wait for it answers.
        head = answer(sock).split(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 413 Request body too large: at most 1 MiB outside uploads"), head
    assert growth(live, start) < GROWTH_ALLOWED


def test_a_chunked_body_is_cut_off_at_the_cap(live: LiveServer) -> None:
    warm_up(live)
    start = start_measuring(live)
    with raw_request(live, "POST /api/v1/tokens HTTP/1.1") as sock:
        sock.sendall(b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b'{"read_only": "' + b"x" * (MiB - 15)
        sent = 0
        try:
            while sent < 64 * MiB:  # what the server reads of this, it holds in memory: at most the cap
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
                chunk = b"x" * MiB
            sock.sendall(b"0\r\n\r\n")
            sock.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server stopped reading at the cap and hung up
        head = answer(sock).split(b"\r\n\r\n")[0]
    assert not head.startswith(b"HTTP/1.1 2"), head
    assert growth(live, start) < GROWTH_ALLOWED


def head_of(sock: socket.socket) -> bytes:
    """The status line and headers of the first answer, without waiting for the connection to close."""
    received = b""
    while b"\r\n\r\n" not in received and (chunk := sock.recv(65536)):
        received += chunk
    return received.split(b"\r\n\r\n")[0]


def test_a_get_with_a_huge_body_is_refused_even_when_its_answer_was_remembered(live: LiveServer) -> None:
    """A worker repeats an answer only to a request alike in all its guard and view read: the body's length is
    one, so the memo cannot answer what the guard refuses."""
    for _ in range(8):  # every worker remembers the answer
        with raw_request(live, "GET /local/simple/ HTTP/1.1") as sock:
            sock.sendall(b"Connection: close\r\n\r\n")
            assert head_of(sock).startswith(b"HTTP/1.1 200"), "the page must be there to be remembered"
    for _ in range(4):
        with raw_request(live, "GET /local/simple/ HTTP/1.1") as sock:
            sock.sendall(b"Connection: close\r\nContent-Length: 300000000\r\n\r\n")
            head = head_of(sock)
        assert head.startswith(b"HTTP/1.1 413 Request body too large: at most 1 MiB outside uploads"), head


def test_a_json_body_of_a_few_kb_still_works(live: LiveServer) -> None:
    data = wheel_bytes("few-kb", "1.0")
    form = {":action": "file_upload", "protocol_version": "1", "name": "few-kb", "version": "1.0",
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    auth = ("admin", live.admin_password)
    files = {"content": ("few_kb-1.0-py3-none-any.whl", data)}
    assert requests.post(f"{live.url}/local/", data=form, files=files, auth=auth, timeout=30).status_code == 200
    reason = "r" * 3000
    response = requests.post(f"{live.url}/api/v1/repos/local/projects/few-kb/1.0/yank", json={"reason": reason},
                             auth=auth, timeout=10)
    assert response.status_code == 200 and response.json()["yanked_reason"] == reason


def test_twine_still_uploads_several_mb(live: LiveServer, client_env, tmp_path: Path) -> None:
    wheel = write(tmp_path, "several_mb-1.0-py3-none-any.whl",
                  wheel_bytes("several-mb", "1.0", payload=os.urandom(6 * MiB)))
    run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
         f"{live.url}/local/", "-u", "admin", f"--password={live.admin_password}", wheel], env=client_env)
    page = requests.get(f"{live.url}/local/simple/several-mb/",
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10).json()
    assert page["files"][0]["size"] == wheel.stat().st_size > 6 * MiB
