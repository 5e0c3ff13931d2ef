"""The upstream client's guard, in-process: which addresses a connection may reach, TLS checked against the
name while the connection goes to the checked address, credentials kept to remote_url's own origin across
redirects, a proxy from the environment, and the UI's metadata of a proxied file following its bytes."""

from __future__ import annotations

import http.server
import json
import shutil
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from requests.adapters import BaseAdapter

from pypilite.upstream import MAX_REDIRECTS, PrivateAddress, Sessions, Upstream, UpstreamError, make_session
from tests.unit.test_proxy import JSON, proxy_index
from tests.upstream import Upstream as FakeUpstream
from tests.upstream import wheel

MB = 1024 * 1024
NOT_HTTP = r"not http\(s\)"


@pytest.mark.parametrize("url", ["http://127.0.0.2:9/", "http://localhost:9/", "http://[::1]:9/",
                                 "http://[::ffff:127.0.0.2]:9/", "http://0.0.0.0:9/", "http://10.1.2.3:9/",
                                 "http://169.254.169.254/latest/meta-data/", "http://[fe80::1]:9/",
                                 "http://100.64.0.1/", "http://127.0.0.1:10/",
                                 # IPv6 that a gateway turns into a private IPv4: NAT64, 6to4
                                 "http://[64:ff9b::7f00:1]:9/", "http://[2002:7f00:1::]:9/"])
def test_a_connection_to_anything_but_a_global_address_or_the_allowed_origin_is_refused(url: str) -> None:
    with pytest.raises(PrivateAddress):  # refused before any packet leaves: nothing listens on these
        make_session(("127.0.0.1", 9)).get(url, timeout=2)


def test_the_allowed_origin_is_reached_wherever_it_is(tmp_path) -> None:
    served = FakeUpstream(tmp_path, [wheel("demo", "1.0")], json_api=True).start()
    try:
        session = make_session(("127.0.0.1", served.port))
        assert session.get(f"http://127.0.0.1:{served.port}/simple/demo/", timeout=5).status_code == 200
        assert Sessions().get(("a", 1)) is not Sessions().get(("b", 1))
    finally:
        served.stop()


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An https server on 127.0.0.1 whose certificate names `localhost` only."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], cert
    server.shutdown()
    server.server_close()


def test_tls_is_verified_against_the_name_while_the_checked_address_is_dialled(tls_server) -> None:
    port, cert = tls_server
    assert make_session(("localhost", port)).get(f"https://localhost:{port}/", verify=str(cert),
                                                 timeout=5).content == b"ok"
    with pytest.raises(requests.exceptions.SSLError):  # the certificate does not name the address
        make_session(("127.0.0.1", port)).get(f"https://127.0.0.1:{port}/", verify=str(cert), timeout=5)


class Recorder(BaseAdapter):
    """A transport that answers from a table, by URL, and records what was sent."""

    def __init__(self, answers: dict[str, tuple[int, dict[str, str], bytes]]) -> None:
        super().__init__()
        self.answers = answers
        self.sent: list[requests.PreparedRequest] = []

    def send(self, request: requests.PreparedRequest, **kwargs) -> requests.Response:
        self.sent.append(request)
        status, headers, body = self.answers.get(request.url, (404, {}, b""))
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response.headers.update(headers)
        response.raw = _Raw(body)
        return response

    def close(self) -> None:
        pass


class _Raw:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        chunk, self.body = self.body[:amount], self.body[amount:]
        return chunk

    def release_conn(self) -> None:
        pass

    def close(self) -> None:
        pass


def recorded(root: str, answers: dict[str, tuple[int, dict[str, str], bytes]]) -> tuple[Upstream, Recorder]:
    upstream = Upstream(Sessions(), root, 5, "pypi", MB)
    recorder = Recorder(answers)
    upstream.session.mount("https://", recorder)
    upstream.session.mount("http://", recorder)
    return upstream, recorder


def test_credentials_go_to_remote_url_s_origin_only() -> None:
    page = json.dumps({"files": [{"filename": "demo-1.0.tar.gz", "url": "https://evil:x@mirror.example/f/demo",
                                  "hashes": {"sha256": "a" * 64}}]}).encode()
    upstream, recorder = recorded("https://tok@mirror.example/simple/", {
        "https://mirror.example/simple/demo/": (302, {"Location": "https://cdn.example/demo/"}, b""),
        "https://cdn.example/demo/": (200, {"Content-Type": JSON}, page),
        "https://mirror.example/f/demo": (302, {"Location": "http://mirror.example/f/demo"}, b""),
    })
    [file] = upstream.fetch_page("demo").files
    assert file.url == "https://evil:x@mirror.example/f/demo"
    with pytest.raises(UpstreamError, match="answered 404 for a file"):
        upstream.download(file.url)
    sent = [(r.url, r.headers.get("Authorization")) for r in recorder.sent]
    token = requests.auth._basic_auth_str("tok", "")
    assert sent == [("https://mirror.example/simple/demo/", token), ("https://cdn.example/demo/", None),
                    ("https://mirror.example/f/demo", token),  # the page's own userinfo never travels
                    ("http://mirror.example/f/demo", None)]  # another scheme, another origin


