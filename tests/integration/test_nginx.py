"""Behind nginx, with the site shipped in deploy/nginx.conf: real twine and pip through it, blobs sent by
nginx after pypilite (or nginx's short cache of its answer) said yes (X-Accel-Redirect), revocations that
reach every download within that cache's bound, large uploads taken whole by nginx before pypilite reads
them, and stalled clients that never reach a worker."""

from __future__ import annotations

import base64
import gzip
import hashlib
import http.client
import io
import json
import os
import shutil
import socket
import subprocess
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import urljoin

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import (
    BIN,
    ROOT,
    LiveServer,
    build,
    free_port,
    make_project,
    new_venv,
    required,
    run,
    start_server,
    stop_server,
)
from tests.upstream import Upstream, wheel

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
LOCATION = "/_pypilite_blobs/"
SITE = ROOT / "deploy" / "nginx.conf"
PROXIED = wheel("from-upstream", "1.0")
FIRST_TIME = wheel("first-time", "1.0")  # downloaded by one test only: its first download is that test's
# How long nginx remembers pypilite's yes to a download (proxy_cache_valid in the site; the README says it).
DECISION_BOUND = 5


def nginx_config(directory: Path, port: int, upstream: str, data_dir: Path | None, site: str | None = None) -> Path:
    """The shipped site (or its S3 variant) with this test's ports and paths, inside the smallest main config
    that runs unprivileged-style from a temp prefix; no `data_dir` for a site that reads no blob from disk."""
    site = SITE.read_text() if site is None else site
    for shipped, here in (("listen 80;", f"listen 127.0.0.1:{port};"), ("127.0.0.1:8080", upstream),
                          ("/var/lib/pypilite/data/", f"{data_dir}/"),
                          ("/var/cache/nginx/pypilite", f"{directory}/decisions")):
        if data_dir is None and shipped.startswith("/var/lib/"):
            continue
        assert shipped in site, f"deploy/nginx.conf no longer says {shipped!r}"
        site = site.replace(shipped, here)
    config = directory / "nginx.conf"
    config.write_text(
        ("user root;\n" if os.geteuid() == 0 else "")  # a root master's workers must read the temp data dir
        + f"pid {directory}/nginx.pid;\nerror_log {directory}/error.log;\nevents {{}}\n"
        # A host that compresses all it can (Debian's stock nginx.conf says "gzip on"): the site must overrule it.
        "http {\naccess_log off;\ngzip on;\ngzip_types *;\ngzip_min_length 1;\n"
        f"client_body_temp_path {directory}/body;\nproxy_temp_path {directory}/proxy;\n"
        f"fastcgi_temp_path {directory}/f;\nuwsgi_temp_path {directory}/u;\nscgi_temp_path {directory}/s;\n"
        f"{site}\n}}\n")
    return config


@contextmanager
def running_nginx(directory: Path, config: Path, port: int) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """nginx on `config` (its output in `directory`/nginx.out) until the block ends, yielded once the server
    behind it answers /health through it."""
    output = directory / "nginx.out"
    with output.open("wb") as out:
        nginx = subprocess.Popen([NGINX, "-p", str(directory), "-c", str(config), "-g", "daemon off;"],
                                 stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                if requests.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if nginx.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"nginx did not start: {output.read_text(errors='replace')[-2000:]}")
            time.sleep(0.1)
        yield url, nginx
    finally:
        stop_server(nginx)


@pytest.fixture(scope="module")
def behind_nginx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, LiveServer]]:
    required(Path(NGINX), "apt-get install nginx-light (.ci/run does)")
    tmp = tmp_path_factory.mktemp("nginx")
    upstream = Upstream(tmp / "upstream", [PROXIED, FIRST_TIME], json_api=True).start()
    repositories = [{"name": "local", "repository_type": "hosted"},
                    {"name": "team", "repository_type": "hosted", "public": False},
                    {"name": "up", "repository_type": "proxy", "remote_url": upstream.url},
                    {"name": "all", "repository_type": "group", "members": ["local", "up"]}]
    server = start_server("gunicorn", tmp, repositories, settings={"PYPILITE_SERVER_X_ACCEL_REDIRECT": LOCATION})
    port = free_port()
    config = nginx_config(tmp, port, server.url.removeprefix("http://"), server.data_dir)
    try:
        with running_nginx(tmp, config, port) as (url, _):
            yield url, server
    finally:
        stop_server(server.process)
        upstream.stop()


