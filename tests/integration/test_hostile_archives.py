"""Hostile archives and filenames against the real server under gunicorn: decompression and header bombs,
zip central directories that lie or are merely huge, tar/zip polyglots, members that escape their directory,
and filenames that would carry quotes or line breaks into headers. Each is refused with a one-line 400 within
the client's timeout, nothing is stored, and no worker's peak memory grows by more than a bound; the same
bomb fetched through a proxy and viewed in the UI, anonymously, is never opened by the page."""

from __future__ import annotations

import hashlib
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urljoin

import pytest
import requests

from tests.distfactory import (
    MB,
    long_name_sdist,
    many_members_sdist,
    metadata_text,
    pax_sdist,
    sdist_bytes,
    sdist_with,
    tar_member,
    wheel_bytes,
    wheel_with_compressed_metadata,
    zip_declaring,
    zip_sdist_bytes,
    zip_with,
    zip_with_directory,
)
from tests.integration.conftest import LiveServer, group_processes, listed, start_server, stop_server
from tests.upstream import Dist, Upstream, wheel

TIMEOUT = 30  # the client's own: a bomb must be answered well within it
# How much a refused bomb may raise a worker's peak resident memory (a real large central directory is read
# once, up to its cap, to count its entries).
MEMORY_BOUND = 64 * MB
GOOD_WHEEL = wheel_bytes("bomb", "1.0")
UPSTREAM_BOMB = long_name_sdist(300 * MB)
HOSTILE_NAMES = ['demo-1.0-py3-none-any";x=".whl', "demo-1.0-py3-none-any;x=1.whl",
                 "demo-1.0-py3-none-any\r\nX-Injected: 1.whl", "demo-1.0-py3-none-\u0430ny.whl",
                 "demo-1.0-py3-none-any .whl", "demo-1.0 .tar.gz", "demo-1.0-py3-none-any\u2028.whl"]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    good = wheel("demo", "1.0")
    hostile = [Dist("demo", name, good.data) for name in HOSTILE_NAMES if "\r" not in name]
    served = Upstream(tmp_path_factory.mktemp("upstream"), [Dist("bomb", "bomb-1.0.tar.gz", UPSTREAM_BOMB), good,
                                                            *hostile], json_api=True).start()
    yield served
    served.stop()


@pytest.fixture(scope="module")
def server(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    repositories = [{"name": "local", "repository_type": "hosted"},
                    {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 5}]
    live = start_server("gunicorn", tmp_path_factory.mktemp("hostile"), repositories)
    assert upload(live, "warm-1.0-py3-none-any.whl", wheel_bytes("warm", "1.0")).status_code == 200

    def warm(_: int) -> None:
        assert upload(live, "warm-1.0-py3-none-any.whl", wheel_bytes("warm", "1.0")).status_code == 200
        other = sdist_bytes("warm", "2.0", metadata=metadata_text("warm", "3.0"))  # read, then refused
        assert upload(live, "warm-2.0.tar.gz", other, version="2.0").status_code == 400
        assert requests.get(f"{live.url}/ui/local/warm/", timeout=TIMEOUT).status_code == 200
    # Both workers (requests in parallel reach both) load what an upload and a page view need before any
    # peak is measured.
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(warm, range(16)))
    yield live
    stop_server(live.process)


def upload(server: LiveServer, filename: str, data: bytes, *, name: str | None = None,
           version: str = "1.0") -> requests.Response:
    """A legacy upload whose filename arrives exactly as given (RFC 2231 encoded: quotes, CR, LF and all)."""
    boundary = "pypilite-hostile-boundary"
    fields = {":action": "file_upload", "protocol_version": "1", "name": name or filename.split("-")[0],
              "version": version, "filetype": "bdist_wheel" if filename.endswith(".whl") else "sdist",
              "sha256_digest": hashlib.sha256(data).hexdigest()}
    body = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
                    for key, value in fields.items())
    body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"content\"; "
             f"filename*=UTF-8''{quote(filename, safe='')}\r\nContent-Type: application/octet-stream\r\n\r\n"
             ).encode() + data + f"\r\n--{boundary}--\r\n".encode()
    return requests.post(f"{server.url}/local/", data=body, auth=("admin", server.admin_password), timeout=TIMEOUT,
                         headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})


def workers(server: LiveServer) -> set[int]:
    return set(group_processes(server.process.pid)) - {server.process.pid}


def status(pid: int, field: str) -> int:
    """A memory figure of /proc/<pid>/status (VmHWM: the peak resident memory), in bytes."""
    return int(Path(f"/proc/{pid}/status").read_text().split(f"{field}:", 1)[1].split()[0]) * 1024


