"""The memo of answers: a repeated request gets the very answer Flask gave, without Flask, and only while
nothing that answer depends on has changed."""

from __future__ import annotations

import hashlib
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urljoin

import pytest
from flask import request

from pypilite import grants, tokens, users
from pypilite.audit import Actor
from pypilite.models import utcnow
from pypilite.web import memo as memo_module
from pypilite.web.memo import Memo
from tests.conftest import Index, basic
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

ACTOR = Actor("test", "local")
# The memo is SQLite-only: its change marker is PRAGMA data_version (on PostgreSQL: test_postgresql.py).
pytestmark = pytest.mark.sqlite_only
JSON = "application/vnd.pypi.simple.v1+json"


class Spy:
    """Counts the requests that reach Flask behind the memo."""

    def __init__(self, index: Index) -> None:
        self.memo: Memo = index.app.wsgi_app
        self.flask = self.memo.app
        self.calls = 0
        self.memo.app = self

    def __call__(self, environ, start_response):
        self.calls += 1
        return self.flask(environ, start_response)


def epoch(moment: datetime) -> float:
    return moment.replace(tzinfo=UTC).timestamp()


def answer(index: Index, url: str, method: str = "GET", **headers: str) -> tuple[int, list, bytes]:
    response = index.client.open(url, method=method, headers=headers)
    return response.status_code, sorted(response.headers.items()), response.get_data()


def twice(index: Index, spy: Spy, url: str, **headers: str) -> tuple[int, list, bytes]:
    """The answer, asked twice: the second must come from the memo and equal the first."""
    first = answer(index, url, **headers)
    calls = spy.calls
    assert answer(index, url, **headers) == first
    assert spy.calls == calls, f"{url} reached Flask again"
    return first


@pytest.fixture
def index(tmp_path: Path) -> Index:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "team", "repository_type": "hosted", "public": False},
        {"name": "all", "repository_type": "group", "members": ["team", "local"], "upload_to": "local"}]})
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    assert index.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"), repo="team").status_code == 200
    return index


def file_url(index: Index, repo: str, project: str = "demo", **headers: str) -> str:
    file = index.get(f"/{repo}/simple/{project}/", accept=JSON, headers=headers).json["files"][-1]
    return f"/files/{repo}/{file['hashes']['sha256']}/{file['filename']}"


@pytest.mark.parametrize("url, headers", [
    ("/local/simple/demo/", {}),
    ("/local/simple/demo/", {"Accept": JSON}),
    ("/local/simple/demo/?format=application/vnd.pypi.simple.v1%2Bjson", {}),
    ("/simple/demo/", {}),
    ("/local/simple/", {"Accept": JSON}),
    ("/all/simple/demo/", {}),
    ("/all/simple/demo/", {"auth": "admin"}),
    ("/team/simple/", {"auth": "admin"}),
])
def test_a_repeated_page_request_gets_the_same_answer_without_flask(index: Index, url: str, headers: dict) -> None:
    if headers.pop("auth", None):
        headers.update(index.auth)
    spy = Spy(index)
    status, sent, body = twice(index, spy, url, **headers)
    assert status == 200 and body
    etag = dict(sent)["ETag"]
    status, sent, body = twice(index, spy, url, **headers, **{"If-None-Match": etag})
    assert status == 304 and body == b"" and dict(sent)["ETag"] == etag
    assert twice(index, spy, url, **headers, **{"If-None-Match": f"W/{etag}"})[0] == 304


@pytest.mark.parametrize("suffix, payload", [("", 0), (".metadata", 0), ("", 3 * memo_module.SMALL_BLOB)])
def test_a_repeated_download_sends_the_same_bytes_without_flask(index: Index, suffix: str, payload: int) -> None:
    data = wheel_bytes("big", "1.0", payload=b"x" * payload)
    assert index.upload("big-1.0-py3-none-any.whl", data).status_code == 200
    url = file_url(index, "local", "big") + suffix
    spy = Spy(index)
    status, sent, body = twice(index, spy, url)
    assert status == 200 and body == (data if not suffix else body) and int(dict(sent)["Content-Length"]) == len(body)
    assert body.startswith(b"PK" if not suffix else b"Metadata-Version")
    etag = dict(sent)["ETag"]
    assert twice(index, spy, url, **{"If-None-Match": etag})[0] == 304


