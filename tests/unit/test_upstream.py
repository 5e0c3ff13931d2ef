"""The upstream client's pieces: page parsing (JSON and HTML), the default index, redaction, named locks."""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime

import pytest

from pypilite import markers, upstream
from pypilite.locks import FileLock, LockTimeout
from pypilite.markers import Markers
from pypilite.upstream import UpstreamError, parse_page, redact

BASE = "https://mirror.example/simple/demo/"
SHA = "a" * 64


def test_json_page_keeps_every_field_and_resolves_urls() -> None:
    body = json.dumps({"meta": {"api-version": "1.1"}, "name": "demo", "files": [
        {"filename": "demo-1.0-py3-none-any.whl", "url": "../../packages/demo-1.0-py3-none-any.whl",
         "hashes": {"sha256": SHA.upper()}, "requires-python": ">=3.9", "yanked": "broken build",
         "core-metadata": {"sha256": "b" * 64}, "size": 1234, "upload-time": "2024-01-02T03:04:05.678Z"},
        {"filename": "demo-1.1.tar.gz", "url": "https://files.example/demo-1.1.tar.gz", "hashes": {},
         "dist-info-metadata": True, "yanked": True},
    ]}).encode()
    first, second = parse_page(body, "application/vnd.pypi.simple.v1+json", BASE).files
    assert first.url == "https://mirror.example/packages/demo-1.0-py3-none-any.whl"
    assert (first.sha256, first.requires_python, first.yanked, first.yanked_reason) == (SHA, ">=3.9", True,
                                                                                       "broken build")
    assert (first.metadata_sha256, first.size) == ("b" * 64, 1234)
    assert first.upload_time == datetime(2024, 1, 2, 3, 4, 5, 678000)
    assert (second.sha256, second.metadata_sha256, second.yanked, second.yanked_reason) == (None, None, True, "")


def test_html_page_reads_anchors_with_entities() -> None:
    body = (b'<html><body><a href="../../f/demo-1.0.tar.gz#sha256=' + SHA.encode() +
            b'" data-requires-python="&gt;=3.8,&lt;4" data-yanked="" '
            b'data-dist-info-metadata="sha256=' + b"c" * 64 + b'">demo-1.0.tar.gz</a>'
            b'<a href="demo-2.0.tar.gz#md5=abc">demo-2.0.tar.gz</a></body></html>')
    first, second = parse_page(body, "text/html; charset=utf-8", BASE).files
    assert first.url == "https://mirror.example/f/demo-1.0.tar.gz"
    assert (first.sha256, first.requires_python, first.yanked, first.metadata_sha256) == (
        SHA, ">=3.8,<4", True, "c" * 64)
    assert (second.sha256, second.yanked, second.size, second.upload_time) == (None, False, None, None)


def _json_page(**fields) -> bytes:
    return json.dumps({"meta": {"api-version": "1.4", **fields.pop("meta", {})}, "name": "demo", "files": [
        {"filename": "demo-1.0.tar.gz", "url": "demo-1.0.tar.gz", "hashes": {"sha256": SHA},
         "provenance": fields.pop("provenance", None)}], **fields}).encode()


def test_json_page_passes_on_status_tracks_alternates_and_provenance() -> None:
    body = _json_page(meta={"tracks": ["https://other.example/simple/demo/"]},
                      **{"project-status": {"status": "archived", "reason": "moved to demo2"},
                         "alternate-locations": ["https://alt.example/simple/demo/", "../other/"],
                         "provenance": "demo-1.0.tar.gz.provenance"})
    page = parse_page(body, "application/vnd.pypi.simple.v1+json", BASE)
    assert page.markers == Markers("archived", "moved to demo2", ("https://other.example/simple/demo/",),
                                   ("https://alt.example/simple/demo/",))  # the upstream's own host is not passed on
    assert page.files[0].provenance_url == "https://mirror.example/simple/demo/demo-1.0.tar.gz.provenance"


def test_html_page_passes_on_the_same_from_meta_elements() -> None:
    body = (b'<html><head><meta name="pypi:repository-version" content="1.4">'
            b'<meta name="pypi:project-status" content="quarantined">'
            b'<meta name="pypi:project-status-reason" content="malware &amp; worse">'
            b'<meta name="pypi:tracks" content="https://other.example/simple/demo/">'
            b'<meta name="pypi:alternate-locations" content="https://a.example/simple/demo/">'
            b'<meta name="pypi:alternate-locations" content="https://b.example/simple/demo/"></head><body>'
            b'<a href="demo-1.0.tar.gz#sha256=' + SHA.encode() + b'" data-provenance="https://p.example/x">'
            b'demo-1.0.tar.gz</a></body></html>')
    page = parse_page(body, "text/html", BASE)
    assert page.markers == Markers("quarantined", "malware & worse", ("https://other.example/simple/demo/",),
                                   ("https://a.example/simple/demo/", "https://b.example/simple/demo/"))
    assert page.files[0].provenance_url == "https://p.example/x"


@pytest.mark.parametrize("fields", [
    {"project-status": {"status": "evil"}},
    {"project-status": {"status": ["archived"]}},
    {"project-status": "archived"},
    {"project-status": {"status": "ACTIVE"}},
])
def test_a_status_pep_792_does_not_name_counts_as_none(fields) -> None:
    assert parse_page(_json_page(**fields), "application/vnd.pypi.simple.v1+json", BASE).markers == Markers()


