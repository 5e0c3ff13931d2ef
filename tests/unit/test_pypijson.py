"""Warehouse's JSON API for hosted projects: the document's shape against a release with rich metadata,
versions chosen as pip would, the same rights, redirects and 404s as the Simple API, ETags and serials."""

from __future__ import annotations

import gzip
import hashlib
import io
import zipfile
from urllib.parse import urljoin

import pytest

from pypilite import warehousejson
from tests.conftest import Index, basic
from tests.distfactory import sdist_bytes, wheel_bytes

JSON = "application/vnd.pypi.simple.v1+json"
RICH = """Metadata-Version: 2.4
Name: Rich_Thing
Version: {version}
Summary: A thing with every field
Keywords: alpha,beta
Author: Ann Author
Author-email: ann@example.com
Maintainer: Mo Maintainer
Maintainer-email: mo@example.com
License-Expression: MIT
License-File: LICENSE
Classifier: Programming Language :: Python :: 3
Classifier: License :: OSI Approved :: MIT License
Requires-Dist: requests>=2
Requires-Dist: pytest; extra == "test"
Provides-Extra: test
Requires-Python: >=3.9
Home-page: https://example.com/home
Download-URL: https://example.com/download
Project-URL: Source, https://example.com/src
Project-URL: Issues, https://example.com/issues
Description-Content-Type: text/markdown

# Rich thing {version}
"""


def rich_wheel(version: str) -> bytes:
    data = io.BytesIO(wheel_bytes("rich_thing", version, metadata=RICH.format(version=version)))
    with zipfile.ZipFile(data, "a") as archive:
        archive.writestr(f"rich_thing-{version}.dist-info/licenses/LICENSE", "MIT\n")
    return data.getvalue()


@pytest.fixture(scope="module")
def rich(module_index: Index) -> Index:
    index = module_index
    for version in ("1.0", "2.0", "2.5", "3.0rc1"):
        response = index.upload(f"rich_thing-{version}-py3-none-any.whl", rich_wheel(version))
        assert response.status_code == 200, response.get_data(as_text=True)
    metadata = RICH.format(version="2.0").replace("License-File: LICENSE\n", "")
    sdist = sdist_bytes("rich_thing", "2.0", metadata=metadata)
    assert index.upload("rich_thing-2.0.tar.gz", sdist).status_code == 200
    yanked = index.client.post("/api/v1/repos/local/projects/rich-thing/2.5/yank", json={"reason": "broken build"},
                               headers=index.auth)
    assert yanked.status_code in (200, 204)
    return index


def test_the_project_document_has_warehouses_shape(rich: Index) -> None:
    response = rich.get("/local/pypi/rich-thing/json")
    assert response.status_code == 200 and response.headers["Content-Type"] == "application/json"
    doc = response.json
    assert set(doc) == {"info", "last_serial", "releases", "urls", "vulnerabilities"}
    info = doc["info"]
    assert info["version"] == "2.0"  # not the yanked 2.5, not the pre-release 3.0rc1
    assert info["name"] == "Rich_Thing" and info["summary"] == "A thing with every field"
    assert info["description"] == "# Rich thing 2.0\n" and info["description_content_type"] == "text/markdown"
    assert (info["author"], info["author_email"]) == ("Ann Author", "ann@example.com")
    assert (info["maintainer"], info["maintainer_email"]) == ("Mo Maintainer", "mo@example.com")
    assert info["license_expression"] == "MIT" and info["license_files"] == ["LICENSE"]
    assert info["keywords"] == "alpha,beta"
    assert info["classifiers"] == ["Programming Language :: Python :: 3", "License :: OSI Approved :: MIT License"]
    assert info["requires_dist"] == ["requests>=2", 'pytest; extra == "test"'] and info["provides_extra"] == ["test"]
    assert info["requires_python"] == ">=3.9" and info["home_page"] == "https://example.com/home"
    assert info["download_url"] == "https://example.com/download"
    assert info["project_urls"] == {"Source": "https://example.com/src", "Issues": "https://example.com/issues"}
    assert info["package_url"] == info["project_url"] == "http://localhost/ui/local/rich-thing/"
    assert info["release_url"] == "http://localhost/ui/local/rich-thing/?version=2.0"
    assert info["yanked"] is False and info["yanked_reason"] is None
    assert list(doc["releases"]) == ["1.0", "2.0", "2.5", "3.0rc1"]
    assert [f["filename"] for f in doc["urls"]] == ["rich_thing-2.0-py3-none-any.whl", "rich_thing-2.0.tar.gz"]
    assert doc["urls"] == doc["releases"]["2.0"] and doc["vulnerabilities"] == []
    assert doc["last_serial"] == int(response.headers["X-PyPI-Last-Serial"])
    wheel, sdist = doc["urls"]
    assert (wheel["packagetype"], wheel["python_version"]) == ("bdist_wheel", "py3")
    assert (sdist["packagetype"], sdist["python_version"]) == ("sdist", "source")
    assert wheel["upload_time_iso_8601"].startswith(wheel["upload_time"]) and wheel["upload_time_iso_8601"][-1] == "Z"
    assert wheel["requires_python"] == ">=3.9" and wheel["yanked"] is False and wheel["yanked_reason"] is None
    assert set(wheel["digests"]) == {"sha256"}  # md5 and blake2b are not kept: left out, never guessed
    yanked = doc["releases"]["2.5"][0]
    assert yanked["yanked"] is True and yanked["yanked_reason"] == "broken build"


