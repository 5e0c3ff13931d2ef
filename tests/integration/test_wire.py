"""What pypilite tells clients on the wire, against the real server: gzip-compressed pages that pip and uv
install through."""

from __future__ import annotations

import gzip
import hashlib
import sys
from pathlib import Path

import pytest
import requests

from tests.distfactory import wheel_bytes
from tests.integration.conftest import LiveServer, new_venv, run, uv

JSON = "application/vnd.pypi.simple.v1+json"
VERSIONS = ("1.0", "1.1", "1.2", "2.0", "2.1")


def upload(live: LiveServer, data: bytes, filename: str, name: str, version: str, repo: str = "local") -> None:
    fields = {":action": "file_upload", "protocol_version": "1", "name": name, "version": version,
              "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    response = requests.post(f"{live.url}/{repo}/", data=fields, files={"content": (filename, data)},
                             auth=("admin", live.admin_password), timeout=30)
    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def wire(live: LiveServer) -> LiveServer:
    for version in VERSIONS:
        upload(live, wheel_bytes("wire-demo", version), f"wire_demo-{version}-py3-none-any.whl", "wire-demo", version)
    return live


def raw(url: str, **headers: str) -> requests.Response:
    """The answer with its body as sent: requests would decode it."""
    response = requests.get(url, headers=headers, timeout=10, stream=True)
    response.body = response.raw.read(decode_content=False)  # type: ignore[attr-defined]
    return response


@pytest.mark.parametrize("accept", [JSON, "text/html"])
def test_pages_go_out_compressed_and_decode_to_the_same_bytes(wire: LiveServer, accept: str) -> None:
    url = f"{wire.url}/local/simple/wire-demo/"
    plain = raw(url, Accept=accept, **{"Accept-Encoding": "identity"})
    packed = raw(url, Accept=accept, **{"Accept-Encoding": "gzip, deflate"})  # what pip's requests sends
    assert "Content-Encoding" not in plain.headers and packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.body) == plain.body and len(packed.body) < len(plain.body)
    assert packed.headers["ETag"] != plain.headers["ETag"]
    for coding, etag in (("gzip", packed.headers["ETag"]), ("identity", plain.headers["ETag"])):
        again = raw(url, Accept=accept, **{"Accept-Encoding": coding, "If-None-Match": etag})
        assert again.status_code == 304 and again.headers["ETag"] == etag and again.body == b""


def test_pip_installs_through_compressed_pages(wire: LiveServer, client_env, tmp_path: Path) -> None:
    python = new_venv(tmp_path / "venv", client_env)
    run([python, "-m", "pip", "install", "--index-url", wire.simple("local"), "wire-demo<2.1"], env=client_env)
    result = run([python, "-c", "import wire_demo; print(wire_demo.VERSION)"], env=client_env)
    assert result.stdout.strip() == "2.0"


def test_uv_installs_through_compressed_pages(wire: LiveServer, client_env, tmp_path: Path) -> None:
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=client_env)
    run([uv(), "pip", "install", "--python", venv / "bin" / "python", "--index-url", wire.simple("local"),
         "wire-demo<2.1"], env=client_env)
    result = run([venv / "bin" / "python", "-c", "import wire_demo; print(wire_demo.VERSION)"], env=client_env)
    assert result.stdout.strip() == "2.0"


def test_the_json_api_answers_for_a_hosted_project(wire: LiveServer) -> None:
    response = requests.get(f"{wire.url}/local/pypi/wire-demo/json", timeout=10)
    assert response.status_code == 200
    doc = response.json()
    assert doc["info"]["version"] == "2.1" and list(doc["releases"]) == list(VERSIONS)
    assert doc["info"]["name"] == "wire-demo" and doc["info"]["summary"] == "a test package"
    page = requests.get(f"{wire.url}/local/simple/wire-demo/", headers={"Accept": JSON}, timeout=10)
    assert doc["last_serial"] == int(response.headers["X-PyPI-Last-Serial"]) == int(page.headers["X-PyPI-Last-Serial"])
    for file in doc["urls"]:
        assert file["url"].startswith(f"{wire.url}/")
        data = requests.get(file["url"], timeout=10).content
        assert hashlib.sha256(data).hexdigest() == file["digests"]["sha256"]
    again = requests.get(f"{wire.url}/local/pypi/wire-demo/1.1/json", timeout=10,
                         headers={"If-None-Match": requests.get(f"{wire.url}/local/pypi/wire-demo/1.1/json",
                                                                timeout=10).headers["ETag"]})
    assert again.status_code == 304 and again.headers["X-PyPI-Last-Serial"] == response.headers["X-PyPI-Last-Serial"]


def test_a_forged_host_never_reaches_another_clients_document(wire: LiveServer) -> None:
    """What one client says its address is goes into its own answer only: the document is kept (in every
    worker) under an ETag that names the address, so the next client gets URLs of its own address."""
    for _ in range(4):  # gunicorn's two workers each see it
        forged = requests.get(f"{wire.url}/local/pypi/wire-demo/json", headers={"Host": "evil.example"}, timeout=10)
        assert forged.json()["urls"][0]["url"].startswith("http://evil.example/")
    for _ in range(4):
        honest = requests.get(f"{wire.url}/local/pypi/wire-demo/json", timeout=10).json()
        assert all(file["url"].startswith(f"{wire.url}/") for file in honest["urls"])
        assert honest["info"]["package_url"].startswith(f"{wire.url}/")