def test_partial_and_failed_answers_are_worked_out_every_time(index: Index) -> None:
    url = file_url(index, "local")
    spy = Spy(index)
    for case in ((url, "GET", {"Range": "bytes=0-9"}), (url, "HEAD", {}), ("/local/simple/nothing/", "GET", {}),
                 ("/team/simple/demo/", "GET", {}), ("/local/simple/Demo/", "GET", {}),
                 ("/local/simple/demo/", "GET", {"Accept": "image/png"})):
        url_, method, headers = case
        first = answer(index, url_, method, **headers)
        calls = spy.calls
        assert answer(index, url_, method, **headers) == first and spy.calls == calls + 1, case
    assert answer(index, url, Range="bytes=0-9")[0] == 206


def test_credentials_are_part_of_the_question_and_never_kept_in_clear(index: Index) -> None:
    spy = Spy(index)
    twice(index, spy, "/all/simple/demo/", **index.auth)
    anonymous = answer(index, "/all/simple/demo/")
    assert b"demo-2.0" not in anonymous[2] and b"demo-1.0" in anonymous[2]
    assert answer(index, "/team/simple/demo/")[0] == 401
    secret = index.auth["Authorization"]
    assert not any(secret in str(key) or index.admin_password in str(key) for key in spy.memo._entries)


def test_an_upload_ends_every_remembered_answer(index: Index) -> None:
    spy = Spy(index)
    twice(index, spy, "/local/simple/demo/")
    assert index.upload("demo-3.0-py3-none-any.whl", wheel_bytes("demo", "3.0")).status_code == 200
    assert b"demo-3.0" in answer(index, "/local/simple/demo/")[2]


def test_a_commit_by_another_process_ends_every_remembered_answer(index: Index) -> None:
    spy = Spy(index)
    twice(index, spy, "/local/simple/demo/")
    other = sqlite3.connect(index.data_dir / "pypilite.db")
    with other:
        other.execute("UPDATE repository SET public = 0 WHERE name = 'local'")
    other.close()
    assert answer(index, "/local/simple/demo/")[0] == 401


def test_a_changed_password_or_grant_is_checked_at_once(index: Index) -> None:
    index.run(users.create_user, "ann", "first-password-1", ACTOR)
    index.run(grants.set_grant, "ann", "team", "read", ACTOR)
    spy = Spy(index)
    twice(index, spy, "/team/simple/demo/", **basic("ann", "first-password-1"))
    index.run(users.set_password, "ann", "second-password-2", ACTOR, index.data_dir)
    assert answer(index, "/team/simple/demo/", **basic("ann", "first-password-1"))[0] == 401
    twice(index, spy, "/team/simple/demo/", **basic("ann", "second-password-2"))
    index.run(grants.remove_grant, "ann", "team", ACTOR)
    assert answer(index, "/team/simple/demo/", **basic("ann", "second-password-2"))[0] == 403


def test_a_token_is_checked_again_when_it_expires_and_its_use_is_noted(index: Index, monkeypatch) -> None:
    token, secret = index.run(tokens.create_token, "admin", ACTOR, expires_days=1)
    credentials = basic("__token__", secret)
    spy = Spy(index)
    answer(index, "/team/simple/demo/", **credentials)  # notes the token's first use: a change
    twice(index, spy, "/team/simple/demo/", **credentials)
    later = utcnow() + timedelta(minutes=2)
    monkeypatch.setattr(memo_module, "time", lambda: epoch(later + timedelta(seconds=1)))
    monkeypatch.setattr("pypilite.auth.utcnow", lambda: later)
    calls = spy.calls
    assert answer(index, "/team/simple/demo/", **credentials)[0] == 200 and spy.calls == calls + 1
    assert index.run(tokens.get_token, token.id).last_used == later
    expired = utcnow() + timedelta(days=2)
    monkeypatch.setattr(memo_module, "time", lambda: epoch(expired))
    monkeypatch.setattr("pypilite.auth.utcnow", lambda: expired)
    assert answer(index, "/team/simple/demo/", **credentials)[0] == 401