@contextmanager
def bounded_memory(server: LiveServer) -> Iterator[None]:
    """The workers' peaks start again from their present size (Linux's clear_refs), so each attack is
    measured on its own, whatever an earlier one did."""
    pids = workers(server)
    for pid in pids:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    before = {pid: (status(pid, "VmHWM"), status(pid, "RssFile")) for pid in pids}
    yield
    assert workers(server) == pids, "a worker died or was replaced"
    # Less the file-backed pages read in again: the kernel takes those from an idle process on a busy machine.
    grown = max(status(pid, "VmHWM") - peak - max(status(pid, "RssFile") - files, 0)
                for pid, (peak, files) in before.items())
    assert grown < MEMORY_BOUND, f"a worker's peak memory grew by {grown // MB} MiB"


def stored(server: LiveServer) -> set[Path]:
    return {p for p in (server.data_dir / "blobs").rglob("*") if p.is_file()}


def assert_refused(server: LiveServer, response: requests.Response, words: str, blobs: set[Path]) -> None:
    assert response.status_code == 400, response.text[:300]
    assert response.text.count("\n") == 1 and response.text.endswith("\n")
    assert words.lower() in response.text.lower(), response.text
    assert response.reason == response.text.strip()[:300]
    assert stored(server) == blobs
    assert not list((server.data_dir / "tmp").glob("*"))


BOMBS: dict[str, tuple[str, Callable[[], bytes], str]] = {
    "tar-long-name": ("bomb-1.0.tar.gz", lambda: long_name_sdist(300 * MB), "header"),
    "tar-long-names": ("bomb-1.0.tar.gz", lambda: long_name_sdist(50 * MB, count=60_000), "compression ratio"),
    "tar-pax": ("bomb-1.0.tar.gz", lambda: pax_sdist(300 * MB), "header"),
    "tar-members": ("bomb-1.0.tar.gz", lambda: many_members_sdist(1_000_000), "members"),
    "zip-declared-size": ("bomb-1.0-py3-none-any.whl",
                          lambda: zip_declaring(GOOD_WHEEL, entries=3, size=2**40), "central directory"),
    "zip-declared-entries": ("bomb-1.0-py3-none-any.whl",
                             lambda: zip_declaring(GOOD_WHEEL, entries=10**9, size=500), "members"),
    "zip-directory": ("bomb-1.0-py3-none-any.whl", lambda: zip_with_directory(GOOD_WHEEL, 600_000), "members"),
    "polyglot": ("bomb-1.0-py3-none-any.whl", lambda: long_name_sdist(300 * MB) + GOOD_WHEEL,
                 "must begin with a zip member"),
    # zipfile keeps a bzip2 or LZMA member's output whole, whatever its headers declare.
    "zip-bzip2-member": ("bomb-1.0-py3-none-any.whl",
                         lambda: wheel_with_compressed_metadata("bomb", "1.0", zipfile.ZIP_BZIP2, 512 * MB),
                         "method other than deflate"),
    "zip-lzma-member": ("bomb-1.0-py3-none-any.whl",
                        lambda: wheel_with_compressed_metadata("bomb", "1.0", zipfile.ZIP_LZMA, 512 * MB),
                        "method other than deflate"),
    # Names just under the header cap: judging each link cost time in proportion to its length, squared.
    "tar-long-link-names": ("bomb-1.0.tar.gz", lambda: sdist_with("bomb", "1.0", *(
        tar_member(f"bomb-1.0/{i}/" + "a/" * 31_000, tarfile.SYMTYPE, "x") for i in range(40))),
                            "over 1024 characters"),
}


@pytest.mark.parametrize("bomb", BOMBS)
def test_a_bomb_is_refused_with_bounded_memory(server: LiveServer, bomb: str) -> None:
    filename, build, words = BOMBS[bomb]
    data = build()
    blobs = stored(server)
    with bounded_memory(server):
        response = upload(server, filename, data)
    assert_refused(server, response, words, blobs)
    assert listed(server, "bomb") == {}


