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