def test_a_proxy_page_is_asked_for_again_once_it_goes_stale(tmp_path: Path, monkeypatch) -> None:
    upstream = Upstream(tmp_path / "up", [wheel("tool", "1.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"repository": [
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url, "cache_ttl": 60}]})
        spy = Spy(index)
        answer(index, "/up/simple/tool/")
        twice(index, spy, "/up/simple/tool/")
        asked = upstream.log.count("/tool/")
        stale = utcnow() + timedelta(seconds=61)
        monkeypatch.setattr(memo_module, "time", lambda: epoch(stale))
        monkeypatch.setattr("pypilite.repositories.proxy.utcnow", lambda: stale)
        assert answer(index, "/up/simple/tool/")[0] == 200
        assert upstream.log.count("/tool/") == asked + 1
    finally:
        upstream.stop()


def test_a_replayed_proxy_download_counts_as_a_cache_hit(tmp_path: Path) -> None:
    upstream = Upstream(tmp_path / "up", [wheel("tool", "1.0")], json_api=True).start()
    try:
        index = Index(tmp_path / "data", {"repository": [
            {"name": "up", "repository_type": "proxy", "remote_url": upstream.url}]})
        url = file_url(index, "up", "tool")
        assert answer(index, url)[0] == 200  # fetched and streamed: nothing to remember
        spy = Spy(index)
        twice(index, spy, url)
        hits = [line for line in index.get("/metrics").get_data(as_text=True).splitlines()
                if line.startswith('pypilite_proxy_cache_total{kind="file",result="hit"}')]
        assert hits and float(hits[0].split()[-1]) == 2.0
        requests = [line for line in index.get("/metrics").get_data(as_text=True).splitlines()
                    if line.startswith('pypilite_http_requests_total{endpoint="files.download"')]
        assert sum(float(line.split()[-1]) for line in requests) == 3.0
    finally:
        upstream.stop()


class Clock:
    """The memo's monotonic clock, moved by hand."""

    def __init__(self, monkeypatch) -> None:
        self.now = 1000.0
        monkeypatch.setattr(memo_module, "monotonic", lambda: self.now)


@pytest.mark.parametrize("accel", [False, True])
def test_a_blob_gone_missing_is_reported_even_when_the_answer_was_remembered(tmp_path: Path, accel: bool,
                                                                             monkeypatch) -> None:
    """Behind nginx at once, since nginx would send the file; a kept small blob's bytes go on being sent until
    the blob is looked for again, at most BLOB_CHECK_SECONDS after it was last seen."""
    clock = Clock(monkeypatch)
    index = Index(tmp_path / "data", {"server": {"x_accel_redirect": "/_blobs/"}} if accel else {})
    data = wheel_bytes("demo", "1.0")
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    url = file_url(index, "local")
    spy = Spy(index)
    twice(index, spy, url)
    for blob in index.stored_blobs():
        blob.unlink()
    if not accel:
        clock.now += memo_module.BLOB_CHECK_SECONDS / 2
        assert answer(index, url)[::2] == (200, data)
        clock.now += memo_module.BLOB_CHECK_SECONDS / 2
    status, _, body = answer(index, url)
    assert status == 500 and b"restore it from a backup" in body


def test_a_small_blob_that_changed_size_is_not_sent_as_remembered(index: Index, monkeypatch) -> None:
    """A blob never changes, unless the disk or an operator does it: then the Content-Length the memo kept would
    not frame the bytes on disk, so the Flask road answers with what is there, once the blob is looked for."""
    clock = Clock(monkeypatch)
    data = wheel_bytes("demo", "3.0")  # a release of its own: no other file shares its blob
    assert index.upload("demo-3.0-py3-none-any.whl", data).status_code == 200
    url = f"/files/local/{hashlib.sha256(data).hexdigest()}/demo-3.0-py3-none-any.whl"
    spy = Spy(index)
    twice(index, spy, url)
    (blob,) = (b for b in index.stored_blobs() if b.read_bytes() == data)
    blob.write_bytes(data[:100])
    calls = spy.calls
    clock.now += memo_module.BLOB_CHECK_SECONDS
    status, sent, body = answer(index, url)
    assert spy.calls == calls + 1
    assert status == 200 and body == data[:100] and dict(sent)["Content-Length"] == "100"


