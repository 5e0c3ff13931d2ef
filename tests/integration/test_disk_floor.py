"""The data dir's disk is never taken below storage.min_free_mb by one file: an upload, or a proxied file
whose upstream names no size, is refused (507, or a download broken off) with nothing stored, once what it
would leave free falls under the floor."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import LiveServer, start_server, stop_server, twine_form
from tests.upstream import Dist, Upstream

MB = 1024 * 1024
ROOM = 48 * MB  # what the floor leaves a test to write: less than each file here
BIG = 96 * MB


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[LiveServer, Upstream]]:
    endless = Dist("endless", "endless-1.0.tar.gz", os.urandom(BIG))  # a plain HTML page says no size
    upstream = Upstream(tmp_path / "upstream", [endless], json_api=False).start()
    floor = (shutil.disk_usage(tmp_path).free - ROOM) // MB
    server = start_server("gunicorn", tmp_path, [
        {"name": "local", "repository_type": "hosted"},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url}],
        settings={"PYPILITE_STORAGE_MIN_FREE_MB": str(floor)})
    yield server, upstream
    stop_server(server.process)
    upstream.stop()


def _stored(server: LiveServer) -> list[Path]:
    return [path for path in (server.data_dir / "blobs").rglob("*") if path.is_file()]


def test_no_one_file_takes_the_disk_below_the_floor(served) -> None:
    server, _ = served
    before = _stored(server)
    body, content_type = twine_form("big-1.0-py3-none-any.whl", os.urandom(BIG))
    refused = requests.post(f"{server.url}/local/", data=body, headers={"Content-Type": content_type},
                            auth=("admin", server.admin_password), timeout=120)
    assert refused.status_code == 507 and "storage.min_free_mb" in refused.text

    page = requests.get(f"{server.url}/pypi/simple/endless/", timeout=30)
    link = page.text.split('href="', 1)[1].split('"', 1)[0]
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        requests.get(requests.compat.urljoin(page.url, link), timeout=120).content
    assert _stored(server) == before and list((server.data_dir / "tmp").iterdir()) == []
