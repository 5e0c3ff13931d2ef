"""Distributions made in code, so every broken variant a test needs is a parameter, not a checked-in binary."""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path

# Fixed timestamps make a distribution's bytes a function of its arguments alone: two calls made on either side of
# a second's boundary would otherwise give two files, two digests and two blobs where a test expects one.
_ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)


def metadata_text(name: str, version: str, requires_python: str = "", requires: tuple[str, ...] = (),
                  license_expression: str = "") -> str:
    lines = ["Metadata-Version: 2.4" if license_expression else "Metadata-Version: 2.1", f"Name: {name}",
             f"Version: {version}", "Summary: a test package"]
    if license_expression:
        lines.append(f"License-Expression: {license_expression}")
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires]
    return "\n".join(lines) + "\n\nA long description.\n"


def wheel_bytes(name: str, version: str, *, metadata: str | None = None, dist_info: str | None = None,
                with_wheel_file: bool = True, with_metadata: bool = True, with_record: bool = True,
                requires_python: str = "", payload: bytes = b"") -> bytes:
    """`payload` is stored uncompressed as a data file, to make a wheel as large as a test needs."""
    stem = dist_info or f"{name.replace('-', '_')}-{version}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        module = name.replace("-", "_").replace(".", "_").lower()
        zf.writestr(_member(f"{module}/__init__.py"), f"VERSION = {version!r}\n")
        if payload:
            zf.writestr(_member(f"{module}/payload.bin"), payload, compress_type=zipfile.ZIP_STORED)
        if with_metadata:
            zf.writestr(_member(f"{stem}.dist-info/METADATA"),
                        metadata or metadata_text(name, version, requires_python))
        if with_wheel_file:
            zf.writestr(_member(f"{stem}.dist-info/WHEEL"),
                        "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        if with_record:
            zf.writestr(_member(f"{stem}.dist-info/RECORD"), "")
    return buf.getvalue()


def sdist_bytes(name: str, version: str, *, root: str | None = None, metadata: str | None = None,
                extra_roots: tuple[str, ...] = ()) -> bytes:
    root = root or f"{name.replace('-', '_')}-{version}"
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as compressed, tarfile.open(fileobj=compressed, mode="w") as tf:
        files = {f"{root}/PKG-INFO": metadata or metadata_text(name, version),
                 f"{root}/setup.py": "from setuptools import setup\nsetup()\n"}
        files.update({f"{extra}/stray.txt": "stray" for extra in extra_roots})
        for path, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(path)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def _member(name: str) -> zipfile.ZipInfo:
    """writestr gives a ZipInfo neither the archive's compression nor a mode, so both are set here."""
    info = zipfile.ZipInfo(name, _ZIP_DATE_TIME)
    info.compress_type = zipfile.ZIP_DEFLATED
    info.external_attr = 0o644 << 16
    return info


def write(directory: Path, filename: str, data: bytes) -> Path:
    path = directory / filename
    path.write_bytes(data)
    return path


# Hostile archives. Bombs are written as streams, so hundreds of megabytes inside cost the test little memory.

MB = 1024 * 1024
_BLOCK = 512


def tar_gz(blocks: Iterable[bytes]) -> bytes:
    """A .tar.gz of raw tar blocks (headers and data as given), then the end-of-archive blocks."""
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as out:
        for block in blocks:
            out.write(block)
        out.write(b"\0" * 2 * _BLOCK)
    return buf.getvalue()


def tar_header(name: str, *, size: int = 0, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    """One tar header block, taken as it is: no long name or PAX record is added for the caller."""
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mode = size, kind, linkname, 0o644
    return info.tobuf(format=tarfile.GNU_FORMAT)


def _data(head: bytes, fill: bytes, size: int, tail: bytes = b"") -> Iterator[bytes]:
    """`size` bytes of member data: `head`, `fill` repeated, `tail`, in chunks, padded to a block."""
    yield head
    left = size - len(head) - len(tail)
    chunk = fill * (MB // len(fill))
    while left > 0:
        yield chunk[:left]
        left -= len(chunk)
    yield tail + b"\0" * (-size % _BLOCK)


def long_name_sdist(total: int, *, count: int = 1, root: str = "bomb-1.0") -> bytes:
    """`count` members, each named by a GNU long name, `total` bytes of names in all."""
    def blocks() -> Iterator[bytes]:
        each = total // count
        for i in range(count):
            yield tar_header("././@LongLink", size=each, kind=tarfile.GNUTYPE_LONGNAME)
            yield from _data(f"{root}/{i}-".encode(), b"a", each)
            yield tar_header(f"{root}/f{i}")
    return tar_gz(blocks())


def pax_sdist(size: int, *, root: str = "bomb-1.0") -> bytes:
    """One member whose PAX header is a single `size`-byte path record."""
    head = f"{size} path={root}/".encode()

    def blocks() -> Iterator[bytes]:
        yield tar_header("././@PaxHeader", size=size, kind=tarfile.XHDTYPE)
        yield from _data(head, b"a", size, b"\n")
        yield tar_header(f"{root}/f")
    return tar_gz(blocks())


def many_members_sdist(count: int, *, root: str = "bomb-1.0") -> bytes:
    """`count` empty members, all alike (so that a million of them compress to almost nothing)."""
    header = tar_header(f"{root}/f")
    return tar_gz(header for _ in range(count))


def header_chain_sdist(links: int, *, root: str = "bomb-1.0") -> bytes:
    """A member behind `links` empty GNU long name headers: tarfile follows such a chain by recursion."""
    return tar_gz([tar_header("././@LongLink", kind=tarfile.GNUTYPE_LONGNAME)] * links + [tar_header(f"{root}/f")])


def sdist_with(name: str, version: str, *members: tarfile.TarInfo, metadata: str | None = None) -> bytes:
    """A good sdist plus `members` (empty), as tarfile writes them: names, links and types a test chooses."""
    data = sdist_bytes(name, version, metadata=metadata)
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=io.BytesIO(data)) as good, tarfile.open(fileobj=good) as source, \
            gzip.GzipFile(fileobj=buf, mode="wb", mtime=0) as out, tarfile.open(fileobj=out, mode="w") as tf:
        for member in source:
            tf.addfile(member, source.extractfile(member))
        for member in members:
            tf.addfile(member, io.BytesIO(b"") if member.isreg() else None)
    return buf.getvalue()


def tar_member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def zip_with(data: bytes, *names: str) -> bytes:
    """A zip (a wheel, a zip sdist) with more empty members named as a test chooses."""
    buf = io.BytesIO(data)
    with zipfile.ZipFile(buf, "a") as zf:
        for name in names:
            zf.writestr(_member(name), b"")
    return buf.getvalue()


def zip_sdist_bytes(name: str, version: str, *, root: str | None = None) -> bytes:
    root = root or f"{name.replace('-', '_')}-{version}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_member(f"{root}/PKG-INFO"), metadata_text(name, version))
        zf.writestr(_member(f"{root}/setup.py"), "from setuptools import setup\nsetup()\n")
    return buf.getvalue()


def _end_record(data: bytes) -> tuple[int, int]:
    """The central directory's offset and size, from a zip without comment made above."""
    _sig, _disk, _start, _here, _total, size, offset, _comment = struct.unpack(zipfile.structEndArchive, data[-22:])
    return offset, size


def zip_with_directory(data: bytes, entries: int) -> bytes:
    """A zip with `entries` more central directory entries, empty and all alike: a directory as large as a
    real one of that many members has, at 46 bytes each."""
    offset, size = _end_record(data)
    entry = struct.pack(zipfile.structCentralDir, zipfile.stringCentralDir, 20, 3, 20, 0, 0, 0, 0, 0x21,
                        0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    directory = data[offset:offset + size] + entry * entries
    count = min(entries + data.count(zipfile.stringCentralDir), 0xFFFF)
    end = struct.pack(zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0, count, count, len(directory),
                      offset, 0)
    return data[:offset] + directory + end


def zip_declaring(data: bytes, *, entries: int, size: int) -> bytes:
    """A zip whose zip64 end record declares a central directory of `size` bytes and `entries` entries."""
    offset, _ = _end_record(data)
    body = data[:-22]
    zip64 = struct.pack(zipfile.structEndArchive64, zipfile.stringEndArchive64, 44, 45, 45, 0, 0, entries,
                        entries, size, offset)
    locator = struct.pack(zipfile.structEndArchive64Locator, zipfile.stringEndArchive64Locator, 0, len(body), 1)
    end = struct.pack(zipfile.structEndArchive, zipfile.stringEndArchive, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF,
                      0xFFFFFFFF, 0)
    return body + zip64 + locator + end


def wheel_with_compressed_metadata(name: str, version: str, method: int, size: int = 0) -> bytes:
    """A wheel whose METADATA member is compressed with `method`; with `size`, it holds that many zero bytes
    (a few hundred once compressed) while its headers declare 100, as a decompression bomb would."""
    stem = f"{name.replace('-', '_')}-{version}"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr(_member(f"{stem}.dist-info/WHEEL"),
                    "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(_member(f"{stem}.dist-info/RECORD"), "")
        info = _member(f"{stem}.dist-info/METADATA")
        info.compress_type = method
        zf.writestr(info, b"\0" * size if size else metadata_text(name, version).encode())
    data = bytearray(buf.getvalue())
    if size:
        # The uncompressed size: at offset 22 of the member's local header and 24 of its directory entry.
        local = data.rindex(zipfile.stringFileHeader)
        central = data.rindex(zipfile.stringCentralDir)
        struct.pack_into("<I", data, local + 22, 100)
        struct.pack_into("<I", data, central + 24, 100)
    return bytes(data)
