"""Archive checks in-process, one cap or rule at a time: every read of an archive is bounded, nothing that
could land outside its directory gets in, and a distribution filename holds only what the specs allow.
The same attacks against the real server are in tests/integration/test_hostile_archives.py."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
from pathlib import Path

import pytest

from pypilite import dists
from pypilite.dists import InvalidDistribution, metadata_bytes, parse_filename
from tests.distfactory import (
    MB,
    header_chain_sdist,
    long_name_sdist,
    many_members_sdist,
    metadata_text,
    pax_sdist,
    sdist_bytes,
    sdist_with,
    tar_gz,
    tar_header,
    tar_member,
    wheel_bytes,
    wheel_with_compressed_metadata,
    zip_declaring,
    zip_sdist_bytes,
    zip_with,
    zip_with_directory,
)

WHEEL = "demo-1.0-py3-none-any.whl"
SDIST = "demo-1.0.tar.gz"
ZIP_SDIST = "demo-1.0.zip"


def check(tmp_path: Path, filename: str, data: bytes) -> bytes:
    path = tmp_path / filename
    path.write_bytes(data)
    return metadata_bytes(path, parse_filename(filename), filename)


def refused(tmp_path: Path, filename: str, data: bytes, words: str) -> str:
    with pytest.raises(InvalidDistribution) as caught:
        check(tmp_path, filename, data)
    message = str(caught.value)
    assert words.lower() in message.lower(), message
    assert "\n" not in message and "\r" not in message and len(message) < 300
    return message


# Filenames

@pytest.mark.parametrize("filename", [
    "demo-1.0-py3-none-any.whl", "Foo_Bar-1.0.tar.gz", "foo-bar-1.0.tar.gz", "Foo.Bar-1.0.zip",
    "demo-1!2.0.post1.dev3-py2.py3-none-any.whl", "torch-2.0.0+cu118-cp311-cp311-linux_x86_64.whl",
    "demo-1.0-1build-cp311-abi3-manylinux_2_17_x86_64.manylinux2014_x86_64.whl",
    "demo-1.0-pp39-pypy39_pp73-macosx_10_9_x86_64.whl", "demo-1.0-cp27-cp27mu-win_amd64.whl",
])
def test_filenames_the_specs_allow_are_accepted(filename: str) -> None:
    parse_filename(filename)


@pytest.mark.parametrize("filename", [
    'demo-1.0-py3-none-any";x=".whl', "demo-1.0-py3-none-any;.whl", "demo-1.0-py3-none-any .whl",
    "demo-1.0 .tar.gz", "demo- 1.0.tar.gz", "demo-1.0-py3-none-any\r\nX-Evil: 1.whl", "demo-1.0\n.tar.gz",
    "demo-1.0-py3-none-\u0430ny.whl", "d\u0435mo-1.0.tar.gz", "demo-1.0-py3-none-any\u2028.whl",
    "demo-1.0-py3-none-any%22.whl", "demo-1.0-py3-none-any'.whl", "demo-1.0-py3-none-any<b>.whl",
    "../demo-1.0.tar.gz", "demo/1.0.tar.gz", "demo\\1.0.tar.gz", ".demo-1.0.tar.gz", "demo-1.0.tar.gz\0",
])
def test_hostile_filenames_are_not_plain_file_names(filename: str) -> None:
    with pytest.raises(InvalidDistribution, match="not a plain file name"):
        parse_filename(filename)


@pytest.mark.parametrize("filename", ["demo-1.0-py3-none-.whl", "demo-1.0-py3-none-any..x.whl",
                                      "demo-1.0-py3-none-a.+b.whl"])
def test_a_wheel_tag_must_parse(filename: str) -> None:
    with pytest.raises(InvalidDistribution, match="Invalid distribution filename"):
        parse_filename(filename)


# Tar: headers, members, decompression

def test_a_gnu_long_name_over_the_cap_is_refused_before_it_is_read(tmp_path: Path) -> None:
    refused(tmp_path, SDIST, long_name_sdist(dists.MAX_TAR_HEADER_BYTES + 1, root="demo-1.0"), "header")


def test_a_pax_header_over_the_cap_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, SDIST, pax_sdist(dists.MAX_TAR_HEADER_BYTES + 1, root="demo-1.0"), "header")


def test_a_chain_of_headers_is_bounded_before_python_recursion_is(tmp_path: Path) -> None:
    refused(tmp_path, SDIST, header_chain_sdist(10_000, root="demo-1.0"), "header")


def test_long_names_and_pax_records_under_the_cap_are_read(tmp_path: Path) -> None:
    info = tarfile.TarInfo("demo-1.0/" + "d" * 200 + "/file")
    info.pax_headers = {"comment": "x" * 1000}
    assert b"Name: demo" in check(tmp_path, SDIST, sdist_with("demo", "1.0", info))
    refused(tmp_path, SDIST, long_name_sdist(1800, count=2, root="demo-1.0"), "PKG-INFO is missing")


def test_a_name_or_link_target_over_the_path_cap_is_refused(tmp_path: Path) -> None:
    """Judging a path costs its length: no real member's name or link target comes near the cap."""
    refused(tmp_path, SDIST, long_name_sdist(dists.MAX_PATH_LENGTH + 100, root="demo-1.0"), "over 1024 characters")
    refused(tmp_path, WHEEL, zip_with(wheel_bytes("demo", "1.0"), "demo/" + "a" * dists.MAX_PATH_LENGTH),
            "over 1024 characters")
    target = "/".join(["a"] * 600)
    refused(tmp_path, SDIST, sdist_with("demo", "1.0", tar_member("demo-1.0/l", tarfile.SYMTYPE, target)),
            "over 1024 characters")