def test_file_urls_are_the_pages_own_and_download_with_their_digest(rich: Index) -> None:
    doc = rich.get("/local/pypi/rich-thing/json").json
    page = rich.get("/local/simple/rich-thing/", accept=JSON).json
    listed = {f["filename"]: urljoin("http://localhost/local/simple/rich-thing/", f["url"]).split("#")[0]
              for f in page["files"]}
    for files in doc["releases"].values():
        for file in files:
            assert file["url"] == listed[file["filename"]]
            data = rich.client.get(file["url"].removeprefix("http://localhost")).get_data()
            assert hashlib.sha256(data).hexdigest() == file["digests"]["sha256"] and len(data) == file["size"]


@pytest.mark.parametrize("asked, version", [("2.5", "2.5"), ("3.0rc1", "3.0rc1"), ("1.0.0", "1.0"), ("2.0", "2.0")])
def test_the_version_document_is_that_release_without_releases(rich: Index, asked: str, version: str) -> None:
    doc = rich.get(f"/local/pypi/rich-thing/{asked}/json").json
    assert "releases" not in doc and doc["info"]["version"] == version
    assert doc["info"]["summary"] == "A thing with every field" and doc["info"]["description"].endswith(f"{version}\n")
    assert {f["filename"] for f in doc["urls"]} >= {f"rich_thing-{version}-py3-none-any.whl"}
    assert doc["info"]["yanked"] is (version == "2.5")
    assert doc["info"]["yanked_reason"] == ("broken build" if version == "2.5" else None)


@pytest.mark.parametrize("url, location", [
    ("/local/pypi/Rich_Thing/json", "../rich-thing/json"),
    ("/local/pypi/rich.thing/2.0/json", "../../rich-thing/2.0/json"),
])
def test_non_normalized_names_redirect(rich: Index, url: str, location: str) -> None:
    response = rich.get(url)
    assert response.status_code == 301 and response.headers["Location"] == location
    assert rich.get(urljoin(url, location)).status_code == 200


@pytest.mark.parametrize("url, words", [
    ("/local/pypi/nothing-here/json", "not found"),
    ("/local/pypi/rich-thing/9.9/json", "no version"),
    ("/local/pypi/rich-thing/not a version/json", "no version"),
    ("/local/pypi/-bad-/json", "invalid project name"),
    ("/all/pypi/rich-thing/json", "hosted repositories"),
    ("/pypi/pypi/rich-thing/json", "hosted repositories"),
    ("/nowhere/pypi/rich-thing/json", "nowhere"),
])
def test_what_is_not_there_is_404_with_a_one_line_reason(rich: Index, url: str, words: str) -> None:
    response = rich.get(url)
    assert response.status_code == 404 and words in response.json["error"]
    assert "\n" not in response.json["error"]


