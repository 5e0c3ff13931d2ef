"""Two gunicorn nodes (`python app.py`) that share nothing on disk: each has its own data dir, both one
PostgreSQL database (tests/postgres.py) and one bucket (moto's server, tests/s3server.py). Real twine uploads
through one node, pip and uv install through the other; a proxied file is fetched from the upstream once for
both; what one node changes the other serves on its next request; a node SIGKILLed mid-upload and the store
cut off leave nothing half-stored."""

from __future__ import annotations

import hashlib
import json
import random
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest
import requests

from tests import postgres
from tests.distfactory import wheel_bytes
from tests.integration.conftest import (
    ROOT,
    LiveServer,
    build,
    free_port,
    isolated_env,
    make_project,
    new_venv,
    required,
    run,
    start_server,
    stop_server,
    uv,
)
from tests.integration.test_faults_kill import AFTER_BODY, BIG, BLOB_IN_PLACE, CHUNK, upload_and_kill
from tests.integration.test_nginx import LOCATION, NGINX, SITE, nginx_config, running_nginx
from tests.integration.test_postgresql import changes_cross_over, files, upload
from tests.integration.test_s3 import PREFIX, key, repositories
from tests.s3server import S3Server
from tests.upstream import Upstream, wheel

pytestmark = pytest.mark.skipif(not postgres.available(), reason="PostgreSQL is not installed")
JSON = "application/vnd.pypi.simple.v1+json"


@dataclass
class Nodes:
    a: LiveServer
    b: LiveServer
    database_url: str
    bucket: str
    settings: dict[str, str]
    repositories: list[dict]

    def restart_a(self) -> None:
        """Node A again, on its own data dir, after a kill."""
        self.a = start_server("gunicorn", self.a.data_dir.parent, self.repositories, data_dir=self.a.data_dir,
                              settings=self.settings, admin_password=self.a.admin_password)

    def rows(self) -> list[tuple[str, str]]:
        """Every file row of the shared database: (filename, sha256)."""
        with psycopg.connect(self.database_url) as connection:
            return sorted(connection.execute("SELECT filename, sha256 FROM file").fetchall())


def start_nodes(tmp_path: Path, store: S3Server, upstream: Upstream, bucket: str | None = None,
                **extra: str) -> Nodes:
    """Node A creates the database's tables and first admin; node B starts on them with a data dir of its own.
    `extra` are more PYPILITE_* settings of both."""
    url, bucket = postgres.fresh_database_url(), bucket or store.new_bucket()
    settings = {"PYPILITE_DATABASE_URL": url, **store.settings(bucket, PREFIX), **extra}
    for home in ("a", "b"):
        (tmp_path / home).mkdir()
    a = start_server("gunicorn", tmp_path / "a", repositories(upstream), settings=settings)
    b = start_server("gunicorn", tmp_path / "b", repositories(upstream), settings=settings,
                     admin_password=a.admin_password)
    return Nodes(a, b, url, bucket, settings, repositories(upstream))


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    server = Upstream(tmp_path_factory.mktemp("upstream"), [wheel("upstream-lib", "1.0")], json_api=True).start()
    yield server
    server.stop()


@pytest.fixture
def nodes(tmp_path: Path, s3_server: S3Server, upstream: Upstream) -> Iterator[Nodes]:
    pair = start_nodes(tmp_path, s3_server, upstream)
    yield pair
    stop_server(pair.a.process)
    stop_server(pair.b.process)


def test_twine_through_one_node_pip_and_uv_through_the_other(nodes: Nodes, s3_server: S3Server,
                                                              tmp_path: Path) -> None:
    env = isolated_env(tmp_path / "home")
    dists = (build(make_project(tmp_path, "scale-utils", "1.0"), tmp_path / "utils", env)
             + build(make_project(tmp_path, "scale-app", "0.1", dependencies=("scale-utils>=1.0",)),
                     tmp_path / "app", env))
    run([sys.executable, "-m", "twine", "upload", "--non-interactive", "--disable-progress-bar", "--repository-url",
         f"{nodes.a.url}/local/", "-u", "admin", f"--password={nodes.a.admin_password}", *dists], env=env)
    keys = s3_server.keys(nodes.bucket)
    assert {key(hashlib.sha256(dist.read_bytes()).hexdigest()) for dist in dists} <= set(keys)
    for node in (nodes.a, nodes.b):  # nothing of the index on either node's disk
        assert not (node.data_dir / "blobs").exists() and not (node.data_dir / "pypilite.db").exists()

    python = new_venv(tmp_path / "venv", env)
    run([python, "-m", "pip", "install", "--index-url", nodes.b.simple("local"), "scale-app"], env=env)
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=env)
    run([uv(), "pip", "install", "--python", venv / "bin" / "python", "--index-url", nodes.b.simple(), "scale-app"],
        env=env)
    for interpreter in (python, venv / "bin" / "python"):
        result = run([interpreter, "-c", "import scale_app, scale_utils; print(scale_utils.VERSION)"], env=env)
        assert result.stdout.strip() == "1.0"
    assert "0 missing, 0 corrupt" in nodes.b.assert_check_clean()