def test_twine_and_pip_through_nginx(behind_nginx, tmp_path: Path, client_env: dict[str, str]) -> None:
    url, server = behind_nginx
    dist = build(make_project(tmp_path, "behind-nginx", "1.0"), tmp_path / "dist", client_env)
    run([BIN / "twine", "upload", "--non-interactive", "--repository-url", f"{url}/local/", "-u", "admin",
         "-p", server.admin_password, *dist], env=client_env)
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", f"{url}/local/simple/", "behind-nginx"], env=client_env)
    done = run([python, "-c", "import behind_nginx; print(behind_nginx.VERSION)"], env=client_env)
    assert done.stdout.strip() == "1.0"


def _upload(url: str, server: LiveServer, repo: str, data: bytes, name: str, version: str) -> requests.Response:
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
              "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    return requests.post(f"{url}/{repo}/", data=fields, auth=("admin", server.admin_password), timeout=120,
                         files={"content": (f"{name.replace('-', '_')}-{version}-py3-none-any.whl", data)})


def _large_wheel(name: str, version: str, size: int) -> bytes:
    """A valid wheel made large by one stored member of random bytes (nothing along the way compresses it)."""
    buffer = io.BytesIO(wheel_bytes(name, version))
    with zipfile.ZipFile(buffer, "a") as archive:
        archive.writestr("big_one/payload.bin", os.urandom(size), compress_type=zipfile.ZIP_STORED)
    return buffer.getvalue()