def test_a_small_blob_is_sent_as_read_when_its_answer_was_remembered(index: Index) -> None:
    """A small blob's bytes are kept with the answer: the replay sends the bytes the blob's sha256 names, even
    if the file was since overwritten with as many other bytes (which `check` reports)."""
    data = wheel_bytes("demo", "3.0")
    assert index.upload("demo-3.0-py3-none-any.whl", data).status_code == 200
    url = f"/files/local/{hashlib.sha256(data).hexdigest()}/demo-3.0-py3-none-any.whl"
    spy = Spy(index)
    twice(index, spy, url)
    (blob,) = (b for b in index.stored_blobs() if b.read_bytes() == data)
    blob.write_bytes(bytes(len(data)))
    calls = spy.calls
    status, _, body = answer(index, url)
    assert spy.calls == calls and status == 200 and body == data


def test_the_memo_keeps_within_its_bounds(index: Index) -> None:
    spy = Spy(index)
    spy.memo.max_entries = 2
    for url in ("/local/simple/demo/", "/all/simple/demo/", "/local/simple/"):
        answer(index, url)
    assert len(spy.memo._entries) == 2
    calls = spy.calls
    answer(index, "/local/simple/demo/")
    assert spy.calls == calls + 1  # the oldest went first
    spy.memo.max_bytes = 8 * 100
    spy.memo._entries.clear()
    spy.memo._size = 0
    answer(index, "/local/simple/demo/")
    assert not spy.memo._entries  # a page over an eighth of the budget is not kept



def test_a_request_from_this_index_s_own_proxy_is_refused_even_when_its_answer_was_remembered(index: Index) -> None:
    spy = Spy(index)
    twice(index, spy, "/local/simple/demo/")
    own = index.app.extensions["pypilite"].loop_marker
    assert answer(index, "/local/simple/demo/", **{"X-Pypilite-Loop": own})[0] == 508


@pytest.mark.parametrize("config, url, headers", [
    ({}, "/local/simple/", {}),
    ({}, "/simple/demo/", {"Accept": JSON}),
    ({}, "/all/simple/demo/", {"auth": "admin"}),
    ({}, "file", {}),
    ({}, "file.metadata", {"auth": "admin"}),
    ({}, "listed file", {"auth": "admin"}),
    ({"server": {"x_accel_redirect": "/_blobs/"}}, "file", {"auth": "admin"}),
    ({"server": {"x_accel_redirect": "/_blobs/"}}, "file", {"auth": "admin", "X-Pypilite-Decision": "1"}),
], ids=["index", "page", "group page", "file", "metadata", "file a group lists", "file behind nginx",
        "nginx's decision"])
def test_every_remembered_view_reads_only_what_the_memo_keys_by(tmp_path: Path, config: dict, url: str,
                                                                headers: dict) -> None:
    """tests/memo_rule.py holds every in-process request to the rule; here each view that offers its answer
    is asked once with every header a client may send, and must offer it all the same."""
    index = Index(tmp_path / "data", config)
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0")).status_code == 200
    if headers.pop("auth", None):
        headers.update(index.auth)
    if url == "listed file":
        page = index.get("/all/simple/demo/", accept=JSON, headers=headers).json
        url = urljoin("/all/simple/demo/", page["files"][-1]["url"]).split("#")[0]
    elif url.startswith("file"):
        url = file_url(index, "local") + url.removeprefix("file")
    spy = Spy(index)
    noise = {"User-Agent": "pip/24.0", "Cookie": "session=x", "Accept-Language": "fr", "X-Forwarded-For": "10.0.0.1",
             "X-Real-IP": "10.0.0.1", "Referer": "http://127.0.0.1/", "Origin": "http://127.0.0.1"}
    twice(index, spy, url, **headers, **noise)
    assert spy.memo._entries


def test_a_remembered_view_that_reads_another_header_fails_the_rule(tmp_path: Path) -> None:
    index = Index(tmp_path / "data")

    def by_agent() -> bytes:
        memo_module.offer(b"for " + request.headers.get("User-Agent", "").encode())
        return b"for " + request.headers.get("User-Agent", "").encode()

    index.app.add_url_rule("/by-agent", "by_agent", by_agent)
    with pytest.raises(AssertionError, match=r"by_agent offered .* but read \['HTTP_USER_AGENT'\]"):
        index.get("/by-agent", headers={"User-Agent": "pip"})
