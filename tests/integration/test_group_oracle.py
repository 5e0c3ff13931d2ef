"""A group must not tell a reader which names its private members hold: for a reader who may not see the
member, such a name is answered exactly as a name nobody holds is, the upstream asked the same way, with the
same status and the same counts on the public /metrics."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, start_server, stop_server
from tests.upstream import Upstream, wheel

COUNTED = re.compile(r'^(pypilite_proxy_\w+|pypilite_http_requests_total\{endpoint="simple\.project_page"[^}]*\})'
                     r'(\{[^}]*\})? ([0-9.e+]+)$', re.MULTILINE)


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def served(request, tmp_path_factory) -> Iterator[tuple[LiveServer, Upstream]]:
    tmp = tmp_path_factory.mktemp(f"oracle-{request.param}")
    upstream = Upstream(tmp / "upstream", [wheel("public-thing", "1.0")], json_api=True).start()
    server = start_server(request.param, tmp, [
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "up", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2},
        {"name": "all", "repository_type": "group", "members": ["team", "up"]},
    ])
    for name in ("internal-one", "internal-two"):
        data = wheel_bytes(name, "1.0")
        uploaded = requests.post(f"{server.url}/team/", auth=("admin", server.admin_password), timeout=30, data={
            ":action": "file_upload", "protocol_version": "1", "name": name, "version": "1.0",
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()},
            files={"content": (f"{name.replace('-', '_')}-1.0-py3-none-any.whl", data)})
        assert uploaded.status_code == 200, uploaded.text
    yield server, upstream
    stop_server(server.process)
    upstream.stop()


def _counts(server: LiveServer) -> dict[str, float]:
    text = requests.get(f"{server.url}/metrics", timeout=10).text
    return {series + (labels or ""): float(value) for series, labels, value in COUNTED.findall(text)
            if not series.endswith("_created")}  # when a series first appeared: a clock, not a count


def _ask(server: LiveServer, upstream: Upstream, name: str) -> tuple[int, dict[str, float], int]:
    """An anonymous request for the group's page of `name`: its status, what it changed on /metrics, and how
    often the upstream was asked for the name."""
    before = _counts(server)
    status = requests.get(f"{server.url}/all/simple/{name}/", timeout=30).status_code
    after = _counts(server)
    changed = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    return status, changed, upstream.log.count(f"/simple/{name}/")


def test_a_privately_held_name_reads_as_one_nobody_holds(served) -> None:
    server, upstream = served
    assert requests.get(f"{server.url}/all/simple/internal-one/", auth=("admin", server.admin_password),
                        timeout=30).status_code == 200  # it is there, for those who may see it
    private = _ask(server, upstream, "internal-one")
    nobody = _ask(server, upstream, "nobody-has-this")
    assert private[0] == nobody[0] == 404
    assert private[1] == nobody[1] and private[2] == nobody[2] == 1

    upstream.stop()  # a dead upstream: no name may become a 404 where another is a 502
    try:
        private = _ask(server, upstream, "internal-two")
        nobody = _ask(server, upstream, "nobody-has-that")
        assert private[0] == nobody[0] == 502
        assert private[1] == nobody[1]
    finally:
        upstream.start()
