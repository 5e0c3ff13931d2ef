"""The Simple Repository API: negotiation, the two representations agreeing, metadata, ETags, redirects."""

from __future__ import annotations

import hashlib
import os
import re
from datetime import datetime
from email.utils import parsedate_to_datetime
from html.parser import HTMLParser

import pytest

from pypilite.database import database
from pypilite.repositories import stored
from tests.conftest import Index
from tests.distfactory import sdist_bytes, wheel_bytes

JSON = "application/vnd.pypi.simple.v1+json"
HTML1 = "application/vnd.pypi.simple.v1+html"
PIP_ACCEPT = f"{JSON}, {HTML1}; q=0.1, text/html; q=0.01"


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.anchors: list[dict[str, str | None]] = []
        self.meta: dict[str, str | None] = {}

    def handle_starttag(self, tag, attrs):
        if tag == "a":
            self.anchors.append(dict(attrs))
        if tag == "meta":
            attrs = dict(attrs)
            self.meta[attrs.get("name")] = attrs.get("content")

    def handle_data(self, data):
        if self.anchors and data.strip():
            self.anchors[-1]["text"] = data.strip()


def parse_html(text: str) -> Anchors:
    parser = Anchors()
    parser.feed(text)
    return parser


def populate(index: Index) -> Index:
    for version in ("1.0", "10.0", "2.0rc1", "2.0"):
        index.upload(f"demo-{version}-py3-none-any.whl", wheel_bytes("demo", version, requires_python=">=3.8,<4"))
    index.upload("demo-2.0.tar.gz", sdist_bytes("demo", "2.0"))
    index.upload("other_thing-0.1-py3-none-any.whl", wheel_bytes("other_thing", "0.1"))
    return index


@pytest.fixture(scope="module")
def populated(module_index: Index) -> Index:
    """Read-only tests share one populated index."""
    return populate(module_index)


@pytest.fixture
def fresh(index: Index) -> Index:
    """Tests that upload more get their own."""
    return populate(index)


@pytest.mark.parametrize("accept, expected", [
    (None, "text/html"),
    ("text/html", "text/html"),
    (HTML1, HTML1),
    (JSON, JSON),
    (PIP_ACCEPT, JSON),
    ("*/*", "text/html"),
    ("application/vnd.pypi.simple.latest+json", JSON),
    ("text/html;q=0.5, application/vnd.pypi.simple.v1+json;q=0.9", JSON),
    ("text/plain", None),
    ("application/json", None),
    ("garbage", None),
])
@pytest.mark.parametrize("url", ["/local/simple/", "/local/simple/demo/", "/simple/demo/"])
def test_negotiation(populated: Index, url: str, accept: str | None, expected: str | None) -> None:
    response = populated.get(url, accept=accept)
    if expected is None:
        assert response.status_code == 406 and "Accept" in response.headers["Vary"]
        return
    assert response.status_code == 200
    assert response.mimetype == expected
    assert "Accept" in response.headers["Vary"]
    assert response.headers["Cache-Control"] == "max-age=0, must-revalidate"
    assert response.headers["ETag"]


def test_a_format_typed_with_a_literal_plus_is_understood(populated: Index) -> None:
    """In a query string "+" means a space: a media type typed into the URL as it is spelled arrives so."""
    response = populated.get("/local/simple/demo/?format=application/vnd.pypi.simple.v1+json", accept="text/plain")
    assert response.status_code == 200 and response.mimetype == JSON


@pytest.mark.parametrize("fmt, expected", [(JSON, 200), (HTML1, 200), ("text/html", 200), ("text/plain", 406)])
def test_format_query_overrides_accept(populated: Index, fmt: str, expected: int) -> None:
    response = populated.get("/local/simple/demo/", accept="text/plain", query_string={"format": fmt})
    assert response.status_code == expected
    if expected == 200:
        assert response.mimetype == fmt


