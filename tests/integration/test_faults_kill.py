"""The server killed with SIGKILL (every process of it at once, as a power cut or the OOM killer would) in the
middle of large uploads and of a proxied download, then started again on the same data dir.

After every kill: no partial file is visible (every blob hashes to its name, the killed upload is not listed
unless it was complete), no row lacks its blob (`check` clean), every earlier upload is listed and downloads
byte-identical, and the next start sweeps the dead writers' temp and lock files."""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import (
    TEST_REPOSITORIES,
    LiveServer,
    described,
    kill_server,
    listed,
    start_server,
    stop_server,
    twine_form,
)
from tests.upstream import Dist, Upstream

JSON = "application/vnd.pypi.simple.v1+json"
ROUNDS = 20
BIG = 8 * 1024 * 1024
CHUNK = 256 * 1024
CHUNK_PAUSE = 0.02  # slows a big upload enough that the kill lands while the server is writing
AFTER_BODY = "after the body"  # kill points at the row-or-nothing boundary
BLOB_IN_PLACE = "blob in place"
WAIT = 20  # seconds any one wait in here may take at most


class ThrottledBody:
    """A request body sent in slow chunks with its Content-Length (as twine sends one), calling `at_offset`
    once it has sent `offset` bytes, or `after` once the last byte is out."""

    def __init__(self, body: bytes, offset: int | None, at_offset=None, after=None) -> None:
        self.body = body
        self.offset = offset
        self.at_offset = at_offset
        self.after = after

    def __len__(self) -> int:
        return len(self.body)

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, len(self.body), CHUNK):
            if start:
                time.sleep(CHUNK_PAUSE)
            if self.offset is not None and start >= self.offset:
                self.at_offset()
                self.offset = None
            yield self.body[start:start + CHUNK]
        if self.after is not None:
            self.after()


def upload(server: LiveServer, filename: str, data: bytes) -> int:
    body, content_type = twine_form(filename, data)
    return requests.post(f"{server.url}/local/", data=body, headers={"Content-Type": content_type},
                         auth=("admin", server.admin_password), timeout=60).status_code


def partial_temp_file(server: LiveServer) -> Path:
    """The temp file the server is writing an upload into, once it holds some bytes."""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        written = [p for p in (server.data_dir / "tmp").iterdir() if p.stat().st_size > 0]
        if written:
            return written[0]
        time.sleep(0.01)
    raise AssertionError("the server wrote nothing of the upload")


def upload_and_kill(server: LiveServer, filename: str, data: bytes, kill_at: int | str,
                    rng: random.Random, stored: Callable[[], bool] | None = None) -> int | None:
    """Upload, with the server SIGKILLed at byte `kill_at` of the body, or once all of it is sent (a moment
    later, as it falls), or the moment the blob is in place but before its row can have been committed;
    returns the status the client read, or None when the kill came first. `stored` says whether the blob is in
    place, for a store other than the data dir."""
    body, content_type = twine_form(filename, data)
    sha256 = hashlib.sha256(data).hexdigest()
    blob = server.data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256
    in_place = stored or blob.exists
    killers: list[threading.Thread] = []

    def kill_mid_body() -> None:
        partial_temp_file(server)  # the kill lands while a partial file exists
        kill_server(server.process)

    def kill_when_blob_in_place() -> None:
        deadline = time.monotonic() + WAIT
        while not in_place() and server.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.0005)
        kill_server(server.process)

    def kill_after_body() -> None:
        if kill_at == AFTER_BODY:
            killer = threading.Timer(rng.uniform(0, 0.03), kill_server, [server.process])
        else:
            killer = threading.Thread(target=kill_when_blob_in_place)
        killers.append(killer)
        killer.start()

    offset = kill_at if isinstance(kill_at, int) else None
    throttled = ThrottledBody(body, offset, kill_mid_body, kill_after_body if offset is None else None)
    try:
        status = requests.post(f"{server.url}/local/", data=throttled, headers={"Content-Type": content_type},
                               auth=("admin", server.admin_password), timeout=60).status_code
    except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
        # No answer read whole: the kill came before it, or between its status line and its body (the
        # upload is then stored, and the next round finds it listed, as for any answer the kill cut off).
        status = None
    for killer in killers:
        killer.join(WAIT)
    kill_server(server.process)  # already dead, unless the answer came first
    return status