def test_a_proxied_file_is_fetched_once_across_both_nodes(nodes: Nodes, upstream: Upstream) -> None:
    """Both nodes asked for the same uncached file at once, then again: the upstream sends it once."""
    page = requests.get(f"{nodes.a.simple('pypi')}upstream-lib/", headers={"Accept": JSON}, timeout=30).json()
    file = page["files"][0]
    asked = upstream.log.count(file["filename"])
    bodies: list[bytes] = []
    start = threading.Barrier(2)

    def fetch(node: LiveServer) -> None:
        start.wait(timeout=30)
        url = requests.compat.urljoin(f"{node.simple('pypi')}upstream-lib/", file["url"])
        bodies.append(requests.get(url, timeout=60).content)

    threads = [threading.Thread(target=fetch, args=(node,)) for node in (nodes.a, nodes.b)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for node in (nodes.b, nodes.a):
        bodies.append(requests.get(requests.compat.urljoin(f"{node.simple('pypi')}upstream-lib/", file["url"]),
                                   timeout=60).content)
    assert len(bodies) == 4
    assert {hashlib.sha256(body).hexdigest() for body in bodies} == {file["hashes"]["sha256"]}
    assert upstream.log.count(file["filename"]) == asked + 1


def test_what_one_node_changes_the_other_serves_at_once(nodes: Nodes) -> None:
    changes_cross_over(nodes.a, nodes.b)


def test_a_node_killed_mid_upload_leaves_nothing_half_stored(nodes: Nodes, s3_server: S3Server) -> None:
    """Node A SIGKILLed mid-body, right after the body, and the moment the object is in the bucket: node B
    keeps serving, stores the same upload, and no row names an object the bucket lacks."""
    rng = random.Random(2024)
    admin = ("admin", nodes.b.admin_password)
    client = s3_server.client()
    for round_, kill_at in enumerate((rng.randrange(CHUNK, BIG - CHUNK), AFTER_BODY, BLOB_IN_PLACE)):
        name = f"big-{round_}.0-py3-none-any.whl"
        data = wheel_bytes("big", f"{round_}.0", payload=rng.randbytes(BIG))
        object_key = key(hashlib.sha256(data).hexdigest())

        def in_bucket(object_key: str = object_key) -> bool:
            return client.list_objects_v2(Bucket=nodes.bucket, Prefix=object_key).get("KeyCount", 0) > 0

        status = upload_and_kill(nodes.a, name, data, kill_at, rng, stored=in_bucket)
        assert status in (None, 200)
        if not isinstance(kill_at, str):
            assert status is None and name not in files(nodes.b, "big")  # a half-sent upload is never listed
        for filename, sha256 in nodes.rows():
            assert key(sha256) in s3_server.keys(nodes.bucket), filename  # no row without its object
        small = f"small-{round_}.0-py3-none-any.whl"
        assert upload(nodes.b, small, wheel_bytes("small", f"{round_}.0"), admin).status_code == 200
        assert upload(nodes.b, name, data, admin).status_code == 200  # stored now, or identical: 200
        listed = files(nodes.b, "big")[name]
        fetched = requests.get(requests.compat.urljoin(f"{nodes.b.simple('local')}big/", listed["url"]),
                               timeout=60).content
        assert hashlib.sha256(fetched).hexdigest() == listed["hashes"]["sha256"] == hashlib.sha256(data).hexdigest()
        nodes.restart_a()
        assert name in files(nodes.a, "big")
    nodes.b.assert_check_clean()


class Relay:
    """A TCP relay on loopback in front of the store: closed, it refuses new connections and cuts open ones, as
    a partition would; opened again on its port, the store is back with everything it held."""

    def __init__(self, target_port: int) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.target_port = target_port
        self._listener: socket.socket | None = None
        self._open: list[socket.socket] = []

    def open(self) -> Relay:
        self._listener = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, args=(self._listener,), daemon=True).start()
        return self

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        for sock in self._open:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()
        self._open.clear()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            store = socket.create_connection(("127.0.0.1", self.target_port), timeout=30)
            self._open += [client, store]
            for source, sink in ((client, store), (store, client)):
                threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                sink.sendall(chunk)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


@pytest.fixture
def relay(s3_server: S3Server) -> Iterator[Relay]:
    opened = Relay(s3_server.port).open()
    yield opened
    opened.close()


