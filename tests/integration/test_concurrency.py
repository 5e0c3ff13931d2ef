"""Concurrent uploads against the live server (two gunicorn workers share one SQLite database and one
blob store): every answer is right, and nothing is lost or left half-written."""

from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer

JSON = "application/vnd.pypi.simple.v1+json"


def post(live: LiveServer, filename: str, data: bytes) -> int:
    name, version = filename.split("-")[:2]
    form = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    response = requests.post(f"{live.url}/local/", data=form, files={"content": (filename, data)},
                             auth=("admin", live.admin_password), timeout=60)
    return response.status_code


def test_concurrent_uploads_are_all_answered_and_kept(live: LiveServer) -> None:
    distinct = [(f"burst-{i}.0-py3-none-any.whl", wheel_bytes("burst", f"{i}.0")) for i in range(12)]
    same = [("twice-1.0-py3-none-any.whl", wheel_bytes("twice", "1.0"))] * 4
    rivals = [("rival-1.0-py3-none-any.whl", wheel_bytes("rival", "1.0", requires_python=f">=3.{i}"))
              for i in range(3)]
    jobs = distinct + same + rivals
    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(lambda job: post(live, *job), jobs))

    assert statuses[:len(distinct) + len(same)] == [200] * (len(distinct) + len(same))
    assert sorted(statuses[len(distinct) + len(same):]) == [200, 409, 409]

    def listed(project: str) -> list[dict]:
        return requests.get(f"{live.simple('local')}{project}/", headers={"Accept": JSON}, timeout=10).json()["files"]

    assert sorted(f["filename"] for f in listed("burst")) == sorted(name for name, _ in distinct)
    assert len(listed("twice")) == 1
    [rival] = listed("rival")
    assert rival["hashes"]["sha256"] in {hashlib.sha256(data).hexdigest() for _, data in rivals}
    assert [p.name for p in (live.data_dir / "tmp").iterdir()] == []
