"""The legacy upload API's rules, each with its status, its one-line reason, and nothing left behind."""

from __future__ import annotations

import hashlib
import io

import pytest

from pypilite import repository_admin
from pypilite.audit import Actor
from tests.conftest import Index, basic
from tests.distfactory import metadata_text, sdist_bytes, wheel_bytes

WHEEL = "demo-1.0-py3-none-any.whl"


def assert_refused(response, status: int, words: str, index: Index) -> None:
    body = response.get_data(as_text=True)
    assert response.status_code == status, body
    assert words.lower() in body.lower()
    assert body.count("\n") == 1 and body.endswith("\n")
    assert response.headers["Content-Type"].startswith("text/plain")
    assert response.status.split(" ", 1)[1] == body.strip()  # the reason phrase twine prints
    assert index.file_rows() == []
    assert index.stored_blobs() == []
    assert index.temp_files() == []


def test_wheel_upload_is_stored_with_its_metadata(index: Index) -> None:
    data = wheel_bytes("demo", "1.0", requires_python=">=3.9")
    response = index.upload(WHEEL, data)
    assert response.status_code == 200, response.get_data(as_text=True)
    [row] = index.file_rows()
    assert (row.filename, row.version, row.size, row.uploader) == (WHEEL, "1.0", len(data), "admin")
    assert row.sha256 == hashlib.sha256(data).hexdigest()
    assert row.requires_python == ">=3.9"
    assert row.metadata_sha256 is not None
    assert len(index.stored_blobs()) == 2
    assert index.temp_files() == []


def test_sdist_upload_has_no_core_metadata(index: Index) -> None:
    assert index.upload("demo-1.0.tar.gz", sdist_bytes("demo", "1.0")).status_code == 200
    [row] = index.file_rows()
    assert row.packagetype == "sdist" and row.metadata_sha256 is None


def test_identical_reupload_answers_200_and_changes_nothing(index: Index) -> None:
    data = wheel_bytes("demo", "1.0")
    index.upload(WHEEL, data)
    [before] = index.file_rows()
    etag = index.get("/local/simple/demo/").headers["ETag"]
    response = index.upload(WHEEL, data)
    assert response.status_code == 200
    [after] = index.file_rows()
    assert after.upload_time == before.upload_time
    assert index.get("/local/simple/demo/").headers["ETag"] == etag
    assert index.temp_files() == []


def test_same_name_other_bytes_is_409(index: Index) -> None:
    index.upload(WHEEL, wheel_bytes("demo", "1.0"))
    [before] = index.file_rows()
    response = index.upload(WHEEL, wheel_bytes("demo", "1.0", requires_python=">=3.10"))
    assert response.status_code == 409
    assert response.get_data(as_text=True).startswith("File already exists")
    assert [r.sha256 for r in index.file_rows()] == [before.sha256]
    assert len(index.stored_blobs()) == 2  # the first upload's file and metadata, nothing of the second
    assert index.temp_files() == []


def test_overwrite_allowed_replaces_the_file(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted", "allow_overwrite": True}]})
    index.upload(WHEEL, wheel_bytes("demo", "1.0"))
    newer = wheel_bytes("demo", "1.0", requires_python=">=3.10")
    assert index.upload(WHEEL, newer).status_code == 200
    [row] = index.file_rows()
    assert row.sha256 == hashlib.sha256(newer).hexdigest()


def test_identical_bytes_are_stored_once(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "a", "repository_type": "hosted"}, {"name": "b", "repository_type": "hosted"}],
        "server": {"default_repository": "a"}})
    data = wheel_bytes("demo", "1.0")
    assert index.upload(WHEEL, data, repo="a").status_code == 200
    assert index.upload(WHEEL, data, repo="b").status_code == 200
    assert len(index.file_rows()) == 2
    assert len(index.stored_blobs()) == 2  # one distribution blob and one metadata blob, shared


@pytest.mark.parametrize("digests, words", [
    ({"sha256_digest": "0" * 64}, "does not match"),
    ({"md5_digest": "0" * 32}, "does not match"),
    ({"blake2_256_digest": "f" * 64}, "does not match"),
    ({"sha256_digest": "xyz"}, "hex digits"),
    ({"sha256_digest": "ab" * 40}, "hex digits"),
    ({}, "at least one message digest"),
    ({"sha256_digest": "", "md5_digest": ""}, "at least one message digest"),
])
def test_wrong_or_missing_digests_are_refused(index: Index, digests, words) -> None:
    assert_refused(index.upload(WHEEL, wheel_bytes("demo", "1.0"), digests=digests), 400, words, index)