def test_nginx_sends_the_bytes_with_range_and_a_large_upload_goes_through(behind_nginx) -> None:
    url, server = behind_nginx
    data = _large_wheel("big-one", "1.0", 24 * 1024 * 1024)
    uploaded = _upload(url, server, "local", data, "big-one", "1.0")
    assert uploaded.status_code == 200, uploaded.text
    file = requests.get(f"{url}/local/simple/big-one/", timeout=10,
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"][0]
    file_url = urljoin(f"{url}/local/simple/big-one/", file["url"]).split("#")[0]
    whole = requests.get(file_url, timeout=60)
    assert whole.status_code == 200 and whole.content == data and "X-Accel-Redirect" not in whole.headers
    assert file["hashes"]["sha256"] not in whole.headers["ETag"]  # nginx's own validator: nginx sent the bytes
    part = requests.get(file_url, headers={"Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    sha256 = file["hashes"]["sha256"]
    direct = requests.get(f"{url}{LOCATION}{sha256[:2]}/{sha256[2:4]}/{sha256}", timeout=10)
    assert direct.status_code >= 400 and direct.content != data  # blobs are reached through pypilite only


def test_a_private_blob_needs_credentials_through_nginx_too(behind_nginx) -> None:
    url, server = behind_nginx
    data = wheel_bytes("secret-one", "1.0")
    assert _upload(url, server, "team", data, "secret-one", "1.0").status_code == 200
    file = requests.get(f"{url}/team/simple/secret-one/", auth=("admin", server.admin_password), timeout=10,
                        headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"][0]
    file_url = urljoin(f"{url}/team/simple/secret-one/", file["url"]).split("#")[0]
    refused = requests.get(file_url, timeout=10)
    assert refused.status_code == 401 and refused.content != data
    assert refused.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'  # what makes pip ask keyring
    wrong = requests.get(file_url, auth=("admin", "not-the-password"), timeout=10)
    assert wrong.status_code == 401 and wrong.content != data
    assert requests.get(file_url, auth=("admin", server.admin_password), timeout=10).content == data


def test_a_download_through_nginx_tells_nothing_of_a_private_copy_of_its_bytes(behind_nginx) -> None:
    """nginx dates and validates what it sends by the blob's mtime: a later private upload of the same bytes
    must not show, to an anonymous reader of the public file, in a header or a conditional answer."""
    url, server = behind_nginx
    data = wheel_bytes("stored-twice", "1.0")
    assert _upload(url, server, "local", data, "stored-twice", "1.0").status_code == 200
    time.sleep(2.1)  # HTTP dates count whole seconds
    assert _upload(url, server, "team", data, "stored-twice", "1.0").status_code == 200
    page = f"{url}/local/simple/stored-twice/"
    listed = requests.get(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10).json()
    file_url = urljoin(page, listed["files"][0]["url"]).split("#")[0]
    uploaded = datetime.fromisoformat(listed["files"][0]["upload-time"].replace("Z", "+00:00")).replace(microsecond=0)
    between = format_datetime(uploaded + timedelta(seconds=1), usegmt=True)  # before the private upload
    plain = requests.get(file_url, timeout=10)
    assert plain.content == data and parsedate_to_datetime(plain.headers["Last-Modified"]) == uploaded
    # nginx answers 304 to the exact date it holds: guessing it must not find the private upload's second.
    guesses = [format_datetime(uploaded + timedelta(seconds=s), usegmt=True) for s in range(-1, 8)]
    assert len({requests.get(file_url, headers={"If-Modified-Since": guess}, timeout=10).status_code
                for guess in guesses}) == 1
    assert requests.get(file_url, headers={"If-Unmodified-Since": between}, timeout=10).status_code == 200


def test_what_nginx_cannot_send_pypilite_answers(behind_nginx) -> None:
    url, _ = behind_nginx
    unknown = requests.get(f"{url}/files/local/{'0' * 64}/nothing-1.0-py3-none-any.whl", timeout=10)
    assert unknown.status_code == 404 and "not found" in unknown.text  # pypilite's own answer
    page = requests.get(f"{url}/up/simple/from-upstream/", headers={"Accept": "application/vnd.pypi.simple.v1+json"},
                        timeout=10).json()
    file_url = urljoin(f"{url}/up/simple/from-upstream/", page["files"][0]["url"]).split("#")[0]
    first = requests.get(file_url, timeout=30)  # not stored yet: pypilite streams it while fetching it
    assert first.status_code == 200 and first.content == PROXIED.data
    again = requests.get(file_url, timeout=30)  # stored now: nginx sends it
    assert again.content == PROXIED.data and PROXIED.sha256 not in again.headers["ETag"]


def test_downloads_nginx_leaves_to_pypilite_log_no_error(behind_nginx) -> None:
    """A proxied file's first download, and one of a file that does not exist, are pypilite's to answer:
    normal work, which must not fill nginx's error log."""
    url, server = behind_nginx
    error_log = server.data_dir.parent / "error.log"
    before = error_log.stat().st_size
    first = requests.get(_file_url(url, "/up/simple/", "first-time"), timeout=30)
    assert first.status_code == 200 and first.content == FIRST_TIME.data
    unknown = requests.get(f"{url}/files/local/{'0' * 64}/nothing-1.0-py3-none-any.whl", timeout=10)
    assert unknown.status_code == 404
    with error_log.open("rb") as log:
        log.seek(before)
        assert [line for line in log.read().decode(errors="replace").splitlines() if "[error]" in line] == []


def _file_url(url: str, index: str, project: str, **kwargs) -> str:
    page = f"{url}{index}{project}/"
    file = requests.get(page, headers={"Accept": "application/vnd.pypi.simple.v1+json"}, timeout=10,
                        **kwargs).json()["files"][0]
    return urljoin(page, file["url"]).split("#")[0]


def _token(url: str, server: LiveServer) -> tuple[int, tuple[str, str]]:
    created = requests.post(f"{url}/api/v1/tokens", json={}, auth=("admin", server.admin_password), timeout=10)
    assert created.status_code == 201
    return created.json()["id"], ("__token__", created.json()["token"])


def test_anonymous_downloads_are_decided_by_pypilite_and_sent_by_nginx(behind_nginx) -> None:
    url, server = behind_nginx
    data = wheel_bytes("sent-one", "1.0")
    assert _upload(url, server, "local", data, "sent-one", "1.0").status_code == 200
    sha256 = hashlib.sha256(data).hexdigest()
    for file_url in (f"{url}/files/local/{sha256}/sent_one-1.0-py3-none-any.whl",
                     _file_url(url, "/local/simple/", "sent-one"), _file_url(url, "/all/simple/", "sent-one"),
                     _file_url(url, "/simple/", "sent-one")):
        for _ in range(2):  # the second from nginx's cache of pypilite's yes
            sent = requests.get(file_url, timeout=10)
            assert sent.content == data and sha256 not in sent.headers["ETag"]  # nginx sent the bytes
            assert sent.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert sent.headers["Content-Disposition"] == 'inline; filename="sent_one-1.0-py3-none-any.whl"'
        part = requests.get(file_url, headers={"Range": "bytes=10-19"}, timeout=10)
        assert part.status_code == 206 and part.content == data[10:20]
        assert requests.get(file_url, headers={"If-None-Match": sent.headers["ETag"]}, timeout=10).status_code == 304
        assert requests.get(file_url + ".metadata", timeout=10).status_code == 200
        with_credentials = requests.get(file_url, auth=("admin", server.admin_password), timeout=10)
        assert with_credentials.content == data and "private" in with_credentials.headers["Cache-Control"]
    assert not (server.data_dir / "public").exists()


def _revoke_file(url: str, server: LiveServer, repo: str, token_id: int) -> requests.Response:
    return requests.delete(f"{url}/api/v1/repos/{repo}/files/gone_one-1.0-py3-none-any.whl",
                           auth=("admin", server.admin_password), timeout=10)


def _quarantine(url: str, server: LiveServer, repo: str, token_id: int) -> requests.Response:
    return requests.put(f"{url}/api/v1/repos/{repo}/projects/gone-one/status", json={"status": "quarantined"},
                        auth=("admin", server.admin_password), timeout=10)


def _make_private(url: str, server: LiveServer, repo: str, token_id: int) -> requests.Response:
    return requests.patch(f"{url}/api/v1/repos/{repo}", json={"public": False}, auth=("admin", server.admin_password),
                          timeout=10)


def _revoke_token(url: str, server: LiveServer, repo: str, token_id: int) -> requests.Response:
    return requests.delete(f"{url}/api/v1/tokens/{token_id}", auth=("admin", server.admin_password), timeout=10)


@pytest.mark.parametrize("revoke, anonymous_refused, token_refused", [
    (_revoke_file, True, True), (_quarantine, True, True), (_make_private, True, False), (_revoke_token, False, True),
], ids=["file deleted", "project quarantined", "repository made private", "token revoked"])
def test_a_revocation_reaches_every_download_within_the_bound(behind_nginx, revoke, anonymous_refused: bool,
                                                              token_refused: bool) -> None:
    """Downloads nginx sent a moment ago, with credentials and without, and from the group's URLs too: once
    nginx's cache of pypilite's yes has run out, each one is asked again and refused."""
    url, server = behind_nginx
    repo = f"revoked-{revoke.__name__.strip('_').replace('_', '-')}"
    created = requests.post(f"{url}/api/v1/repos", json={"name": repo, "repository_type": "hosted"},
                            auth=("admin", server.admin_password), timeout=10)
    assert created.status_code == 201
    data = wheel_bytes("gone-one", "1.0")
    assert _upload(url, server, repo, data, "gone-one", "1.0").status_code == 200
    token_id, token = _token(url, server)
    file_url = _file_url(url, f"/{repo}/simple/", "gone-one")
    for _ in range(3):
        for auth in (None, token):
            assert requests.get(file_url, auth=auth, timeout=10).content == data
            assert requests.get(file_url + ".metadata", auth=auth, timeout=10).status_code == 200
    assert revoke(url, server, repo, token_id).status_code in (200, 204)
    time.sleep(DECISION_BOUND + 1)
    for auth, refused in ((None, anonymous_refused), (token, token_refused)):
        for answer in (requests.get(file_url, auth=auth, timeout=10),
                       requests.get(file_url + ".metadata", auth=auth, timeout=10)):
            assert (answer.status_code in (401, 404)) == refused, (auth is None, answer.status_code)
            if refused:
                assert answer.content != data


def test_a_group_url_is_refused_within_the_bound_once_its_guard_hides_the_file(behind_nginx) -> None:
    url, server = behind_nginx
    assert requests.get(f"{url}/all/simple/from-upstream/", timeout=10).status_code == 200
    proxied = f"{url}/all/files/up/{PROXIED.sha256}/{PROXIED.filename}"
    for _ in range(3):  # the first streamed by pypilite as it fetches it, then sent by nginx
        served = requests.get(proxied, timeout=30)
        assert served.status_code == 200 and served.content == PROXIED.data  # no hosted namesake yet
    assert _upload(url, server, "local", wheel_bytes("from-upstream", "9.0"), "from-upstream", "9.0").status_code == 200
    time.sleep(DECISION_BOUND + 1)
    guarded = requests.get(proxied, timeout=10)
    assert guarded.status_code == 404 and guarded.content != PROXIED.data


STALLED = 50


def test_fifty_stalled_connections_leave_the_workers_free_for_an_install(behind_nginx, tmp_path: Path,
                                                                          client_env: dict[str, str]) -> None:
    """gunicorn's few sync workers must never wait on a slow client. A third of the sockets never finish their
    headers, a third never finish an API body (with credentials, so pypilite would read it), and a third never
    finish an upload without credentials (which pypilite refuses before reading its body)."""
    url, server = behind_nginx
    credentials = base64.b64encode(f"admin:{server.admin_password}".encode())
    dist = build(make_project(tmp_path, "while-stalled", "1.0"), tmp_path / "dist", client_env)
    run([BIN / "twine", "upload", "--non-interactive", "--repository-url", f"{url}/local/", "-u", "admin",
         "-p", server.admin_password, *dist], env=client_env)
    python = new_venv(tmp_path / "venv", client_env)
    port = int(url.rsplit(":", 1)[1])
    halves = [b"GET /local/simple/ HTTP/1.1\r\nHost: stalled\r\nAccept: text/html\r\n",
              b"POST /api/v1/tokens HTTP/1.1\r\nHost: stalled\r\nContent-Type: application/json\r\n"
              b"Authorization: Basic " + credentials + b"\r\nContent-Length: 100000\r\n\r\n{",
              b"POST /local/ HTTP/1.1\r\nHost: stalled\r\nContent-Length: 10000000\r\n"
              b"Content-Type: multipart/form-data; boundary=x\r\n\r\n--x\r\n"]
    stalled = []
    try:
        for i in range(STALLED):
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.sendall(halves[i % len(halves)])
            stalled.append(sock)
        run([python, "-m", "pip", "install", "--timeout", "20", "--retries", "0", "--index-url",
             f"{url}/local/simple/", "while-stalled"], env=client_env, timeout=120)
    finally:
        for sock in stalled:
            sock.close()


def _answer_to_headers(port: int, head: bytes, spool: Path) -> bytes:
    """What comes back to a request whose headers promise a large body of which only a few bytes come; and,
    while its connection is still open, that nginx spooled none of it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head + b"\r\n" + b"x" * 100)
        answer = sock.recv(4096)
        assert [path for path in spool.rglob("*") if path.is_file()] == []
        return answer


def test_no_large_body_reaches_a_disk_or_a_worker_without_upload_rights(behind_nginx, tmp_path: Path) -> None:
    """Only an upload may be large, and only one its client may make is read: anything else promising 150 MB
    is answered at once, and nginx spools nothing meanwhile."""
    url, server = behind_nginx
    port, spool = int(url.rsplit(":", 1)[1]), server.data_dir.parent / "body"  # nginx_config's temp path
    promise = b"Content-Length: 150000000\r\nHost: big\r\n"
    api = _answer_to_headers(port, b"POST /api/v1/tokens HTTP/1.1\r\nContent-Type: application/json\r\n" + promise,
                             spool)
    assert api.startswith(b"HTTP/1.1 413")  # nginx's own refusal, before the body
    upload = _answer_to_headers(port, b"POST /local/ HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
                                + promise, spool)
    assert upload.startswith(b"HTTP/1.1 401")  # pypilite's, before the body


def _request_from(address: str, port: int, path: str, auth: tuple[str, str], headers: dict[str, str]) -> int:
    """The status of a GET sent from one of this machine's other loopback addresses."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10, source_address=(address, 0))
    try:
        credentials = base64.b64encode(":".join(auth).encode()).decode()
        connection.request("GET", path, headers={**headers, "Authorization": f"Basic {credentials}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_behind_nginx_each_client_is_throttled_and_audited_by_its_own_address(behind_nginx) -> None:
    """Every client is 127.0.0.1 to pypilite here: the address is the X-Forwarded-For hop nginx appended, never
    one a client wrote itself, so one client guessing passwords locks out only itself."""
    url, server = behind_nginx
    port = int(url.rsplit(":", 1)[1])
    guesses = [_request_from("127.0.0.2", port, "/team/simple/", ("admin", f"guess-{i}"),
                             {"X-Forwarded-For": "127.0.0.3"}) for i in range(12)]
    assert guesses[0] == 401 and guesses[-1] == 429
    assert _request_from("127.0.0.3", port, "/team/simple/", ("admin", server.admin_password), {}) == 200
    failed = requests.get(f"{url}/api/v1/admin/audit", params={"q": "login.failed", "limit": 100},
                          auth=("admin", server.admin_password), timeout=10).json()["items"]
    addresses = [event["address"] for event in failed]
    assert addresses.count("127.0.0.2") >= 10 and "127.0.0.3" not in addresses


def _raw(url: str, **headers: str) -> http.client.HTTPResponse:
    """An answer with its body as sent (requests would decode it)."""
    host, port = url.removeprefix("http://").split("/", 1)[0].split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=10)
    connection.request("GET", "/" + url.removeprefix("http://").split("/", 1)[1], headers=headers)
    response = connection.getresponse()
    response.body = response.read()  # type: ignore[attr-defined]
    connection.close()
    return response


def test_compressed_pages_pass_through_nginx_as_pypilite_made_them(behind_nginx) -> None:
    """Through the shipped site, under a host config that compresses everything: a large page comes gzipped
    by pypilite (its strong ETag, its bytes), a small one as it is, and each variant revalidates."""
    url, server = behind_nginx
    for version in ("1.0", "1.1", "1.2", "2.0", "2.1"):
        assert _upload(url, server, "local", wheel_bytes("many-versions", version), "many-versions",
                       version).status_code == 200
    for accept in ("application/vnd.pypi.simple.v1+json", "text/html"):
        page = f"{url}/local/simple/many-versions/"
        plain = _raw(page, Accept=accept, **{"Accept-Encoding": "identity"})
        packed = _raw(page, Accept=accept, **{"Accept-Encoding": "gzip, deflate"})
        direct = _raw(f"{server.url}/local/simple/many-versions/", Accept=accept, **{"Accept-Encoding": "gzip"})
        assert plain.status == packed.status == 200 and plain.getheader("Content-Encoding") is None
        assert packed.getheader("Content-Encoding") == "gzip" and packed.body == direct.body
        assert gzip.decompress(packed.body) == plain.body
        assert packed.getheader("ETag") == direct.getheader("ETag") == plain.getheader("ETag")[:-1] + '-gz"'
        assert "Accept-Encoding" in packed.getheader("Vary")
        for coding, etag in (("gzip", packed.getheader("ETag")), ("identity", plain.getheader("ETag"))):
            again = _raw(page, Accept=accept, **{"Accept-Encoding": coding, "If-None-Match": etag})
            assert again.status == 304 and again.getheader("ETag") == etag
    small = _raw(f"{url}/local/simple/", Accept="text/html", **{"Accept-Encoding": "gzip"})
    assert small.status == 200 and small.getheader("Content-Encoding") is None
    assert not small.getheader("ETag").startswith("W/") and small.body.startswith(b"<!DOCTYPE html>")


def test_the_json_api_through_nginx_names_nginx_and_keeps_private_projects_private(behind_nginx) -> None:
    url, server = behind_nginx
    assert _upload(url, server, "team", wheel_bytes("json-secret", "1.0"), "json-secret", "1.0").status_code == 200
    for path in ("/team/pypi/json-secret/json", "/team/pypi/json-secret/1.0/json", "/team/pypi/absent/json"):
        refused = requests.get(f"{url}{path}", timeout=10)
        assert refused.status_code == 401 and b"json-secret" not in refused.content
        assert refused.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    doc = requests.get(f"{url}/team/pypi/json-secret/json", auth=("admin", server.admin_password), timeout=10).json()
    file_url = doc["urls"][0]["url"]
    assert file_url.startswith(f"{url}/") and doc["info"]["package_url"].startswith(f"{url}/ui/team/")
    assert requests.get(file_url, timeout=10).status_code == 401
    data = requests.get(file_url, auth=("admin", server.admin_password), timeout=10).content
    assert hashlib.sha256(data).hexdigest() == doc["urls"][0]["digests"]["sha256"]


def s3_site(bucket_url: str) -> str:
    """deploy/nginx.conf's S3 variant, made as its comment says: the "#s3 " lines on, the alias off."""
    site = SITE.read_text()
    assert site.count("        alias $pypilite_blob_file;\n") == 1 and "#s3 " in site
    site = site.replace("        alias $pypilite_blob_file;\n", "")
    site = "\n".join(line.removeprefix("#s3 ") for line in site.splitlines())
    return site.replace("http://127.0.0.1:9000/pypilite/blobs/", bucket_url)


def test_nginx_sends_blobs_from_the_bucket(tmp_path: Path, s3_server) -> None:
    """The S3 variant: pypilite decides, nginx reads the blob from the bucket, with Range; the client's
    credentials never reach the store, and the store's own date of the bytes never reaches the client."""
    required(Path(NGINX), "apt-get install nginx-light (.ci/run does)")
    bucket = s3_server.new_bucket()
    # What the site's comment asks of the store: this host may read the prefix without signing, no one else.
    s3_server.client().put_bucket_policy(Bucket=bucket, Policy=json.dumps({"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": "*", "Action": "s3:GetObject", "Resource": f"arn:aws:s3:::{bucket}/blobs/*",
         "Condition": {"IpAddress": {"aws:SourceIp": "127.0.0.1/32"}}}]}))
    repositories = [{"name": "local", "repository_type": "hosted"},
                    {"name": "team", "repository_type": "hosted", "public": False}]
    server = start_server("gunicorn", tmp_path, repositories, settings={
        "PYPILITE_SERVER_X_ACCEL_REDIRECT": LOCATION, **s3_server.settings(bucket, "blobs/")})
    port = free_port()
    config = nginx_config(tmp_path, port, server.url.removeprefix("http://"), server.data_dir,
                          s3_site(f"{s3_server.endpoint}/{bucket}/blobs/"))
    try:
        with running_nginx(tmp_path, config, port) as (url, _):
            auth = ("admin", server.admin_password)
            for repo, name in (("local", "open-one"), ("team", "secret-one")):
                assert _upload(url, server, repo, wheel_bytes(name, "1.0"), name, "1.0").status_code == 200
            data = wheel_bytes("open-one", "1.0")
            file = requests.get(f"{url}/local/simple/open-one/", timeout=10,
                                headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"][0]
            file_url = urljoin(f"{url}/local/simple/open-one/", file["url"]).split("#")[0]
            whole = requests.get(file_url, auth=auth, timeout=30)
            assert whole.status_code == 200 and whole.content == data
            assert file["hashes"]["sha256"] not in whole.headers["ETag"]  # the store's validator: the store sent it
            assert "x-amz-request-id" not in whole.headers and "Set-Cookie" not in whole.headers
            assert parsedate_to_datetime(whole.headers["Last-Modified"]).year > 1970  # the upload's time, pypilite's
            part = requests.get(file_url, headers={"Range": "bytes=10-19"}, timeout=10)
            assert part.status_code == 206 and part.content == data[10:20]
            secret = requests.get(f"{url}/team/simple/secret-one/", auth=auth, timeout=10,
                                  headers={"Accept": "application/vnd.pypi.simple.v1+json"}).json()["files"][0]
            secret_url = urljoin(f"{url}/team/simple/secret-one/", secret["url"]).split("#")[0]
            assert requests.get(secret_url, timeout=10).status_code == 401
            assert requests.get(secret_url, auth=auth, timeout=10).content == wheel_bytes("secret-one", "1.0")
    finally:
        stop_server(server.process)
