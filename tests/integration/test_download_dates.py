"""A download's date is its own upload time, as its page says: never the blob's mtime, which moves whenever any
repository, a private one included, stores the same bytes again."""

from __future__ import annotations

import hashlib
import time
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin

import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server

JSON = "application/vnd.pypi.simple.v1+json"


def _upload(live: LiveServer, repo: str, data: bytes) -> None:
    fields = {":action": "file_upload", "protocol_version": "1", "name": "dated", "version": "1.0",
              "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    response = requests.post(f"{live.url}/{repo}/", data=fields, auth=("admin", live.admin_password), timeout=30,
                             files={"content": ("dated-1.0-py3-none-any.whl", data)})
    assert response.status_code == 200, response.text


def test_a_public_download_does_not_date_a_private_upload_of_the_same_bytes(tmp_path: Path) -> None:
    live = start_server("gunicorn", tmp_path, [{"name": "local", "repository_type": "hosted"},
                                               {"name": "team", "repository_type": "hosted", "public": False}])
    try:
        data = wheel_bytes("dated", "1.0")
        _upload(live, "local", data)
        time.sleep(2.1)  # whole seconds apart, as HTTP dates count
        _upload(live, "team", data)  # the same bytes again, in private: the blob is touched
        page = live.simple("local") + "dated/"
        listed = requests.get(page, headers={"Accept": JSON}, timeout=10).json()["files"][0]
        url = urljoin(page, listed["url"])
        uploaded = datetime.fromisoformat(listed["upload-time"].replace("Z", "+00:00")).replace(microsecond=0)
        answer = requests.get(url, timeout=10)
        assert answer.status_code == 200 and answer.content == data
        assert parsedate_to_datetime(answer.headers["Last-Modified"]) == uploaded
        # An anonymous reader probing with a date between the two uploads learns nothing of the private one.
        between = format_datetime(uploaded + timedelta(seconds=1), usegmt=True)
        assert requests.get(url, headers={"If-Modified-Since": between}, timeout=10).status_code == 304
    finally:
        stop_server(live.process)