def test_the_number_of_links_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dists, "MAX_LINKS", 3)
    links = [tar_member(f"demo-1.0/l{i}", tarfile.SYMTYPE, "setup.py") for i in range(4)]
    refused(tmp_path, SDIST, sdist_with("demo", "1.0", *links), "more than 3 links")
    check(tmp_path, SDIST, sdist_with("demo", "1.0", *links[:3]))


def test_member_count_is_capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dists, "MAX_MEMBERS", 10)
    refused(tmp_path, SDIST, many_members_sdist(11, root="demo-1.0"), "more than 10 members")
    refused(tmp_path, ZIP_SDIST, zip_with(zip_sdist_bytes("demo", "1.0"), *(f"demo-1.0/{i}" for i in range(9))),
            "more than 10 members")
    refused(tmp_path, WHEEL, zip_with(wheel_bytes("demo", "1.0"), *(f"demo/{i}" for i in range(7))),
            "more than 10 members")
    check(tmp_path, WHEEL, zip_with(wheel_bytes("demo", "1.0"), *(f"demo/{i}" for i in range(6))))


def test_decompressed_bytes_are_capped_by_the_ratio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted on the bytes the stream yields, not on the sizes headers declare, and headers included."""
    monkeypatch.setattr(dists, "RATIO_FLOOR", MB)
    refused(tmp_path, SDIST, long_name_sdist(4 * MB, count=5000, root="demo-1.0"), "compression ratio")
    data = tar_gz([tar_header("demo-1.0/big", size=4 * MB), b"\0" * 4 * MB])
    refused(tmp_path, SDIST, data, "compression ratio")


def test_pkg_info_over_the_metadata_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dists, "MAX_METADATA_BYTES", 100)
    refused(tmp_path, SDIST, sdist_bytes("demo", "1.0", metadata=metadata_text("demo", "1.0") + "x" * 100),
            "PKG-INFO too large")
    refused(tmp_path, WHEEL, wheel_bytes("demo", "1.0", metadata=metadata_text("demo", "1.0") + "x" * 100),
            "metadata file too large")


def test_a_tar_gz_must_start_as_gzip(tmp_path: Path) -> None:
    refused(tmp_path, SDIST, gzip.decompress(sdist_bytes("demo", "1.0")), "not a gzip-compressed tar archive")


# Zip: the central directory before zipfile reads it, the member read

def test_a_large_real_wheel_passes(tmp_path: Path) -> None:
    """Tens of thousands of members: past 65,535 zipfile writes the zip64 end record; a comment too."""
    data = zip_with(wheel_bytes("demo", "1.0"), *(f"demo/sub{i // 1000}/module_{i}.py" for i in range(70_000)))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        assert len(zf.infolist()) > 0xFFFF
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as zf:
        zf.comment = b"a comment"
    assert zipfile.stringEndArchive64 in buf.getvalue()[-200:]
    assert b"Name: demo" in check(tmp_path, WHEEL, buf.getvalue())


def test_a_declared_huge_central_directory_is_refused(tmp_path: Path) -> None:
    refused(tmp_path, WHEEL, zip_declaring(wheel_bytes("demo", "1.0"), entries=3, size=2**40), "central directory")
    refused(tmp_path, WHEEL, zip_declaring(wheel_bytes("demo", "1.0"), entries=10**9, size=300), "members")


def test_a_real_large_central_directory_is_refused_by_its_entries(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The end record says 3 entries; the directory holds 50 more: counted before zipfile parses them."""
    monkeypatch.setattr(dists, "MAX_MEMBERS", 20)
    data = zip_with_directory(wheel_bytes("demo", "1.0"), 50)
    offset = len(data) - 22
    lying = data[:offset + 8] + struct.pack("<HH", 3, 3) + data[offset + 12:]
    refused(tmp_path, WHEEL, lying, "more than 20 members")