def test_every_matching_digest_is_accepted(index: Index) -> None:
    data = wheel_bytes("demo", "1.0")
    digests = {"sha256_digest": hashlib.sha256(data).hexdigest().upper(),
               "md5_digest": hashlib.md5(data).hexdigest(),
               "blake2_256_digest": hashlib.blake2b(data, digest_size=32).hexdigest()}
    assert index.upload(WHEEL, data, digests=digests).status_code == 200


@pytest.mark.parametrize("filename, form, words", [
    ("other-1.0-py3-none-any.whl", {}, "does not belong to project"),
    ("demo-2.0-py3-none-any.whl", {}, "does not match version"),
    ("demo-1.0-py3-none-any.whl", {"filetype": "sdist"}, "is not of filetype"),
    ("demo-1.0.tar.gz", {"filetype": "bdist_wheel"}, "is not of filetype"),
    ("demo-1.0.egg", {"filetype": "bdist_egg"}, "unsupported filetype"),
    ("demo-1.0.exe", {"filetype": "sdist"}, "neither a wheel"),
    ("demo-1.0-py3-none.whl", {}, "invalid distribution filename"),
    ("../demo-1.0-py3-none-any.whl", {}, "not a plain file name"),
    ("..\\demo-1.0-py3-none-any.whl", {}, "not a plain file name"),
    ("/etc/demo-1.0-py3-none-any.whl", {}, "not a plain file name"),
    (".demo-1.0-py3-none-any.whl", {}, "not a plain file name"),
    ("demo-1.0-py3-none-any\t.whl", {}, "not a plain file name"),
    ("d" * 300 + "-1.0.tar.gz", {"name": "d" * 300}, "too long"),
])
def test_filename_must_match_the_form(index: Index, filename, form, words) -> None:
    data = wheel_bytes("demo", "1.0")
    fields = {"name": "demo", "version": "1.0", **form}
    response = index.upload(filename, data, name=fields.pop("name"), version=fields.pop("version"),
                            filetype=fields.pop("filetype", None))
    assert_refused(response, 400, words, index)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"definitely not a zip file", "not a zip archive"),
    (wheel_bytes("demo", "1.0")[:-40], "not a zip archive"),
    (wheel_bytes("demo", "1.0", with_wheel_file=False), "WHEEL is missing"),
    (wheel_bytes("demo", "1.0", with_metadata=False), "METADATA is missing"),
    (wheel_bytes("demo", "1.0", dist_info="other-1.0"), "expected one demo-1.0.dist-info"),
    (wheel_bytes("demo", "1.0", metadata=metadata_text("other", "1.0")), "does not match"),
    (wheel_bytes("demo", "1.0", metadata=metadata_text("demo", "1.1")), "does not match"),
    (wheel_bytes("demo", "1.0", metadata="garbage without fields"), "Metadata-Version is missing"),
    (wheel_bytes("demo", "1.0", requires_python="not a spec"), "requires-python"),
    (sdist_bytes("demo", "1.0"), "not a zip archive"),
])
def test_broken_wheels_are_refused(index: Index, data, words) -> None:
    assert_refused(index.upload(WHEEL, data), 400, words, index)


def test_the_expected_dist_info_is_named_as_the_wheel_format_spells_it(index: Index) -> None:
    data = wheel_bytes("nc-delta", "1.0", dist_info="other-1.0")
    assert_refused(index.upload("nc_delta-1.0-py3-none-any.whl", data), 400,
                   "expected one nc_delta-1.0.dist-info directory", index)


@pytest.mark.parametrize("data, words", [
    (sdist_bytes("demo", "1.0")[:-30], "truncated"),
    (b"\x1f\x8b\x08 not really gzip", "truncated"),
    (wheel_bytes("demo", "1.0"), "also a zip archive"),
    (sdist_bytes("demo", "1.0", extra_roots=("elsewhere",)), "exactly one top-level directory"),
    (sdist_bytes("demo", "1.0", metadata=metadata_text("demo", "2.0")), "does not match"),
])
def test_broken_sdists_are_refused(index: Index, data, words) -> None:
    assert_refused(index.upload("demo-1.0.tar.gz", data), 400, words, index)


def test_sdist_without_pkg_info_is_refused(index: Index) -> None:
    import io
    import tarfile
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("demo-1.0/setup.py")
        info.size = 0
        tf.addfile(info, io.BytesIO(b""))
    assert_refused(index.upload("demo-1.0.tar.gz", buf.getvalue()), 400, "PKG-INFO is missing", index)


