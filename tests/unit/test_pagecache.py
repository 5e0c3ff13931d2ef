"""The rendered-page cache: bounded by bytes, least recently used out first, and keyed so that a change
anywhere is a new key (checked here through the app: a hit is never a stale page)."""

from __future__ import annotations

from pypilite.web.pagecache import PageCache
from tests.conftest import Index
from tests.distfactory import wheel_bytes


def test_evicts_least_recently_used_beyond_its_size() -> None:
    cache = PageCache(max_bytes=400)
    for key in "abcdefgh":
        cache.put(key, b"x" * 50)
    cache.get("a")
    cache.put("i", b"y" * 50)
    assert [k for k in "abcdefghi" if cache.get(k) is None] == ["b"]


def test_a_page_too_large_for_it_is_not_kept() -> None:
    cache = PageCache(max_bytes=80)
    cache.put("small", b"s")
    cache.put("huge", b"h" * 11)
    assert cache.get("huge") is None and cache.get("small") == b"s"


def test_hits_never_outlive_a_change(index: Index) -> None:
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    first = index.get("/local/simple/demo/", accept="application/vnd.pypi.simple.v1+json")
    assert index.get("/local/simple/demo/", accept="application/vnd.pypi.simple.v1+json").data == first.data
    index.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"))
    after = index.get("/local/simple/demo/", accept="application/vnd.pypi.simple.v1+json")
    assert after.json["versions"] == ["1.0", "2.0"] and after.headers["ETag"] != first.headers["ETag"]