def test_a_central_directory_over_the_cap_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dists, "MAX_ZIP_DIRECTORY_BYTES", 1000)
    refused(tmp_path, WHEEL, zip_with(wheel_bytes("demo", "1.0"), *(f"demo/{'m' * 50}{i}" for i in range(20))),
            "central directory")


def test_a_member_is_read_no_further_than_it_declares(tmp_path: Path) -> None:
    """METADATA declared 10 bytes long while its data inflates to megabytes: zipfile stops at 10 and the CRC
    does not match."""
    name = "demo-1.0.dist-info/METADATA"
    data = bytearray(wheel_bytes("demo", "1.0", metadata=metadata_text("demo", "1.0") + "x" * 4 * MB))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        local = zf.getinfo(name).header_offset
        central = data.index(name.encode(), zf.start_dir) - zipfile.sizeCentralDir
    struct.pack_into("<L", data, local + 22, 10)  # the uncompressed size in the local header
    struct.pack_into("<L", data, central + 24, 10)  # and in the central directory
    refused(tmp_path, WHEEL, bytes(data), "metadata cannot be read")


@pytest.mark.parametrize("filename", [WHEEL, ZIP_SDIST])
def test_anything_before_the_zip_is_refused_without_reading_it_as_a_tar(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, filename: str) -> None:
    def never(*args, **kwargs):
        raise AssertionError("a zip was parsed as a tar")
    for name in ("open", "is_tarfile", "TarFile"):
        monkeypatch.setattr(tarfile, name, never)
    good = wheel_bytes("demo", "1.0") if filename == WHEEL else zip_sdist_bytes("demo", "1.0")
    check(tmp_path, filename, good)
    refused(tmp_path, filename, long_name_sdist(10 * MB) + good, "must begin with a zip member")
    refused(tmp_path, filename, b"\0" * 512 + good, "must begin with a zip member")
    refused(tmp_path, filename, good + good, "bytes before or inside the zip archive")
    refused(tmp_path, filename, tar_header("PK\x03\x04" + "x" * 50, size=len(good)) + good, "also a tar archive")


# Members that would land outside the directory they are unpacked into

ESCAPING_NAMES = ["/etc/evil", "demo-1.0/../../evil", "..", "demo-1.0\\..\\evil", "demo-1.0/..\\..\\evil", "C:/evil",
                  "c:evil"]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_escaping_member_names_are_refused_in_every_archive_kind(tmp_path: Path, name: str) -> None:
    refused(tmp_path, SDIST, sdist_with("demo", "1.0", tar_member(name)), "not a relative path")
    refused(tmp_path, ZIP_SDIST, zip_with(zip_sdist_bytes("demo", "1.0"), name), "not a relative path")
    refused(tmp_path, WHEEL, zip_with(wheel_bytes("demo", "1.0"), name), "not a relative path")


def test_a_nul_in_a_zip_member_name_is_refused(tmp_path: Path) -> None:
    """zipfile cuts a name at NUL; another tool may not: both must read the same archive."""
    data = zip_with(wheel_bytes("demo", "1.0"), "demo/x@/../../evil").replace(b"demo/x@", b"demo/x\0")
    refused(tmp_path, WHEEL, data, "not a relative path")


