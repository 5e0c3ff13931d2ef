"""A full disk under the real server, made two ways: a tiny tmpfs mounted as the data dir (a real ENOSPC;
needs the right to mount), and a file size limit on the server's processes (RLIMIT_FSIZE: writes past it fail
with EFBIG; works in any container). Either way: an upload is answered 507 with a one-line reason that twine
shows, its temp file is gone, earlier data stays intact and served, a proxied download fails and keeps
nothing, and once space is freed the same upload and download succeed. `check` is clean throughout."""

from __future__ import annotations

import hashlib
import os
import random
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes, write
from tests.integration.conftest import (
    LiveServer,
    described,
    group_processes,
    isolated_env,
    listed,
    run,
    start_server,
    stop_server,
    twine_form,
)
from tests.upstream import Dist, Upstream

MB = 1024 * 1024
TMPFS_SIZE = 24 * MB
TMPFS_ROOM = 1 * MB  # what a full tmpfs still has free: less than any big file here
FSIZE_LIMIT = 4 * MB  # larger than the database and the server's log will grow in a test
BIG = 6 * MB
# /health's free-space floor (100 MB by default) is the operator's early warning; on a 24 MB disk it would
# keep the server from ever reporting ready, and what is tested here is what happens past any warning.
NO_FLOOR = {"PYPILITE_STORAGE_MIN_FREE_MB": "0"}
BROKEN_DOWNLOAD = (requests.exceptions.ChunkedEncodingError, requests.ConnectionError)


class TinyFilesystem:
    """A tmpfs as the data dir, filled up to `TMPFS_ROOM` by a filler file on demand."""

    def __init__(self, tmp: Path) -> None:
        self.mountpoint = tmp / "tiny"
        self.mountpoint.mkdir()
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(self.mountpoint)],
                                 capture_output=True, text=True, timeout=30)
        if mounted.returncode != 0:
            pytest.skip(f"mounting a tmpfs is not permitted here ({mounted.stderr.strip()}); "
                        "the RLIMIT_FSIZE variant covers the full disk")
        self.data_dir = self.mountpoint / "data"
        self.filler = self.mountpoint / "filler"
        self.preexec_fn = None

    def fill(self, server: LiveServer, room: int = TMPFS_ROOM) -> None:
        stat = os.statvfs(self.mountpoint)
        free = stat.f_bavail * stat.f_frsize
        with self.filler.open("ab") as fh:
            fh.write(b"\0" * max(free - room, 0))

    def free(self, server: LiveServer) -> None:
        self.filler.unlink()

    def close(self) -> None:
        subprocess.run(["umount", str(self.mountpoint)], check=True, timeout=30)


class FileSizeLimit:
    """RLIMIT_FSIZE on the server and every worker it forks; CPython ignores SIGXFSZ, so a write past the
    limit fails with EFBIG instead of killing the process."""

    def __init__(self, tmp: Path) -> None:
        self.data_dir = tmp / "data"

    @staticmethod
    def preexec_fn() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, resource.RLIM_INFINITY))

    def fill(self, server: LiveServer) -> None:
        """Always full for a big file: the limit is in force from the start."""

    def free(self, server: LiveServer) -> None:
        for pid in group_processes(server.process.pid):
            resource.prlimit(pid, resource.RLIMIT_FSIZE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))

    def close(self) -> None:
        pass


@pytest.fixture(params=["tmpfs", "fsize"])
def disk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TinyFilesystem | FileSizeLimit]:
    made = TinyFilesystem(tmp_path) if request.param == "tmpfs" else FileSizeLimit(tmp_path)
    yield made
    made.close()


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    dist = Dist("bulky", "bulky-1.0-py3-none-any.whl",
                wheel_bytes("bulky", "1.0", payload=random.Random(2).randbytes(BIG)))
    served = Upstream(tmp_path / "upstream", [dist], json_api=True).start()
    yield served
    served.stop()


def post(server: LiveServer, filename: str, data: bytes) -> requests.Response:
    body, content_type = twine_form(filename, data)
    return requests.post(f"{server.url}/local/", data=body, headers={"Content-Type": content_type},
                         auth=("admin", server.admin_password), timeout=120)