def test_json_and_html_agree(populated: Index) -> None:
    page = populated.get("/local/simple/demo/", accept=JSON).json
    html = parse_html(populated.get("/local/simple/demo/", accept="text/html").get_data(as_text=True))
    assert page["meta"]["api-version"] == "1.1" and html.meta["pypi:repository-version"] == "1.1"
    assert page["name"] == "demo"
    assert len(page["files"]) == len(html.anchors) == 5
    for file, anchor in zip(page["files"], html.anchors):
        assert anchor["text"] == file["filename"]
        assert anchor["href"] == f"{file['url']}#sha256={file['hashes']['sha256']}"
        assert anchor.get("data-requires-python") == file["requires-python"]
        metadata = file["core-metadata"]
        assert "dist-info-metadata" not in file  # PEP 714: pip 22.3 to 23.1 crash on it in JSON
        if metadata:
            assert anchor["data-core-metadata"] == anchor["data-dist-info-metadata"] == f"sha256={metadata['sha256']}"
        else:
            assert "data-core-metadata" not in anchor
        assert ("data-yanked" in anchor) == (file["yanked"] is not False)


def test_project_page_is_sorted_by_version_and_complete(populated: Index) -> None:
    page = populated.get("/local/simple/demo/", accept=JSON).json
    assert page["versions"] == ["1.0", "2.0rc1", "2.0", "10.0"]
    assert [f["filename"] for f in page["files"]] == [
        "demo-1.0-py3-none-any.whl", "demo-2.0rc1-py3-none-any.whl",
        "demo-2.0-py3-none-any.whl", "demo-2.0.tar.gz", "demo-10.0-py3-none-any.whl"]
    for file in page["files"]:
        assert isinstance(file["size"], int) and file["size"] > 0
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", file["upload-time"])
        assert file["yanked"] is False
        assert file["url"].startswith("../../files/local/")


def test_requires_python_is_html_escaped(populated: Index) -> None:
    text = populated.get("/local/simple/demo/", accept="text/html").get_data(as_text=True)
    assert 'data-requires-python="&gt;=3.8,&lt;4"' in text


def test_files_and_metadata_download_and_match_their_hashes(populated: Index) -> None:
    page = populated.get("/local/simple/demo/", accept=JSON).json
    base = "/local/simple/demo/"
    for file in page["files"]:
        url = _resolve(base, file["url"])
        body = populated.get(url).data
        assert hashlib.sha256(body).hexdigest() == file["hashes"]["sha256"]
        assert len(body) == file["size"]
        if file["core-metadata"]:
            metadata = populated.get(url + ".metadata")
            assert metadata.status_code == 200
            assert hashlib.sha256(metadata.data).hexdigest() == file["core-metadata"]["sha256"]
            assert metadata.data == _wheel_metadata(body)
        else:
            assert populated.get(url + ".metadata").status_code == 404


def _resolve(base: str, relative: str) -> str:
    from urllib.parse import urljoin
    return urljoin(f"http://testserver{base}", relative).removeprefix("http://testserver")


def _wheel_metadata(data: bytes) -> bytes:
    import io
    import zipfile
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA")))


def test_default_repository_links_resolve_too(populated: Index) -> None:
    page = populated.get("/simple/demo/", accept=JSON).json
    url = _resolve("/simple/demo/", page["files"][0]["url"])
    assert populated.get(url).status_code == 200


