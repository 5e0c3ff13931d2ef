"""What the UI shows of a release comes from the metadata extracted when a file was stored, never from the
archive, and the per-process cache of it is bounded by bytes."""

from __future__ import annotations

import tarfile
import zipfile
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import pytest

from pypilite import descriptions, dists
from pypilite.descriptions import InfoCache, ReleaseInfo, release_info
from pypilite.models import File, Project, Repository
from pypilite.repositories.base import DistFile
from pypilite.storage import LocalBlobStore
from tests.conftest import Index
from tests.distfactory import MB, long_name_sdist, metadata_text, wheel_bytes

INFO = ReleaseInfo(name="demo", summary="", author="", maintainer="", license="", requires_python="",
                   keywords="", home_page="", project_urls=(), requires_dist=(), classifiers=(),
                   description_html="", source="")


def dist(filename: str, sha256: str, info_sha256: str | None, packagetype: str = dists.SDIST) -> DistFile:
    return DistFile(repository="pypi", filename=filename, version="1.0", packagetype=packagetype, sha256=sha256,
                    size=None, upload_time=None, requires_python="", yanked=False, yanked_reason="",
                    metadata_sha256=None, uploader="", info_sha256=info_sha256)


@pytest.fixture
def no_archives(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args, **kwargs):
        raise AssertionError("an archive was opened for a page view")
    for module, name in ((dists, "metadata_bytes"), (tarfile, "open"), (tarfile, "TarFile"),
                         (zipfile, "ZipFile")):
        monkeypatch.setattr(module, name, never)


def test_a_stored_archive_without_extracted_metadata_shows_nothing(tmp_path: Path, no_archives) -> None:
    blobs = LocalBlobStore(tmp_path)
    bomb = blobs.put_bytes(long_name_sdist(300 * MB, root="demo-1.0"))
    assert release_info(blobs, [dist("demo-1.0.tar.gz", bomb, None)]) is None


def test_the_extracted_metadata_is_read_with_a_bound(tmp_path: Path, no_archives,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(descriptions, "MAX_METADATA_BYTES", 200)
    blobs = LocalBlobStore(tmp_path)
    raw = metadata_text("demo", "1.0").replace("A long description.", "x" * 1000 + "END")
    info = release_info(blobs, [dist("demo-1.0.tar.gz", "ab" * 32, blobs.put_bytes(raw.encode()))])
    assert info is not None and info.name == "demo" and "END" not in info.description_html


def test_files_sharing_metadata_share_one_entry_and_keep_their_own_source(tmp_path: Path) -> None:
    blobs = LocalBlobStore(tmp_path)
    sha = blobs.put_bytes(metadata_text("shared", "1.0").encode())
    first = release_info(blobs, [dist("shared-1.0-cp311-cp311-linux_x86_64.whl", "ab" * 32, sha, dists.WHEEL)])
    second = release_info(blobs, [dist("shared-1.0-cp312-cp312-linux_x86_64.whl", "cd" * 32, sha, dists.WHEEL)])
    assert first is not None and second is not None
    assert first.source.startswith("shared-1.0-cp311") and second.source.startswith("shared-1.0-cp312")
    assert descriptions._CACHE.get(sha) is not None


def test_the_cache_is_bounded_by_bytes_least_recently_used_out_first() -> None:
    cache = InfoCache(max_bytes=8000)
    for key in "abcdefgh":
        cache.put(key, replace(INFO, description_html=key * 900))
    assert cache.get("a") is not None  # now the most recently used
    cache.put("i", replace(INFO, description_html="i" * 900))
    assert cache.get("b") is None
    assert all(cache.get(key) is not None for key in "acdefghi")


def test_an_entry_over_an_eighth_of_the_cache_is_not_kept() -> None:
    cache = InfoCache(max_bytes=8000)
    cache.put("small", INFO)
    cache.put("huge", replace(INFO, description_html="x" * 1001))
    assert cache.get("huge") is None and cache.get("small") is not None


def test_html_too_large_to_keep_is_shown_as_plain_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """Else a README that renders past the cache's limit for one entry would be rendered on every view."""
    assert "<em>" in descriptions.render("*x* " * 100, "text/markdown")
    monkeypatch.setattr(descriptions, "MAX_RENDERED_HTML", 1000)
    html = descriptions.render("*x* " * 300, "text/markdown")
    assert "<em>" not in html and "*x*" in html


def test_the_ui_never_opens_a_proxied_archive(index: Index, no_archives) -> None:
    """A proxy has stored the file (a bomb) but extracted nothing: the page shows no description."""
    blobs = index.app.extensions["pypilite"].blobs
    sha256 = blobs.put_bytes(long_name_sdist(300 * MB, root="bomb-1.0"))

    def cache() -> None:
        proxy = Repository.get(Repository.name == "pypi")
        project = Project.create(repository=proxy, name="bomb", display_name="bomb")
        File.create(project=project, filename="bomb-1.0.tar.gz", version="1.0", packagetype="sdist",
                    sha256=sha256, size=1, upload_time=datetime(2024, 1, 2), origin_url="http://127.0.0.1:9/b")
    index.run(cache)
    response = index.get("/ui/pypi/bomb/")
    assert response.status_code == 200
    assert "not stored here yet" in response.get_data(as_text=True)


def test_a_hosted_upload_shows_its_description_from_the_extracted_metadata(index: Index) -> None:
    text = metadata_text("demo", "1.0").replace("A long description.", "Words from METADATA.")
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0", metadata=text)).status_code == 200
    assert "<p>Words from METADATA.</p>" in index.get("/ui/local/demo/").get_data(as_text=True)


def test_a_description_that_takes_its_renderer_too_long_is_shown_as_plain_text(monkeypatch) -> None:
    """Deeply nested quotes take the sanitizer seconds to minutes; a worker must answer whatever a package says."""
    monkeypatch.setattr(descriptions, "RENDER_SECONDS", 0.5)
    html = descriptions.render_bounded("> " * 40_000 + "deep", "text/markdown")
    assert "<blockquote>" not in html and "deep" in html
    assert descriptions.render_bounded("*fine*", "text/markdown") == "<p><em>fine</em></p>\n"


def test_a_renderer_that_breaks_on_hostile_input_gives_plain_text() -> None:
    nested = "".join(" " * depth + "x\n\n" for depth in range(0, 800, 2))  # docutils' RecursionError
    assert descriptions.render_bounded(nested, "").startswith("x<br>")
