"""The real server on PostgreSQL (a throwaway cluster, tests/postgres.py): real twine, pip and uv against
`python app.py` and gunicorn, and two gunicorn nodes sharing the one database, each serving on its next
request what the other changed. The nodes share one data dir for blobs too, until blobs can live in a bucket."""

from __future__ import annotations

import hashlib
import random
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests import postgres
from tests.distfactory import wheel_bytes
from tests.integration.conftest import (
    LiveServer,
    build,
    isolated_env,
    make_project,
    new_venv,
    run,
    start_server,
    stop_server,
    twine_form,
    uv,
)

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed")
JSON = "application/vnd.pypi.simple.v1+json"


def on_postgresql(url: str) -> dict[str, str]:
    return {"PYPILITE_DATABASE_URL": url}


@pytest.fixture(params=["app", "gunicorn"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    live = start_server(request.param, tmp_path, settings=on_postgresql(postgres.fresh_database_url()))
    yield live
    stop_server(live.process)


@pytest.fixture
def nodes(tmp_path: Path) -> Iterator[tuple[LiveServer, LiveServer, str]]:
    """Two gunicorn nodes on two ports, one database, one blob directory."""
    url = postgres.fresh_database_url()
    for home in ("a", "b"):
        (tmp_path / home).mkdir()
    first = start_server("gunicorn", tmp_path / "a", data_dir=tmp_path / "data", settings=on_postgresql(url))
    second = start_server("gunicorn", tmp_path / "b", data_dir=tmp_path / "data", settings=on_postgresql(url))
    yield first, second, url
    stop_server(first.process)
    stop_server(second.process)


def test_twine_uploads_and_pip_and_uv_install(server: LiveServer, tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home")
    dists = build(make_project(tmp_path, "Team_Utils", "1.0"), tmp_path / "dist", env)
    run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
         f"{server.url}/local/", "-u", "admin", f"--password={server.admin_password}", *dists], env=env)
    listed = requests.get(f"{server.simple('local')}team-utils/", headers={"Accept": JSON}, timeout=10).json()
    assert sorted(f["filename"] for f in listed["files"]) == sorted(p.name for p in dists)
    assert not (server.data_dir / "pypilite.db").exists()  # the rows are in PostgreSQL

    python = new_venv(tmp_path / "venv", env)
    run([python, "-m", "pip", "install", "--index-url", server.simple("local"), "team-utils"], env=env)
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=env)
    run([uv(), "pip", "install", "--python", venv / "bin" / "python", "--index-url", server.simple(), "team.utils"],
        env=env)
    for interpreter in (python, venv / "bin" / "python"):
        assert run([interpreter, "-c", "import team_utils; print(team_utils.VERSION)"], env=env).stdout.strip() == "1.0"
    assert "0 missing, 0 corrupt" in server.assert_check_clean()


class Api:
    def __init__(self, node: LiveServer, auth: tuple[str, str]) -> None:
        self.node = node
        self.auth = auth

    def __call__(self, method: str, path: str, body: dict | None = None, status: int = 200) -> dict:
        response = requests.request(method, f"{self.node.url}/api/v1{path}", json=body, auth=self.auth, timeout=30)
        assert response.status_code == status, response.text
        return response.json() if response.content else {}


def upload(node: LiveServer, filename: str, data: bytes, auth: tuple[str, str]) -> requests.Response:
    body, content_type = twine_form(filename, data)
    return requests.post(f"{node.url}/local/", data=body, headers={"Content-Type": content_type}, auth=auth,
                         timeout=60)


def files(node: LiveServer, project: str, auth: tuple[str, str] | None = None) -> dict[str, dict]:
    response = requests.get(f"{node.simple('local')}{project}/", headers={"Accept": JSON}, auth=auth, timeout=10)
    return {f["filename"]: f for f in response.json()["files"]} if response.status_code == 200 else {}


def test_what_one_node_changes_the_other_serves_at_once(nodes: tuple[LiveServer, LiveServer, str]) -> None:
    first, second, _url = nodes
    changes_cross_over(first, second)