def test_files_support_range_and_conditional_requests(populated: Index) -> None:
    page = populated.get("/local/simple/demo/", accept=JSON).json
    url = _resolve("/local/simple/demo/", page["files"][0]["url"])
    full = populated.get(url)
    assert "immutable" in full.headers["Cache-Control"]
    assert full.headers["Content-Length"] == str(len(full.data)) and full.headers["Accept-Ranges"] == "bytes"
    partial = populated.get(url, headers={"Range": "bytes=0-9"})
    assert partial.status_code == 206 and partial.data == full.data[:10]
    assert partial.headers["Content-Range"] == f"bytes 0-9/{len(full.data)}"
    tail = populated.get(url, headers={"Range": "bytes=-5"})
    assert tail.status_code == 206 and tail.data == full.data[-5:]
    beyond = populated.get(url, headers={"Range": f"bytes={len(full.data) + 10}-"})
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{len(full.data)}"
    assert populated.get(url, headers={"If-None-Match": full.headers["ETag"]}).status_code == 304
    head = populated.client.head(url)
    assert head.status_code == 200 and head.data == b"" and head.headers["Content-Length"] == str(len(full.data))


def test_a_download_is_dated_by_its_upload_not_by_its_blob(populated: Index) -> None:
    """The blob's mtime would tell when any repository, a private one included, first stored the same bytes."""
    page = populated.get("/local/simple/demo/", accept=JSON).json
    url = _resolve("/local/simple/demo/", page["files"][0]["url"])
    uploaded = datetime.fromisoformat(page["files"][0]["upload-time"].replace("Z", "+00:00"))
    blob = populated.data_dir / "blobs" / page["files"][0]["hashes"]["sha256"][:2]
    for path in blob.rglob("*"):
        os.utime(path, (0, 0))
    assert parsedate_to_datetime(populated.get(url).headers["Last-Modified"]) == uploaded.replace(microsecond=0)


def test_a_download_leaves_its_date_to_the_server(populated: Index) -> None:
    """gunicorn and werkzeug's development server date every answer as they send it; one more Date from the
    app would be a second Date under the development server, and the time of the first answer in a repeated one."""
    page = populated.get("/local/simple/demo/", accept=JSON).json
    url = _resolve("/local/simple/demo/", page["files"][0]["url"])
    first = populated.get(url)
    again = populated.get(url)  # from the memo
    partial = populated.get(url, headers={"Range": "bytes=0-9"})
    unchanged = populated.get(url, headers={"If-None-Match": first.headers["ETag"]})
    for response, status in ((first, 200), (again, 200), (partial, 206), (unchanged, 304)):
        assert response.status_code == status and "Date" not in response.headers


@pytest.mark.parametrize("mangle", [
    lambda url: url.replace("/files/local/", "/files/nope/"),
    lambda url: re.sub(r"/[0-9a-f]{64}/", "/" + "0" * 64 + "/", url),
    lambda url: url.replace(".whl", ".tar.gz"),
    lambda url: url.replace("demo-1.0", "..%2F..%2Fetc%2Fpasswd"),
])
def test_unknown_files_are_404(populated: Index, mangle) -> None:
    page = populated.get("/local/simple/demo/", accept=JSON).json
    url = _resolve("/local/simple/demo/", page["files"][0]["url"])
    assert populated.get(mangle(url)).status_code == 404