def test_a_proxied_bomb_viewed_anonymously_is_never_opened(server: LiveServer) -> None:
    with bounded_memory(server):
        page = requests.get(f"{server.simple('pypi')}bomb/", timeout=TIMEOUT,
                            headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        assert page.status_code == 200
        (entry,) = page.json()["files"]
        download = requests.get(urljoin(page.url, entry["url"]), timeout=TIMEOUT)
        assert download.status_code == 200 and download.content == UPSTREAM_BOMB
        for _ in range(4):  # reaching both workers
            view = requests.get(f"{server.url}/ui/pypi/bomb/", timeout=TIMEOUT)
            assert view.status_code == 200
            assert "not stored here yet" in view.text


DESCRIPTIONS = {
    # Minutes of a sanitizer's time at full length; docutils' recursion limit at a few hundred levels.
    "deep-quotes": ("text/markdown", "> " * 200_000 + "deep"),
    "deep-indents": ("", "".join(" " * depth + "x\n\n" for depth in range(0, 800, 2))),
}


@pytest.mark.parametrize("kind", DESCRIPTIONS)
def test_a_description_written_to_stall_its_renderer_still_gets_a_page(server: LiveServer, kind: str) -> None:
    """Each worker renders it once, within a bound, and the page answers (as plain text past the bound)."""
    content_type, description = DESCRIPTIONS[kind]
    name = f"stall-{kind}"
    metadata = (f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\nDescription-Content-Type: {content_type}\n\n"
                f"{description}\n")
    wheel = wheel_bytes(name, "1.0", metadata=metadata)
    assert upload(server, f"{name.replace('-', '_')}-1.0-py3-none-any.whl", wheel, name=name).status_code == 200
    with ThreadPoolExecutor(4) as pool:  # both workers, at once
        views = list(pool.map(lambda _: requests.get(f"{server.url}/ui/local/{name}/", timeout=TIMEOUT), range(4)))
    assert all(view.status_code == 200 for view in views)
    assert len(workers(server)) == 2


@pytest.mark.parametrize("filename", HOSTILE_NAMES)
def test_a_hostile_filename_is_refused_on_upload(server: LiveServer, filename: str) -> None:
    data = sdist_bytes("demo", "1.0") if filename.endswith(".tar.gz") else wheel_bytes("demo", "1.0")
    blobs = stored(server)
    assert_refused(server, upload(server, filename, data, name="demo"), "not a plain file name", blobs)
    assert listed(server, "demo") == {}


def test_hostile_upstream_filenames_are_never_offered(server: LiveServer) -> None:
    files = listed(server, "demo", repo="pypi")
    assert list(files) == ["demo-1.0-py3-none-any.whl"]
    html = requests.get(f"{server.simple('pypi')}demo/", timeout=TIMEOUT).text
    assert '";x="' not in html and ";x=1" not in html and "\u0430ny" not in html and "any .whl" not in html


ESCAPES: dict[str, tuple[str, Callable[[], bytes], str]] = {
    **{f"tar {name!r}": ("demo-1.0.tar.gz", lambda name=name: sdist_with("demo", "1.0", tar_member(name)),
                         "not a relative path")
       for name in ("/etc/evil", "demo-1.0/../../evil", "demo-1.0/..\\..\\evil", "C:/evil")},
    **{f"zip sdist {name!r}": ("demo-1.0.zip", lambda name=name: zip_with(zip_sdist_bytes("demo", "1.0"), name),
                               "not a relative path")
       for name in ("/etc/evil", "demo-1.0/../../evil", "demo-1.0/..\\..\\evil", "C:/evil")},
    **{f"wheel {name!r}": ("demo-1.0-py3-none-any.whl", lambda name=name: zip_with(wheel_bytes("demo", "1.0"), name),
                           "not a relative path")
       for name in ("/etc/evil", "demo/../../evil", "demo/..\\..\\evil", "C:/evil")},
    "tar symlink absolute": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/link", tarfile.SYMTYPE, "/etc/passwd")), "links outside"),
    "tar symlink up": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/link", tarfile.SYMTYPE, "../../etc/passwd")), "links outside"),
    "tar hardlink out": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/hard", tarfile.LNKTYPE, "../etc/passwd")), "links outside"),
    # Out of the root but still inside the archive: another project's files, or the unpack directory itself.
    "tar symlink to the parent": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/s1", tarfile.SYMTYPE, "..")), "links outside"),
    "tar symlink beside the root": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/s2", tarfile.SYMTYPE, "../other/x")), "links outside"),
    "tar hardlink beside the root": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/h", tarfile.LNKTYPE, "other-1.0/x")), "links outside"),
    # Each link stays inside on its own; followed together they climb out.
    "tar chain of links": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/a/b/up", tarfile.SYMTYPE, "../.."),
        tar_member("demo-1.0/a/b/out", tarfile.SYMTYPE, "up/../x")), "links outside"),
    "tar link loop": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/p", tarfile.SYMTYPE, "q"),
        tar_member("demo-1.0/q", tarfile.SYMTYPE, "p")), "links outside"),
    "tar device": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/null", tarfile.CHRTYPE)), "not a file, a directory or a link"),
    "tar fifo": ("demo-1.0.tar.gz", lambda: sdist_with(
        "demo", "1.0", tar_member("demo-1.0/fifo", tarfile.FIFOTYPE)), "not a file, a directory or a link"),
}


@pytest.mark.parametrize("escape", ESCAPES)
def test_an_archive_that_escapes_its_directory_is_refused(server: LiveServer, escape: str) -> None:
    filename, build, words = ESCAPES[escape]
    blobs = stored(server)
    assert_refused(server, upload(server, filename, build(), name="demo"), words, blobs)
    assert listed(server, "demo") == {}


def test_the_store_is_consistent_after_every_refusal(server: LiveServer) -> None:
    server.assert_check_clean()