def test_the_store_cut_off_from_both_nodes(tmp_path: Path, s3_server: S3Server, upstream: Upstream,
                                           relay: Relay) -> None:
    """While neither node reaches the store: one-line 503s for uploads and downloads on both, /health names the
    store, no row and no temp file is left; once it is back, both serve and store again."""
    nodes = start_nodes(tmp_path, s3_server, upstream, PYPILITE_STORAGE_ENDPOINT=relay.endpoint)
    try:
        admin = ("admin", nodes.a.admin_password)
        kept, lost = wheel("kept", "1.0"), wheel("lost", "1.0")
        assert upload(nodes.a, kept.filename, kept.data, admin).status_code == 200
        url = requests.compat.urljoin(f"{nodes.b.simple('local')}kept/", files(nodes.b, "kept")[kept.filename]["url"])
        relay.close()
        for node in (nodes.a, nodes.b):
            refused = upload(node, lost.filename, lost.data, admin)
            assert refused.status_code == 503 and "blob store is unavailable" in refused.text
            assert len(refused.text.strip().splitlines()) == 1 and relay.endpoint not in refused.text
            download = requests.get(url.replace(nodes.b.url, node.url), timeout=60)
            assert download.status_code == 503 and len(download.text.strip().splitlines()) == 1
            health = requests.get(f"{node.url}/health", timeout=30)
            assert health.status_code == 503 and health.json()["failing"] == ["storage"]
            assert list((node.data_dir / "tmp").glob("upload-*")) == []
            assert nodes.bucket not in node.log.read_text()
        assert [filename for filename, _ in nodes.rows()] == [kept.filename]

        relay.open()
        for node in (nodes.a, nodes.b):
            assert requests.get(f"{node.url}/health", timeout=30).status_code == 200
            assert requests.get(url.replace(nodes.b.url, node.url), timeout=60).content == kept.data
        assert upload(nodes.b, lost.filename, lost.data, admin).status_code == 200
        assert requests.get(requests.compat.urljoin(f"{nodes.a.simple('local')}lost/",
                                                    files(nodes.a, "lost")[lost.filename]["url"]),
                            timeout=60).content == lost.data
        nodes.a.assert_check_clean()
    finally:
        stop_server(nodes.a.process)
        stop_server(nodes.b.process)


TWO_NODE_SITE = ROOT / "deploy" / "scaleout" / "nginx.conf"


def directives(site: str) -> list[str]:
    """A site's settings, comments and blank lines aside, with its commented-in S3 variant in place."""
    lines = (line.removeprefix("#s3 ").removeprefix("#s3") for line in site.splitlines())
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_two_node_site_is_the_one_box_site_on_a_bucket_with_two_nodes() -> None:
    """deploy/scaleout/nginx.conf keeps every setting of deploy/nginx.conf (its S3 variant): only the blob's
    path on disk goes, and the upstream names two nodes."""
    one_box = directives(SITE.read_text())
    start = one_box.index("map $pypilite_blob $pypilite_blob_file {")
    del one_box[start:one_box.index("}", start) + 1]
    one_box.remove("alias $pypilite_blob_file;")
    two_nodes = directives(TWO_NODE_SITE.read_text())
    two_nodes.remove("server 127.0.0.1:8081;")
    assert two_nodes == one_box


def test_nginx_balances_two_nodes_and_outlives_one(tmp_path: Path, s3_server: S3Server, upstream: Upstream) -> None:
    """The shipped two-node site in front of the two nodes: uploads, pages and installs through it, blobs sent
    from the bucket by nginx, and with node A stopped, node B serves everything, uploads included."""
    required(Path(NGINX), "apt-get install nginx-light (.ci/run does)")
    bucket = s3_server.new_bucket()
    s3_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/{PREFIX}*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}]}))
    nodes = start_nodes(tmp_path, s3_server, upstream, bucket, PYPILITE_SERVER_X_ACCEL_REDIRECT=LOCATION)
    site = TWO_NODE_SITE.read_text()
    for shipped, here in (("127.0.0.1:8081", nodes.b.url.removeprefix("http://")),
                          ("http://127.0.0.1:9000/pypilite/blobs/", f"{s3_server.endpoint}/{bucket}/{PREFIX}")):
        assert shipped in site
        site = site.replace(shipped, here)
    (tmp_path / "nginx").mkdir()
    port = free_port()
    config = nginx_config(tmp_path / "nginx", port, nodes.a.url.removeprefix("http://"), None, site)
    try:
        with running_nginx(tmp_path / "nginx", config, port) as (url, nginx):
            front = LiveServer(url=url, data_dir=nodes.a.data_dir, admin_password=nodes.a.admin_password,
                               process=nginx, log=tmp_path / "nginx" / "nginx.out")
            admin = ("admin", front.admin_password)
            env = isolated_env(tmp_path / "home")
            for round_, stopped in enumerate((None, nodes.a)):
                if stopped is not None:
                    stop_server(stopped.process)
                name = f"balanced-{round_}.0-py3-none-any.whl"
                data = wheel_bytes("balanced", f"{round_}.0")
                for _ in range(4):  # every request on either node, or on B alone once A is gone
                    assert upload(front, name, data, admin).status_code == 200
                listed = files(front, "balanced")
                assert set(listed) == {f"balanced-{n}.0-py3-none-any.whl" for n in range(round_ + 1)}
                url = requests.compat.urljoin(front.simple("local") + "balanced/", listed[name]["url"]).split("#")[0]
                for _ in range(4):
                    download = requests.get(url, timeout=30)
                    assert download.status_code == 200 and download.content == data
                    assert "x-amz-request-id" not in download.headers
                python = new_venv(tmp_path / f"venv-{round_}", env)
                run([python, "-m", "pip", "install", "--index-url", front.simple("local"), f"balanced=={round_}.0"],
                    env=env)
    finally:
        stop_server(nodes.a.process)
        stop_server(nodes.b.process)