@pytest.mark.parametrize("url", ["/local/simple/demo/", "/local/simple/", "/simple/demo/"])
@pytest.mark.parametrize("accept", [JSON, "text/html"])
def test_matching_etag_answers_304(populated: Index, url: str, accept: str) -> None:
    first = populated.get(url, accept=accept)
    again = populated.get(url, accept=accept, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""
    assert again.headers["ETag"] == first.headers["ETag"]


def test_etag_differs_by_representation_and_changes_on_upload(fresh: Index) -> None:
    html = fresh.get("/local/simple/demo/", accept="text/html").headers["ETag"]
    json = fresh.get("/local/simple/demo/", accept=JSON).headers["ETag"]
    assert html != json
    fresh.upload("demo-11.0-py3-none-any.whl", wheel_bytes("demo", "11.0"))
    fresh = fresh.get("/local/simple/demo/", accept=JSON, headers={"If-None-Match": json})
    assert fresh.status_code == 200
    assert "11.0" in fresh.json["versions"]


def test_root_index_lists_projects_in_both_forms(populated: Index) -> None:
    names = [p["name"] for p in populated.get("/local/simple/", accept=JSON).json["projects"]]
    assert names == ["demo", "other-thing"]
    anchors = parse_html(populated.get("/local/simple/").get_data(as_text=True)).anchors
    assert [(a["href"], a["text"]) for a in anchors] == [("demo/", "demo"), ("other-thing/", "other-thing")]


def test_root_index_etag_changes_when_a_project_appears(fresh: Index) -> None:
    etag = fresh.get("/local/simple/").headers["ETag"]
    fresh.upload("third-1.0-py3-none-any.whl", wheel_bytes("third", "1.0"))
    assert fresh.get("/local/simple/", headers={"If-None-Match": etag}).status_code == 200


@pytest.mark.parametrize("url, location", [
    ("/local/simple/Other_Thing/", "../other-thing/"),
    ("/local/simple/other.thing/", "../other-thing/"),
    ("/local/simple/OTHER-thing", "other-thing/"),
    ("/local/simple/other-thing", "other-thing/"),
    ("/local/simple", "simple/"),
    ("/simple/Other_Thing/?format=text/html", "../other-thing/?format=text/html"),
])
def test_non_normalized_names_redirect(populated: Index, url: str, location: str) -> None:
    response = populated.get(url)
    assert response.status_code == 301
    assert response.headers["Location"] == location


@pytest.mark.parametrize("url", ["/local/simple/missing/", "/nope/simple/", "/nope/simple/demo/",
                                 "/local/simple/-bad-name-/"])
def test_unknown_things_are_404(populated: Index, url: str) -> None:
    response = populated.get(url)
    assert response.status_code == 404
    assert response.mimetype == "text/plain"


def test_group_serves_hosted_projects(populated: Index) -> None:
    page = populated.get("/all/simple/demo/", accept=JSON).json
    assert len(page["files"]) == 5
    assert all("/files/local/" in f["url"] for f in page["files"])
    assert [p["name"] for p in populated.get("/simple/", accept=JSON).json["projects"]] == ["demo", "other-thing"]


def test_private_repository_challenges_anonymous_readers(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "team", "repository_type": "hosted", "public": False}], "server": {"default_repository": "team"}})
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"), repo="team")
    for url in ("/team/simple/", "/team/simple/demo/", "/simple/demo/", "/team/simple/missing/"):
        response = index.get(url)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
        assert b"demo" not in response.data
    page = index.get("/team/simple/demo/", accept=JSON, headers=dict(index.auth))
    assert page.status_code == 200
    assert "private" in page.headers["Cache-Control"]
    url = _resolve("/team/simple/demo/", page.json["files"][0]["url"])
    assert index.get(url).status_code == 401
    assert index.get(url, headers=dict(index.auth)).status_code == 200


def test_head_requests_work(populated: Index) -> None:
    response = populated.client.head("/local/simple/demo/")
    assert response.status_code == 200 and response.data == b""


@pytest.mark.sqlite_only  # its query planner
@pytest.mark.parametrize("query, params", [
    (stored._FILE_BY_NAME, (1, "p0-1.0-py3-none-any.whl")),
    (stored._FILES_OF_PROJECT, (1,)),
])
def test_hot_lookups_never_walk_a_whole_repository(index: Index, query: str, params: tuple) -> None:
    """What one download or page costs must not grow with the number of projects beside it."""
    for n in range(30):
        assert index.upload(f"p{n}-1.0-py3-none-any.whl", wheel_bytes(f"p{n}", "1.0")).status_code == 200
    plan = index.run(lambda: database.execute_sql(f"EXPLAIN QUERY PLAN {query}", params).fetchall())
    first_step = plan[0][-1]
    assert first_step.startswith("SEARCH f USING") and ("(filename=?)" in first_step or "(project_id=?)" in first_step)
    assert not any("SCAN" in step[-1] for step in plan), plan