@pytest.mark.parametrize("location, refusal", [
    ("ftp://mirror.example/f", NOT_HTTP), ("file:///etc/passwd", NOT_HTTP),
    ("http://mirror.example:99999/f", NOT_HTTP), ("/loop", f"redirected more than {MAX_REDIRECTS} times"),
])
def test_every_hop_is_checked(location: str, refusal: str) -> None:
    upstream, recorder = recorded("https://mirror.example/simple/", {
        "https://mirror.example/start": (301, {"Location": location}, b""),
        "https://mirror.example/loop": (307, {"Location": "/loop"}, b"")})
    with pytest.raises(UpstreamError, match=refusal) as refused:
        upstream.download("https://mirror.example/start")
    message = str(refused.value)
    assert message.startswith("upstream of repository 'pypi' ") and "mirror.example" not in message
    assert len(recorder.sent) <= MAX_REDIRECTS + 1


def test_a_redirect_s_body_is_never_read() -> None:
    """It may be endless: requests reads it whole even for a redirect it does not follow."""
    upstream, recorder = recorded("https://mirror.example/simple/", {
        "https://mirror.example/start": (302, {"Location": "/file"}, b""),
        "https://mirror.example/file": (200, {}, b"the file")})
    original = recorder.send

    def endless_redirects(request: requests.PreparedRequest, **kwargs) -> requests.Response:
        response = original(request, **kwargs)
        if response.status_code == 302:
            response.raw = Endless()
        return response

    recorder.send = endless_redirects  # type: ignore[method-assign]
    chunks, _ = upstream.download("https://mirror.example/start")
    assert b"".join(chunks) == b"the file"


class Endless(_Raw):
    def __init__(self) -> None:
        super().__init__(b"")

    def read1(self, amount: int, decode_content: bool = True) -> bytes:
        raise AssertionError("a redirect's body was read")

    read = stream = read1


def test_through_a_proxy_a_private_target_is_refused_before_the_proxy_hears_of_it(tmp_path) -> None:
    proxy = FakeUpstream(tmp_path, [], json_api=True).start()
    try:
        upstream = Upstream(Sessions(), f"http://127.0.0.1:{proxy.port}/simple/", 5, "pypi", MB)
        upstream.session.proxies = {"http": f"http://127.0.0.1:{proxy.port}"}
        with pytest.raises(UpstreamError, match="private or local address"):
            upstream.download("http://169.254.169.254/latest/meta-data/")
        assert proxy.log.requests == []
        with pytest.raises(UpstreamError, match="answered 404"):  # the proxy (a plain server here) knows no such URL
            upstream.download(f"http://127.0.0.1:{proxy.port}/files/x.whl")
        assert [path for path, _ in proxy.log.requests] == [f"http://127.0.0.1:{proxy.port}/files/x.whl"]
    finally:
        proxy.stop()


def test_the_ui_metadata_of_a_proxied_file_follows_its_bytes(tmp_path) -> None:
    served = FakeUpstream(tmp_path / "upstream", [wheel("demo", "1.0")], json_api=True).start()
    try:
        index = proxy_index(tmp_path, served, cache_ttl=0)
        [file] = index.get("/pypi/simple/demo/", accept=JSON).json["files"]
        assert index.get("/" + file["url"].lstrip("./")).data == served.dists[0].data  # read to the end
        [row] = index.file_rows()
        assert row.info_sha256 == file["core-metadata"]["sha256"]  # the wheel's METADATA, taken out of it
        index.get("/pypi/simple/demo/", accept=JSON)  # refreshed, unchanged: it stays
        assert [r.info_sha256 for r in index.file_rows()] == [row.info_sha256]
        served.dists[0] = wheel("demo", "1.0", requires_python=">=3.9")  # other bytes under the same name
        index.get("/pypi/simple/demo/", accept=JSON)
        assert [(r.sha256, r.info_sha256) for r in index.file_rows()] == [(served.dists[0].sha256, None)]
    finally:
        served.stop()


def test_a_proxied_file_whose_metadata_cannot_be_read_is_still_served(tmp_path) -> None:
    served = FakeUpstream(tmp_path / "upstream", [wheel("demo", "1.0")], json_api=True).start()
    served.dists[0].data = b"not a zip archive"
    served.dists[0].metadata = None
    try:
        (served.root / "files" / served.dists[0].filename).write_bytes(served.dists[0].data)
        index = proxy_index(tmp_path, served)
        [file] = index.get("/pypi/simple/demo/", accept=JSON).json["files"]
        response = index.get("/" + file["url"].lstrip("./"))
        assert response.status_code == 200 and response.data == b"not a zip archive"
        assert [r.info_sha256 for r in index.file_rows()] == [None]
    finally:
        served.stop()