@pytest.mark.parametrize("form, words", [
    ({":action": "submit"}, "unsupported :action"),
    ({":action": ""}, "missing :action"),
    ({"protocol_version": "2"}, "protocol_version"),
    ({"name": ""}, "missing name or version"),
    ({"version": "not a version"}, "not a pep 440 version"),
    ({"name": "-bad-"}, "invalid project name"),
])
def test_bad_form_fields_are_refused(index: Index, form, words) -> None:
    assert_refused(index.upload(WHEEL, wheel_bytes("demo", "1.0"), extra=form,
                                name=form.get("name", "demo"), version=form.get("version", "1.0")),
                   400, words, index)


def test_upload_without_a_file_is_refused(index: Index) -> None:
    form = {":action": "file_upload", "protocol_version": "1", "name": "demo", "version": "1.0",
            "filetype": "bdist_wheel", "sha256_digest": "0" * 64}
    response = index.client.post("/local/", data=form, headers=index.auth)
    assert_refused(response, 400, "does not have a file", index)


def test_upload_over_the_size_limit_is_413(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"max_upload_mb": 1}})
    data = wheel_bytes("demo", "1.0") + b"\0" * (1024 * 1024)
    assert_refused(index.upload(WHEEL, data), 413, "too large", index)


def test_whole_body_over_the_limit_is_413_before_reading(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"max_upload_mb": 1}})
    response = index.client.post("/local/", data=b"x" * (20 * 1024 * 1024), headers=index.auth,
                                 content_type="multipart/form-data; boundary=x")
    assert_refused(response, 413, "", index)


def test_unknown_fields_and_what_publishers_send_are_accepted(index: Index) -> None:
    data = sdist_bytes("demo", "1.0")
    extra = {"requires_python": "", "provides_extras": "cli", "metadata_version": "2.1",
             "comment": "", "some_future_field": "x", "classifiers": "Topic :: Utilities"}
    assert index.upload("demo-1.0.tar.gz", data, extra=extra).status_code == 200


def test_anonymous_upload_gets_the_basic_challenge(index: Index) -> None:
    response = index.upload(WHEEL, wheel_bytes("demo", "1.0"), auth={})
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Basic realm="pypilite"'
    assert index.file_rows() == [] and index.temp_files() == []


def test_wrong_password_is_401(index: Index) -> None:
    response = index.upload(WHEEL, wheel_bytes("demo", "1.0"), auth=basic("admin", "wrong"))
    assert response.status_code == 401
    assert index.file_rows() == []


def test_upload_to_a_proxy_names_where_uploads_go(index: Index) -> None:
    response = index.upload(WHEEL, wheel_bytes("demo", "1.0"), repo="pypi")
    assert_refused(response, 400, "upload to a hosted repository", index)


def test_upload_to_unknown_repository_is_404(index: Index) -> None:
    assert_refused(index.upload(WHEEL, wheel_bytes("demo", "1.0"), repo="nope"), 404, "not found", index)


@pytest.mark.parametrize("url", ["/", "/all", "/all/", "/local", "/local/"])
def test_upload_urls_never_redirect(index: Index, url: str) -> None:
    data = wheel_bytes("demo", "1.0")
    form = {":action": "file_upload", "protocol_version": "1", "name": "demo", "version": "1.0",
            "filetype": "bdist_wheel", "sha256_digest": hashlib.sha256(data).hexdigest()}
    import io
    form["content"] = (io.BytesIO(data), WHEEL)
    response = index.client.post(url, data=form, headers=index.auth)
    assert response.status_code == 200
    [row] = index.file_rows()
    assert row.project.repository.name == "local"


def test_oversized_form_fields_are_413(index: Index) -> None:
    response = index.upload(WHEEL, wheel_bytes("demo", "1.0"), extra={"description": "x" * (17 * 1024 * 1024)})
    assert_refused(response, 413, "for the other fields", index)


@pytest.mark.parametrize("attestations", ['[{"version": 1}]', "not json", ""])
def test_an_upload_with_attestations_is_refused(index: Index, attestations: str) -> None:
    response = index.upload(WHEEL, wheel_bytes("demo", "1.0"), extra={"attestations": attestations})
    assert response.status_code == 400 and "Attestations are not verified here (PEP 740)" in response.text
    assert index.file_rows() == []


def test_an_upload_to_an_index_it_may_not_read_answers_as_its_get(index: Index) -> None:
    """The 405 naming the upload URL is for those who may read the index: others learn nothing new."""
    assert index.client.post("/ghost/simple/").status_code == index.get("/ghost/simple/").status_code == 404
    index.run(repository_admin.update_repository, "local", {"public": False}, Actor.command_line())
    anonymous = index.client.post("/local/simple/", data={"content": (io.BytesIO(b"x"), "x.whl")},
                                  content_type="multipart/form-data")
    assert anonymous.status_code == index.get("/local/simple/").status_code == 401
    assert index.client.post("/local/simple/", headers=index.auth).status_code == 405