def changes_cross_over(first: LiveServer, second: LiveServer) -> None:
    """Upload, yank, permission, privacy, token revoke and delete through one node, each served at once by
    the other (test_scaleout.py runs it on nodes that share no disk)."""
    admin = ("admin", first.admin_password)
    api_first, api_second = Api(first, admin), Api(second, admin)
    name, data = "demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")

    page = requests.get(f"{second.simple('local')}demo/", headers={"Accept": JSON}, timeout=10)
    assert page.status_code == 404
    assert upload(first, name, data, admin).status_code == 200  # upload
    listed = files(second, "demo")
    assert listed[name]["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
    url = requests.compat.urljoin(f"{second.simple('local')}demo/", listed[name]["url"])
    assert requests.get(url, timeout=10).content == data
    etag = requests.get(f"{second.simple('local')}demo/", headers={"Accept": JSON}, timeout=10).headers["ETag"]

    api_first("POST", "/repos/local/projects/demo/1.0/yank", {"reason": "broken"})  # yank
    again = requests.get(f"{second.simple('local')}demo/", headers={"Accept": JSON, "If-None-Match": etag},
                         timeout=10)
    assert again.status_code == 200 and again.json()["files"][0]["yanked"] == "broken"

    api_first("POST", "/users", {"name": "carol", "password": "carol-password-1"}, status=201)  # permission
    carol = ("carol", "carol-password-1")
    api_first("PATCH", "/repos/local", {"public": False})  # repository made private
    assert requests.get(f"{second.simple('local')}demo/", timeout=10).status_code == 401
    assert requests.get(f"{second.simple('local')}demo/", auth=carol, timeout=10).status_code == 403
    api_first("PUT", "/repos/local/permissions/carol", {"level": "read"}, status=201)
    assert name in files(second, "demo", carol)
    api_first("DELETE", "/repos/local/permissions/carol", status=204)
    assert requests.get(f"{second.simple('local')}demo/", auth=carol, timeout=10).status_code == 403

    token = api_second("POST", "/tokens", {"user": "admin"}, status=201)  # token revoke, the other way round
    by_token = ("__token__", token["token"])
    assert name in files(first, "demo", by_token)
    api_second("DELETE", f"/tokens/{token['id']}", status=204)
    assert requests.get(f"{first.simple('local')}demo/", auth=by_token, timeout=10).status_code == 401

    api_first("DELETE", f"/repos/local/files/{name}", status=204)  # delete
    assert requests.get(url, auth=admin, timeout=10).status_code == 404
    assert requests.get(f"{second.simple('local')}demo/", auth=admin, timeout=10).status_code == 404
    assert requests.get(f"{second.simple('local')}", auth=admin, headers={"Accept": JSON},
                        timeout=10).json()["projects"] == []


def test_two_nodes_racing_to_upload_one_name_store_one_file(nodes: tuple[LiveServer, LiveServer, str]) -> None:
    """Each round, both nodes receive the same filename with other bytes at once: one stores it, the other
    answers 409, never a 500 nor two rows."""
    first, second, _url = nodes
    admin = ("admin", first.admin_password)
    for round_number in range(8):
        name = f"race-{round_number}.0-py3-none-any.whl"
        statuses: list[int] = []
        start = threading.Barrier(2)

        def send(node: LiveServer, marker: bytes, name: str = name, statuses: list[int] = statuses,
                 start: threading.Barrier = start) -> None:
            data = wheel_bytes("race", f"{round_number}.0", payload=marker)
            start.wait(timeout=30)
            statuses.append(upload(node, name, data, admin).status_code)

        threads = [threading.Thread(target=send, args=(node, marker))
                   for node, marker in ((first, b"a"), (second, b"b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert sorted(statuses) == [200, 409], (round_number, statuses)
    assert len(files(second, "race")) == 8
    first.assert_check_clean()


def test_health_names_the_database_and_requests_say_503(nodes: tuple[LiveServer, LiveServer, str]) -> None:
    first, second, url = nodes
    assert requests.get(f"{first.url}/health", timeout=10).json()["database"] == "ok"
    postgres.cluster().sql(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    health = requests.get(f"{second.url}/health", timeout=10)
    assert health.status_code == 503 and health.json()["failing"] == ["database"]
    # Every request, on every worker, whether its open connection was cut or a new one is refused.
    for _ in range(6):
        page = requests.get(f"{first.simple('local')}", timeout=10)
        assert page.status_code == 503 and "database cannot be reached" in page.text and url not in page.text
    for node in (first, second):
        assert url not in node.log.read_text() and "postgres@" not in node.log.read_text()


def test_values_postgresql_cannot_store_are_refused_in_one_line(tmp_path: Path) -> None:
    """SQLite stores a NUL character and 64-bit integers; PostgreSQL refuses both. Whatever a request
    carries them in, the answer is a one-line 4xx, never a 500, and nothing changes."""
    node = start_server("gunicorn", tmp_path, settings=on_postgresql(postgres.fresh_database_url()))
    try:
        admin = ("admin", node.admin_password)
        assert upload(node, "demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), admin).status_code == 200
        api = f"{node.url}/api/v1"
        attacks = [
            ("GET", f"{api}/admin/audit?q=%00", {}, admin),
            ("GET", f"{api}/admin/audit?resource_type=%00", {}, admin),
            ("GET", f"{node.url}/local/simple/", {}, ("ad\x00min", "x")),
            ("GET", f"{node.url}/lo%00cal/simple/", {}, None),
            ("GET", f"{node.url}/local/simple/de%00mo/", {}, None),
            ("POST", f"{api}/repos/local/projects/demo/1.0/yank", {"json": {"reason": "a\x00b"}}, admin),
            ("DELETE", f"{api}/tokens/99999999999", {}, admin),
            ("DELETE", f"{api}/repos/local/files/demo-1.0-py3-none-any.whl%00", {}, admin),
            ("PUT", f"{api}/repos/local/permissions/bo%00b", {"json": {"level": "read"}}, admin),
            ("POST", f"{api}/users", {"json": {"name": "eve\x00", "password": "eve-password-1"}}, admin),
            ("GET", f"{api}/repos/local/projects/demo%00", {}, admin),
        ]
        for method, url, extra, auth in attacks:
            response = requests.request(method, url, auth=auth, timeout=30, **extra)
            assert 400 <= response.status_code < 500 and response.text.count("\n") == 1, (url, response.text)
        listed = files(node, "demo")
        assert listed["demo-1.0-py3-none-any.whl"]["yanked"] is False
        assert "Traceback" not in node.log.read_text()
    finally:
        stop_server(node.process)


def test_a_node_killed_mid_upload_leaves_the_other_serving_and_nothing_half_stored(tmp_path: Path) -> None:
    """SIGKILL of one node's whole gunicorn during a large upload (mid-body, right after the body, with the
    blob in place): its connections die with it, so no lock of its outlives it; the other node stores the same
    upload, and the file is listed once or not at all, never without its blob."""
    from tests.integration.test_faults_kill import AFTER_BODY, BIG, BLOB_IN_PLACE, CHUNK, upload_and_kill

    rng = random.Random(24)
    url = postgres.fresh_database_url()
    data_dir = tmp_path / "data"
    (tmp_path / "b").mkdir()
    survivor = start_server("gunicorn", tmp_path / "b", data_dir=data_dir, settings=on_postgresql(url))
    admin = ("admin", survivor.admin_password)
    try:
        for round_, kill_at in enumerate((rng.randrange(CHUNK, BIG - CHUNK), AFTER_BODY, BLOB_IN_PLACE)):
            victim = start_server("gunicorn", tmp_path, data_dir=data_dir, settings=on_postgresql(url))
            name = f"big-{round_}.0-py3-none-any.whl"
            data = wheel_bytes("big", f"{round_}.0", payload=rng.randbytes(BIG))
            status = upload_and_kill(victim, name, data, kill_at, rng)
            assert status in (None, 200)
            if not isinstance(kill_at, str):
                assert status is None and name not in files(survivor, "big")  # a half-sent upload is never listed
            small = f"small-{round_}.0-py3-none-any.whl"
            assert upload(survivor, small, wheel_bytes("small", f"{round_}.0"), admin).status_code == 200
            assert upload(survivor, name, data, admin).status_code == 200  # stored now, or identical: 200
            listed = files(survivor, "big")[name]
            fetched = requests.get(requests.compat.urljoin(f"{survivor.simple('local')}big/", listed["url"]),
                                   timeout=60).content
            assert hashlib.sha256(fetched).hexdigest() == listed["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        survivor.assert_check_clean()
    finally:
        stop_server(survivor.process)