def test_hostile_reasons_urls_and_provenance_are_bounded_or_dropped() -> None:
    urls = ["javascript:alert(1)", "file:///etc/passwd", "https://user:pw@x.example/simple/demo/",
            "https://x.example/" + "a" * 5000, "https://bad\nline.example/", 42, None, {"url": "x"},
            *(f"https://m{i}.example/simple/demo/" for i in range(100))]
    body = _json_page(meta={"tracks": urls}, **{
        "project-status": {"status": "deprecated", "reason": "x\n" * 5000},
        "alternate-locations": "https://not-a-list.example/", "provenance": "ftp://p.example/x"})
    page = parse_page(body, "application/vnd.pypi.simple.v1+json", BASE)
    assert page.markers.status == "deprecated"
    assert len(page.markers.status_reason) == markers.MAX_REASON and page.markers.status_reason.isprintable()
    assert page.markers.tracks == tuple(f"https://m{i}.example/simple/demo/" for i in range(markers.MAX_URLS))
    assert page.markers.alternate_locations == ()
    assert page.files[0].provenance_url == ""


@pytest.mark.parametrize("body, content_type", [
    (b"{not json", "application/vnd.pypi.simple.v1+json"),
    (b'{"files": [{"url": "x"}]}', "application/vnd.pypi.simple.v1+json"),
    (b'{"no files": []}', "application/vnd.pypi.simple.v1+json"),
    (b'{"files": ' + b"[" * 200_000 + b"]" * 200_000 + b"}", "application/vnd.pypi.simple.v1+json"),  # too deep
])
def test_unparseable_pages_are_upstream_errors(body: bytes, content_type: str) -> None:
    with pytest.raises(UpstreamError, match="cannot be parsed"):
        parse_page(body, content_type, BASE)


@pytest.mark.parametrize("content_type, entry", [
    ("application/vnd.pypi.simple.v1+json", b'{"filename": "a", "url": "a"}, '),
    ("text/html", b'<a href="a">a</a>'),
])
def test_a_page_of_more_files_than_any_project_has_is_refused(monkeypatch, content_type: str, entry: bytes) -> None:
    monkeypatch.setattr(upstream, "MAX_PAGE_FILES", 10)
    body = entry * 11
    if content_type != "text/html":
        body = b'{"files": [' + body.rstrip(b", ") + b"]}"
    with pytest.raises(UpstreamError, match="more than 10 files"):
        parse_page(body, content_type, BASE)


@pytest.mark.parametrize("url, shown", [
    ("https://user:s3cret@mirror.example:8443/simple/", "https://***@mirror.example:8443/simple/"),
    ("https://TOKEN@mirror.example/simple/", "https://***@mirror.example/simple/"),  # a token as the user
    ("https://to:k@en@mirror.example/simple/?a=b@c", "https://***@mirror.example/simple/?a=b@c"),
    ("http://[not-an-address@mirror.example/", "http://***@mirror.example/"),  # no parser error lets it out
    ("https://mirror.example/simple/a@b", "https://mirror.example/simple/a@b"),
    ("", ""),
])
def test_redact_hides_the_whole_userinfo(url: str, shown: str) -> None:
    assert redact(url) == shown


def test_default_index_is_what_pip_is_configured_with(monkeypatch, tmp_path) -> None:
    config = tmp_path / "pip.conf"
    config.write_text("[global]\nindex-url = http://127.0.0.1:3141/root/pypi/+simple/\n")
    monkeypatch.setenv("PIP_CONFIG_FILE", str(config))
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    upstream.pip_index_url.cache_clear()
    try:
        assert upstream.pip_index_url() == "http://127.0.0.1:3141/root/pypi/+simple/"
        monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9999/simple/")
        upstream.pip_index_url.cache_clear()
        assert upstream.pip_index_url() == "http://127.0.0.1:9999/simple/"
    finally:
        upstream.pip_index_url.cache_clear()


def test_without_configuration_pip_s_own_default_is_used(monkeypatch) -> None:
    monkeypatch.setenv("PIP_CONFIG_FILE", "/dev/null")
    monkeypatch.delenv("PIP_INDEX_URL", raising=False)
    upstream.pip_index_url.cache_clear()
    try:
        from pip._internal.models.index import PyPI
        assert upstream.pip_index_url() == PyPI.simple_url
    finally:
        upstream.pip_index_url.cache_clear()


def test_file_lock_excludes_other_holders_and_cleans_up(tmp_path) -> None:
    held = FileLock(tmp_path, "one").acquire(1)
    with pytest.raises(LockTimeout):
        FileLock(tmp_path, "one").acquire(0.1)
    with FileLock(tmp_path, "two").acquire(0.1):
        pass
    released_at = []

    def waiter() -> None:
        with FileLock(tmp_path, "one").acquire(5):
            released_at.append(time.monotonic())

    thread = threading.Thread(target=waiter)
    thread.start()
    time.sleep(0.2)
    release = time.monotonic()
    held.release()
    thread.join(5)
    assert released_at and released_at[0] >= release
    assert list(tmp_path.iterdir()) == []