def test_a_local_version_stays_one_in_the_release_url(index: Index) -> None:
    assert index.upload("rich_thing-1.0+team.2-py3-none-any.whl", rich_wheel("1.0+team.2")).status_code == 200
    info = index.get("/local/pypi/rich-thing/1.0+team.2/json").json["info"]
    assert info["release_url"].endswith("/ui/local/rich-thing/?version=1.0%2Bteam.2")
    assert index.get(info["release_url"].removeprefix("http://localhost")).status_code == 200


def test_etags_revalidate_for_each_coding_and_change_with_the_project(index: Index) -> None:
    for version in ("1.0", "1.1", "1.2"):
        index.upload(f"rich_thing-{version}-py3-none-any.whl", rich_wheel(version))
    url = "/local/pypi/rich-thing/json"
    plain = index.get(url)
    packed = index.get(url, headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip" and gzip.decompress(packed.get_data()) == plain.get_data()
    assert packed.headers["ETag"] != plain.headers["ETag"] and "Accept-Encoding" in packed.headers["Vary"]
    for headers, etag in (({"Accept-Encoding": "gzip"}, packed.headers["ETag"]), ({}, plain.headers["ETag"])):
        again = index.get(url, headers={**headers, "If-None-Match": etag})
        assert again.status_code == 304 and again.headers["ETag"] == etag
        assert again.headers["X-PyPI-Last-Serial"] == plain.headers["X-PyPI-Last-Serial"]
    index.upload("rich_thing-1.3-py3-none-any.whl", rich_wheel("1.3"))
    newer = index.get(url, headers={"If-None-Match": plain.headers["ETag"]})
    assert newer.status_code == 200 and newer.json["info"]["version"] == "1.3"
    assert newer.json["last_serial"] > plain.json["last_serial"]


def test_a_document_is_built_once_per_page_version_and_address(index: Index, monkeypatch) -> None:
    index.upload("rich_thing-1.0-py3-none-any.whl", rich_wheel("1.0"))
    built: list[str] = []
    original = warehousejson.document
    monkeypatch.setattr(warehousejson, "document", lambda page, *args, **kwargs: built.append(page.name)
                        or original(page, *args, **kwargs))
    bodies = {index.get("/local/pypi/rich-thing/json", headers={"Accept-Encoding": coding}).get_data()
              for coding in ("identity", "gzip", "identity", "gzip, deflate")}
    assert len(built) == 1 and len(bodies) == 2
    index.get("/local/pypi/rich-thing/json", headers={"X-Forwarded-Host": "elsewhere.example"})
    index.upload("rich_thing-1.1-py3-none-any.whl", rich_wheel("1.1"))
    assert index.get("/local/pypi/rich-thing/json").json["info"]["version"] == "1.1" and len(built) == 3


def test_the_address_the_client_used_is_in_the_urls_and_the_etag(rich: Index) -> None:
    here = rich.get("/local/pypi/rich-thing/json")
    proxied = rich.get("/local/pypi/rich-thing/json", headers={"X-Forwarded-Host": "packages.example",
                                                                 "X-Forwarded-Proto": "https"})
    assert proxied.json["urls"][0]["url"].startswith("https://packages.example/")
    assert proxied.json["info"]["package_url"] == "https://packages.example/ui/local/rich-thing/"
    assert proxied.headers["ETag"] != here.headers["ETag"]


def test_a_private_repository_answers_as_its_pages_do(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [{"name": "team", "repository_type": "hosted", "public": False}]})
    assert index.upload("rich_thing-1.0-py3-none-any.whl", rich_wheel("1.0"), repo="team").status_code == 200
    for url in ("/team/pypi/rich-thing/json", "/team/pypi/rich-thing/1.0/json", "/team/pypi/nothing/json"):
        anonymous = index.get(url)
        page = index.get(url.replace("/pypi/", "/simple/").removesuffix("json").removesuffix("1.0/"))
        assert anonymous.status_code == page.status_code == 401
        assert anonymous.headers["WWW-Authenticate"] == page.headers["WWW-Authenticate"]
        assert b"rich" not in anonymous.get_data()
        wrong = index.get(url, headers=basic("admin", "wrong"))
        assert wrong.status_code == 401
    allowed = index.get("/team/pypi/rich-thing/json", headers=index.auth)
    assert allowed.status_code == 200 and "private" in allowed.headers["Cache-Control"]