def download(server: LiveServer, entry: dict, repo: str) -> requests.Response:
    return requests.get(requests.compat.urljoin(server.simple(repo) + "x/", entry["url"]), timeout=60)


def assert_refused_for_space(response: requests.Response) -> None:
    assert response.status_code == 507
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.reason.startswith("Insufficient storage: ")
    assert response.text == response.reason + "\n"


@pytest.mark.parametrize("mode", ["app", "gunicorn"])
def test_full_disk_is_507_keeps_earlier_data_and_recovers_when_space_is_freed(
        tmp_path: Path, disk: TinyFilesystem | FileSizeLimit, upstream: Upstream, mode: str) -> None:
    repositories = [{"name": "local", "repository_type": "hosted"},
                    {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 5}]
    server = start_server(mode, tmp_path, repositories, data_dir=disk.data_dir, settings=NO_FLOOR,
                          preexec_fn=disk.preexec_fn)
    try:
        earlier = ("earlier-1.0-py3-none-any.whl", wheel_bytes("earlier", "1.0"))
        assert post(server, *earlier).status_code == 200
        [proxied] = listed(server, "bulky", repo="pypi").values()
        big = ("big-1.0-py3-none-any.whl", wheel_bytes("big", "1.0", payload=random.Random(3).randbytes(BIG)))
        disk.fill(server)

        assert_refused_for_space(post(server, *big))
        twined = run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar",
                      "--repository-url", f"{server.url}/local/", "-u", "admin", f"--password={server.admin_password}",
                      write(tmp_path, *big)], env=isolated_env(tmp_path / "home", COLUMNS="500"),
                     check=False, timeout=120)
        # twine retries any 5xx a few times, then fails showing the reason
        assert twined.returncode != 0 and "HTTPError: 507" in twined.stdout, twined.stdout
        assert 'Received "507: Insufficient storage: ' in twined.stdout, twined.stdout
        try:  # a 507 when the disk fills before the answer starts, else the download breaks off
            assert_refused_for_space(download(server, proxied, "pypi"))
        except BROKEN_DOWNLOAD:
            pass

        assert list((server.data_dir / "tmp").iterdir()) == []
        assert list((server.data_dir / "locks").iterdir()) == []
        sha256 = proxied["hashes"]["sha256"]
        assert not (server.data_dir / "blobs" / sha256[:2] / sha256[2:4] / sha256).exists()
        assert listed(server, "big") == {}
        [entry] = listed(server, "earlier").values()
        assert download(server, entry, "local").content == earlier[1]
        server.assert_check_clean()

        disk.free(server)
        assert post(server, *big).status_code == 200
        [entry] = listed(server, "big").values()
        assert download(server, entry, "local").content == big[1]
        fetched = download(server, proxied, "pypi")
        assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == proxied["hashes"]["sha256"]
        assert described(server, proxied["hashes"]["sha256"])
    finally:
        stop_server(server.process)
    # Five, and the proxied file's METADATA, taken out of it for the UI once the client had it all.
    assert "checked 6 blobs: 0 missing, 0 corrupt" in server.assert_check_clean()


def test_a_disk_with_no_room_at_all_refuses_even_small_uploads_and_still_serves(tmp_path: Path) -> None:
    """Nothing left, not even for SQLite to grow: the blob or the row is refused, whichever comes first."""
    disk = TinyFilesystem(tmp_path)
    try:
        server = start_server("gunicorn", tmp_path, data_dir=disk.data_dir, settings=NO_FLOOR)
        try:
            earlier = ("earlier-1.0-py3-none-any.whl", wheel_bytes("earlier", "1.0"))
            assert post(server, *earlier).status_code == 200
            disk.fill(server, room=0)
            for i in range(5):
                assert_refused_for_space(post(server, f"tiny-{i}.0-py3-none-any.whl", wheel_bytes("tiny", f"{i}.0")))
            [entry] = listed(server, "earlier").values()
            assert download(server, entry, "local").content == earlier[1]
            assert listed(server, "tiny") == {}
            assert list((server.data_dir / "tmp").iterdir()) == []
            disk.free(server)
            assert post(server, "tiny-0.0-py3-none-any.whl", wheel_bytes("tiny", "0.0")).status_code == 200
        finally:
            stop_server(server.process)
        server.assert_check_clean()
    finally:
        disk.close()
