"""Concurrent uploads against the live server (two gunicorn workers share one SQLite database and one
blob store): every answer is right, and nothing is lost or left half-written."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import ROOT, LiveServer

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


def test_a_change_shows_in_the_next_answer_of_every_worker(live: LiveServer) -> None:
    """Each worker answers a repeated request from its memo: an upload through one worker, and a password
    changed by the CLI (another process), must show in the very next answer of every one of them."""
    assert post(live, "seen-1.0-py3-none-any.whl", wheel_bytes("seen", "1.0")) == 200
    page = f"{live.simple('local')}seen/"

    def versions() -> set[str]:
        files = requests.get(page, headers={"Accept": JSON}, timeout=10).json()["files"]
        return {f["filename"].split("-")[1] for f in files}

    # A new connection per request: gunicorn's workers take turns, and each remembers the answer.
    assert all(versions() == {"1.0"} for _ in range(20))
    assert post(live, "seen-2.0-py3-none-any.whl", wheel_bytes("seen", "2.0")) == 200
    assert all(versions() == {"1.0", "2.0"} for _ in range(20))

    old = ("admin", live.admin_password)
    assert all(requests.get(page, auth=old, timeout=10).status_code == 200 for _ in range(20))
    changed = subprocess.run([sys.executable, "app.py", "user", "passwd", "admin", "--password-stdin"],
                             input="another-password-9\n", env=live.env, cwd=ROOT, capture_output=True, text=True,
                             timeout=60)
    assert changed.returncode == 0, changed.stderr
    try:
        # A few only: ten failures from one address would throttle it.
        assert [requests.get(page, auth=old, timeout=10).status_code for _ in range(4)] == [401] * 4
        assert requests.get(page, auth=("admin", "another-password-9"), timeout=10).status_code == 200
    finally:
        restored = subprocess.run([sys.executable, "app.py", "user", "passwd", "admin", "--password-stdin"],
                                  input=live.admin_password + "\n", env=live.env, cwd=ROOT, capture_output=True,
                                  text=True, timeout=60)
        assert restored.returncode == 0, restored.stderr