def assert_intact(server: LiveServer, kept: dict[str, bytes]) -> None:
    """Every upload answered 200 is listed with its sha256 and downloads byte-identical."""
    for filename, data in kept.items():
        entry = listed(server, filename.split("-")[0])[filename]
        assert entry["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        url = requests.compat.urljoin(server.simple("local") + "x/", entry["url"])
        assert requests.get(url, timeout=30).content == data, filename


def assert_no_partial_blob(data_dir: Path) -> None:
    for blob in (data_dir / "blobs").glob("*/*/*"):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"partial blob {blob}"


def lock_files_left(data_dir: Path) -> list[Path]:
    """The lock files that stay. /health answers as soon as one gunicorn worker is up, and another may still be
    starting: only a file that stays is one the start's sweep left."""
    deadline = time.monotonic() + WAIT
    while (left := list((data_dir / "locks").glob("*"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def test_sigkill_in_the_middle_of_large_uploads_loses_and_corrupts_nothing(tmp_path: Path) -> None:
    """20 rounds on one data dir, alternating `python app.py` and gunicorn: each round checks what the last
    kill left, uploads a small file that must survive, then kills the server during a large upload."""
    rng = random.Random(8)  # fixed: a failure replays with the same kill points
    data_dir = tmp_path / "data"
    kept: dict[str, bytes] = {}
    maybe: dict[str, bytes] = {}  # killed after the whole body: stored completely, or not at all
    killed_mid_body: list[str] = []
    for round_ in range(ROUNDS):
        server = start_server("app" if round_ % 2 else "gunicorn", tmp_path, data_dir=data_dir)
        try:
            assert list((data_dir / "tmp").iterdir()) == [], "the start did not sweep the dead upload's temp file"
            assert lock_files_left(data_dir) == []
            server.assert_check_clean()  # no row without its blob
            for filename, data in maybe.items():
                if filename in listed(server, "big"):
                    kept[filename] = data
            maybe.clear()
            assert_intact(server, kept)
            assert not set(killed_mid_body) & set(listed(server, "big")), "a half-sent upload is listed"

            small = (f"small-{round_}.0-py3-none-any.whl", wheel_bytes("small", f"{round_}.0"))
            assert upload(server, *small) == 200
            kept[small[0]] = small[1]

            big = (f"big-{round_}.0-py3-none-any.whl",
                   wheel_bytes("big", f"{round_}.0", payload=rng.randbytes(BIG)))
            kill_at: int | str = {2: AFTER_BODY, 3: BLOB_IN_PLACE}.get(round_ % 4) or rng.randrange(CHUNK, BIG - CHUNK)
            status = upload_and_kill(server, *big, kill_at, rng)
        finally:
            kill_server(server.process)

        if isinstance(kill_at, str):
            assert status in (None, 200)
            (kept if status == 200 else maybe)[big[0]] = big[1]
        else:
            assert status is None
            killed_mid_body.append(big[0])
            assert [p for p in (data_dir / "tmp").iterdir() if p.stat().st_size > 0], "no partial temp file"
        assert_no_partial_blob(data_dir)

    server = start_server("gunicorn", tmp_path, data_dir=data_dir)
    try:
        assert list((data_dir / "tmp").iterdir()) == []
        kept.update((f, d) for f, d in maybe.items() if f in listed(server, "big"))
        assert_intact(server, kept)
        assert not set(killed_mid_body) & set(listed(server, "big"))
    finally:
        stop_server(server.process)
    # a wheel and its metadata file each: every kept upload, no more, no less
    assert f"checked {2 * len(kept)} blobs: 0 missing, 0 corrupt" in server.assert_check_clean()


@pytest.mark.parametrize("mode", ["app", "gunicorn"])
def test_sigkill_during_a_proxied_download_leaves_nothing_that_blocks_the_next_fetch(tmp_path: Path,
                                                                                      mode: str) -> None:
    dist = Dist("bulky", "bulky-1.0-py3-none-any.whl",
                wheel_bytes("bulky", "1.0", payload=random.Random(1).randbytes(2 * 1024 * 1024)))
    upstream = Upstream(tmp_path / "upstream", [dist], json_api=True).start()
    repositories = [{**r, "remote_url": upstream.url, "remote_timeout": WAIT} if r["name"] == "pypi" else r
                    for r in TEST_REPOSITORIES]
    try:
        server = start_server(mode, tmp_path, repositories)
        try:
            [entry] = requests.get(f"{server.simple('pypi')}bulky/", headers={"Accept": JSON},
                                   timeout=30).json()["files"]
            path = requests.compat.urlparse(requests.compat.urljoin(f"{server.simple('pypi')}bulky/",
                                                                    entry["url"])).path
            url = server.url + path
            upstream.die_mid_body.add(dist.filename)
            upstream.hold = WAIT  # the upstream stalls with half the file sent, pypilite waiting for the rest
            with requests.get(url, stream=True, timeout=30) as response:
                assert response.status_code == 200
                assert len(next(response.iter_content(64 * 1024))) > 0  # the download is under way
                assert upstream.half_sent.wait(WAIT)
                partial_temp_file(server)
                assert list((server.data_dir / "locks").iterdir()), "the download holds no lock"
                kill_server(server.process)
        finally:
            kill_server(server.process)
        upstream.die_mid_body.clear()

        server = start_server(mode, tmp_path, repositories, data_dir=server.data_dir)
        try:
            assert list((server.data_dir / "tmp").iterdir()) == []
            assert list((server.data_dir / "locks").iterdir()) == []
            server.assert_check_clean()
            again = requests.get(server.url + path, timeout=30)  # the restarted server has another port
            assert again.status_code == 200 and hashlib.sha256(again.content).hexdigest() == dist.sha256
            assert upstream.log.count(dist.filename) == 2
            assert described(server, dist.sha256)
        finally:
            stop_server(server.process)
        # The file, and its METADATA, taken out of it for the UI once the client had it all.
        assert "checked 2 blobs: 0 missing, 0 corrupt" in server.assert_check_clean()
    finally:
        upstream.stop()