@pytest.mark.parametrize("member, words", [
    (tar_member("demo-1.0/link", tarfile.SYMTYPE, "/etc/passwd"), "links outside"),
    (tar_member("demo-1.0/link", tarfile.SYMTYPE, "../../etc/passwd"), "links outside"),
    (tar_member("demo-1.0/sub/link", tarfile.SYMTYPE, "../../.."), "links outside"),
    (tar_member("demo-1.0/hard", tarfile.LNKTYPE, "/etc/passwd"), "links outside"),
    (tar_member("demo-1.0/hard", tarfile.LNKTYPE, "../etc/passwd"), "links outside"),
    (tar_member("demo-1.0/parent", tarfile.SYMTYPE, ".."), "links outside the archive's root"),
    (tar_member("demo-1.0/beside", tarfile.SYMTYPE, "../other-1.0/x"), "links outside the archive's root"),
    (tar_member("demo-1.0/hard", tarfile.LNKTYPE, "other-1.0/x"), "links outside the archive's root"),
    (tar_member("demo-1.0/null", tarfile.CHRTYPE), "not a file, a directory or a link"),
    (tar_member("demo-1.0/disk", tarfile.BLKTYPE), "not a file, a directory or a link"),
    (tar_member("demo-1.0/fifo", tarfile.FIFOTYPE), "not a file, a directory or a link"),
])
def test_links_out_and_special_files_are_refused(tmp_path: Path, member: tarfile.TarInfo, words: str) -> None:
    refused(tmp_path, SDIST, sdist_with("demo", "1.0", member), words)


def test_links_inside_the_archive_are_accepted(tmp_path: Path) -> None:
    data = sdist_with("demo", "1.0", tar_member("demo-1.0/README", tarfile.SYMTYPE, "setup.py"),
                      tar_member("demo-1.0/docs/up", tarfile.SYMTYPE, "../setup.py"),
                      tar_member("demo-1.0/docs/root", tarfile.SYMTYPE, ".."),
                      tar_member("demo-1.0/docs/again", tarfile.SYMTYPE, "root/docs/up"),
                      tar_member("demo-1.0/copy.py", tarfile.LNKTYPE, "demo-1.0/setup.py"))
    assert b"Name: demo" in check(tmp_path, SDIST, data)


@pytest.mark.parametrize("members", [
    # Each stays inside on its own; followed together, they climb out.
    (tar_member("demo-1.0/a/b/up", tarfile.SYMTYPE, "../.."), tar_member("demo-1.0/a/b/out", tarfile.SYMTYPE,
                                                                          "up/../x")),
    (tar_member("demo-1.0/deep", tarfile.SYMTYPE, "a/b"), tar_member("demo-1.0/a/b", tarfile.SYMTYPE, "../.."),
     tar_member("demo-1.0/out", tarfile.SYMTYPE, "deep/x")),
    (tar_member("demo-1.0/p", tarfile.SYMTYPE, "q"), tar_member("demo-1.0/q", tarfile.SYMTYPE, "p")),  # a loop
])
def test_chains_of_links_are_followed_as_the_file_system_would(tmp_path: Path, members) -> None:
    refused(tmp_path, SDIST, sdist_with("demo", "1.0", *members), "links outside the archive's root")


def test_member_names_in_messages_are_one_quoted_line(tmp_path: Path) -> None:
    message = refused(tmp_path, SDIST, sdist_with("demo", "1.0", tar_member("/evil\r\nX: " + "y" * 500)),
                      "not a relative path")
    assert "\\r\\n" in message and "..." in message and message.isascii()


@pytest.mark.parametrize("method", [zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA])
def test_metadata_compressed_with_another_method_than_deflate_is_refused(tmp_path: Path, method: int) -> None:
    """zipfile inflates deflate a bounded slice at a time, but keeps what bzip2 and LZMA give whole."""
    refused(tmp_path, WHEEL, wheel_with_compressed_metadata("demo", "1.0", method), "method other than deflate")
    refused(tmp_path, WHEEL, wheel_with_compressed_metadata("demo", "1.0", method, 64 * MB),
            "method other than deflate")
