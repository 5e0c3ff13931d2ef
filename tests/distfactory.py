"""Distributions made in code, so every broken variant a test needs is a parameter, not a checked-in binary."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

# Fixed timestamps make a distribution's bytes a function of its arguments alone: two calls made on either side of
# a second's boundary would otherwise give two files, two digests and two blobs where a test expects one.
_ZIP_DATE_TIME = (2020, 1, 1, 0, 0, 0)


def metadata_text(name: str, version: str, requires_python: str = "", requires: tuple[str, ...] = ()) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}", "Summary: a test package"]
    if requires_python:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Requires-Dist: {req}" for req in requires]
    return "\n".join(lines) + "\n\nA long description.\n"


def wheel_bytes(name: str, version: str, *, metadata: str | None = None, dist_info: str | None = None,
                with_wheel_file: bool = True, with_metadata: bool = True, requires_python: str = "",
                payload: bytes = b"") -> bytes:
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
