"""Compressed pages: gzip when the client prefers it, the same bytes once decoded, an ETag of their own, 304s
for each variant, compressed once per page version, and files never touched."""

from __future__ import annotations

import gzip
import time
from urllib.parse import urljoin

import pytest

from pypilite.web import encoding
from tests import conftest
from tests.conftest import Index
from tests.distfactory import wheel_bytes
from tests.unit.test_memo import Spy
from tests.unit.test_simple import HTML1, JSON, PIP_ACCEPT, populate

GZIP = {"Accept-Encoding": "gzip"}
PAGES = [("/local/simple/demo/", JSON), ("/local/simple/demo/", HTML1), ("/local/simple/demo/", "text/html"),
         ("/simple/demo/", PIP_ACCEPT), ("/local/simple/", JSON), ("/all/simple/demo/", JSON)]


@pytest.fixture(scope="module")
def populated(module_index: Index) -> Index:
    populate(module_index)
    for number in range(20):  # a root index large enough to be worth compressing
        name = f"filler_with_a_name_long_enough_to_fill_a_root_index_{number}"
        module_index.upload(f"{name}-1.0-py3-none-any.whl", wheel_bytes(name, "1.0"))
    return module_index


@pytest.mark.parametrize("url, accept", PAGES)
def test_a_compressed_page_decodes_to_the_same_bytes_under_its_own_etag(populated: Index, url: str,
                                                                        accept: str) -> None:
    plain = populated.get(url, accept=accept)
    packed = populated.get(url, accept=accept, headers=dict(GZIP))
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain.headers and packed.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(packed.get_data()) == plain.get_data()
    assert len(packed.get_data()) < len(plain.get_data()) and int(packed.headers["Content-Length"]) == len(
        packed.get_data())
    for response in (plain, packed):
        assert response.headers["Vary"] == "Accept, Accept-Encoding"
        assert response.headers["Content-Type"] == plain.headers["Content-Type"]
    assert packed.headers["ETag"] == plain.headers["ETag"][:-1] + '-gz"'


@pytest.mark.parametrize("url, accept", PAGES)
def test_each_variant_revalidates_with_its_own_etag(populated: Index, url: str, accept: str) -> None:
    plain = populated.get(url, accept=accept)
    packed = populated.get(url, accept=accept, headers=dict(GZIP))
    for headers, etag in ((GZIP, packed.headers["ETag"]), ({}, plain.headers["ETag"])):
        again = populated.get(url, accept=accept, headers={**headers, "If-None-Match": etag})
        assert again.status_code == 304 and again.get_data() == b"" and again.headers["ETag"] == etag
        assert "Content-Encoding" not in again.headers and again.headers["Vary"] == "Accept, Accept-Encoding"
    # A client that takes only identity cannot hold the gzip variant: that ETag names nothing it may have.
    other = populated.get(url, accept=accept, headers={"If-None-Match": packed.headers["ETag"]})
    assert other.status_code == 200 and other.headers["ETag"] == plain.headers["ETag"]


@pytest.mark.parametrize("accept_encoding, compressed", [
    ("gzip", True), ("gzip, deflate, br", True), ("br;q=1.0, gzip;q=0.8, *;q=0.1", True), ("*", True),
    ("GZIP", True), ("", False), ("identity", False), ("gzip;q=0", False), ("gzip;q=0, identity", False),
    ("gzip;q=0.5, identity", False), ("br, zstd", False), ("deflate", False), ("gzip;q=garbage,,;;", False),
])
def test_gzip_is_sent_when_the_client_prefers_it(populated: Index, accept_encoding: str, compressed: bool) -> None:
    response = populated.get("/local/simple/demo/", accept=JSON, headers={"Accept-Encoding": accept_encoding})
    assert response.status_code == 200
    assert (response.headers.get("Content-Encoding") == "gzip") is compressed
    body = gzip.decompress(response.get_data()) if compressed else response.get_data()
    assert body.startswith(b'{"meta"')


def test_a_tiny_page_goes_out_as_it_is_and_revalidates_for_either_client(populated: Index) -> None:
    plain = populated.get("/local/simple/other-thing/", accept=JSON)
    assert len(plain.get_data()) < encoding.MIN_SIZE
    packed = populated.get("/local/simple/other-thing/", accept=JSON, headers=dict(GZIP))
    assert "Content-Encoding" not in packed.headers and packed.get_data() == plain.get_data()
    assert packed.headers["ETag"] == plain.headers["ETag"]
    again = populated.get("/local/simple/other-thing/", accept=JSON,
                          headers={**GZIP, "If-None-Match": plain.headers["ETag"]})
    assert again.status_code == 304


def test_head_says_what_get_sends(populated: Index) -> None:
    get = populated.get("/local/simple/demo/", accept=JSON, headers=dict(GZIP))
    head = populated.client.head("/local/simple/demo/", headers={"Accept": JSON, **GZIP})
    assert head.status_code == 200 and head.get_data() == b""
    for name in ("Content-Encoding", "Content-Length", "ETag", "Vary", "Content-Type"):
        assert head.headers[name] == get.headers[name]


def test_files_and_metadata_are_never_compressed(populated: Index) -> None:
    page = populated.get("/local/simple/demo/", accept=JSON).json
    for file in page["files"]:
        url = urljoin("/local/simple/demo/", file["url"].split("#")[0])
        for suffix in ("", ".metadata") if file["core-metadata"] else ("",):
            response = populated.client.get(url + suffix, headers=dict(GZIP))
            assert response.status_code == 200 and "Content-Encoding" not in response.headers


def test_a_page_is_compressed_once_per_version_and_remembered_per_coding(populated: Index, monkeypatch) -> None:
    calls: list[int] = []
    original = encoding.compress
    monkeypatch.setattr(encoding, "compress", lambda body: calls.append(len(body)) or original(body))
    url = "/local/simple/grows/"
    for version in ("1.0", "1.1", "1.2", "1.2.1"):
        populated.upload(f"grows-{version}-py3-none-any.whl", wheel_bytes("grows", version))
    spy = Spy(populated)
    plain = populated.get(url, accept=JSON)
    packed = [populated.get(url, accept=JSON, headers={"Accept-Encoding": value})
              for value in ("gzip", "gzip, deflate", "deflate, gzip", "gzip")]
    assert len(calls) == 1  # the other workers' way: the page cache's compressed bytes, by ETag
    # The last one again from the memo, which keeps each coding apart; PostgreSQL has no memo.
    assert spy.calls == (4 if conftest.ENGINE == "sqlite" else 5)
    assert all(response.get_data() == packed[0].get_data() for response in packed)
    assert populated.get(url, accept=JSON).get_data() == plain.get_data()
    populated.upload("grows-1.3-py3-none-any.whl", wheel_bytes("grows", "1.3"))
    newer = populated.get(url, accept=JSON, headers=dict(GZIP))
    assert len(calls) == 2 and newer.headers["ETag"] != packed[0].headers["ETag"]
    assert b"grows-1.3" in gzip.decompress(newer.get_data())


def test_compression_is_deterministic(monkeypatch) -> None:
    body = b"x" * 5000
    first = encoding.compress(body)
    monkeypatch.setattr(time, "time", lambda: 2_000_000_000.0)  # another second, another worker
    assert encoding.compress(body) == first and first[4:8] == b"\0\0\0\0"  # no time in the header
