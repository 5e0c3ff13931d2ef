"""Benchmark corpus: valid wheels and sdists made in code, so a benchmark needs no network and no build backend.

A release is a wheel and an sdist holding what an index checks on upload and one module, nothing more: the
benchmark measures the index, not the archives. Contents are deterministic, so two runs upload the same bytes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import os
import statistics
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

WHEEL_TAG = "py3-none-any"
LARGE_PROJECT = "bench-large"
# Fixed member timestamps keep the archives byte-identical from run to run.
_DATE_TIME = (2024, 1, 1, 0, 0, 0)
_TAR_MTIME = 1_704_067_200  # the same moment, for tar members
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class Dist:
    """A distribution file on disk and what an upload form says about it."""

    path: Path
    project: str
    version: str
    sha256: str
    filetype: str = "bdist_wheel"

    @property
    def filename(self) -> str:
        return self.path.name

    @property
    def pyversion(self) -> str:
        """The upload form's `pyversion`, as twine sends it."""
        return "source" if self.filetype == "sdist" else "py3"


def project_name(index: int, prefix: str = "bench-proj") -> str:
    """The corpus's project names: `bench-proj-0001`, `bench-proj-0002`, ..."""
    return f"{prefix}-{index:04d}"


def write_corpus(directory: Path, projects: int = 200, versions: int = 5, prefix: str = "bench-proj") -> list[Dist]:
    """Write `projects` x `versions` releases, a small wheel and an sdist each, into `directory` and describe
    them in upload order (each release's wheel first)."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        write(directory, project_name(p, prefix), f"1.{v}.0")
        for p in range(1, projects + 1)
        for v in range(versions)
        for write in (_write_small_wheel, _write_sdist)
    ]


def wheels(dists: list[Dist]) -> list[Dist]:
    """The wheels among `dists`: what the download figures fetch (installers pick them over sdists)."""
    return [dist for dist in dists if dist.filetype == "bdist_wheel"]


def median_wheel_size(dists: list[Dist]) -> int:
    """The size the gunicorn floor answers with when it stands in for the wheel downloads."""
    return statistics.median_high(dist.path.stat().st_size for dist in wheels(dists))


def install_project_name(index: int) -> str:
    return f"bench-dep-{index:02d}"


def write_install_corpus(directory: Path, projects: int = 20) -> list[Dist]:
    """`projects` wheels in a dependency chain: installing the first pulls in every other one, each found
    only after its dependent's metadata is read, as a resolver meets a real project's tree."""
    directory.mkdir(parents=True, exist_ok=True)
    return [
        _write_small_wheel(directory, install_project_name(p), "1.0.0",
                           tuple(install_project_name(d) for d in (p + 1, p + 2) if d <= projects))
        for p in range(1, projects + 1)
    ]


def write_large_wheel(directory: Path, size_bytes: int, project: str = LARGE_PROJECT) -> Dist:
    """Write one wheel of about `size_bytes`, nearly all of it random bytes in a single stored member.

    Random bytes defeat compression anywhere along the way, and the member is written in chunks, so making a
    500 MB wheel costs this process a few MB of memory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    version = "1.0.0"
    path = directory / _wheel_filename(project, version)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as archive:
        record = [_add_member(archive, f"{_module(project)}/__init__.py", _module_source(version))]
        record.append(_add_random_member(archive, f"{_module(project)}/payload.bin", size_bytes))
        _add_dist_info(archive, project, version, record)
    return Dist(path=path, project=project, version=version, sha256=_file_sha256(path))


def _write_small_wheel(directory: Path, project: str, version: str, requires: tuple[str, ...] = ()) -> Dist:
    path = directory / _wheel_filename(project, version)
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        record = [_add_member(archive, f"{_module(project)}/__init__.py", _module_source(version))]
        _add_dist_info(archive, project, version, record, requires)
    return Dist(path=path, project=project, version=version, sha256=_file_sha256(path))


def _write_sdist(directory: Path, project: str, version: str) -> Dist:
    root = f"{_module(project)}-{version}"
    path = directory / f"{root}.tar.gz"
    members = {
        "PKG-INFO": _metadata(project, version),
        "pyproject.toml": _pyproject(project, version),
        f"src/{_module(project)}/__init__.py": _module_source(version),
    }
    # gzip's own header carries a timestamp too: zero it, as tarfile would not.
    with path.open("wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as compressed, \
            tarfile.open(fileobj=compressed, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{root}/{name}")
            info.size, info.mtime, info.mode = len(data), _TAR_MTIME, 0o644
            archive.addfile(info, io.BytesIO(data))
    return Dist(path=path, project=project, version=version, sha256=_file_sha256(path), filetype="sdist")


def _pyproject(project: str, version: str) -> bytes:
    return (f'[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "{project}"\nversion = "{version}"\nrequires-python = ">=3.8"\n').encode()


def _module(project: str) -> str:
    return project.replace("-", "_")


def _wheel_filename(project: str, version: str) -> str:
    return f"{_module(project)}-{version}-{WHEEL_TAG}.whl"


def _module_source(version: str) -> bytes:
    return f'__version__ = "{version}"\n'.encode()


def _metadata(project: str, version: str, requires: tuple[str, ...] = ()) -> bytes:
    return (
        "Metadata-Version: 2.1\n"
        f"Name: {project}\n"
        f"Version: {version}\n"
        "Summary: A generated package for pypilite's benchmark\n"
        "Requires-Python: >=3.8\n"
        + "".join(f"Requires-Dist: {name}\n" for name in requires)
        + "\n"
    ).encode()


def _wheel_info() -> bytes:
    return f"Wheel-Version: 1.0\nGenerator: pypilite-bench\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n".encode()


def _record_line(name: str, digest: bytes, size: int) -> str:
    encoded = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return f"{name},sha256={encoded},{size}"


def _info(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, _DATE_TIME)
    info.external_attr = 0o644 << 16
    return info


def _add_member(archive: zipfile.ZipFile, name: str, data: bytes) -> str:
    archive.writestr(_info(name), data, compress_type=archive.compression)
    return _record_line(name, hashlib.sha256(data).digest(), len(data))


def _add_random_member(archive: zipfile.ZipFile, name: str, size: int) -> str:
    info = _info(name)
    digest = hashlib.sha256()
    remaining = size
    with archive.open(info, "w", force_zip64=size >= zipfile.ZIP64_LIMIT) as member:
        while remaining:
            chunk = os.urandom(min(_CHUNK, remaining))
            member.write(chunk)
            digest.update(chunk)
            remaining -= len(chunk)
    return _record_line(name, digest.digest(), size)


def _add_dist_info(archive: zipfile.ZipFile, project: str, version: str, record: list[str],
                   requires: tuple[str, ...] = ()) -> None:
    dist_info = f"{_module(project)}-{version}.dist-info"
    record.append(_add_member(archive, f"{dist_info}/METADATA", _metadata(project, version, requires)))
    record.append(_add_member(archive, f"{dist_info}/WHEEL", _wheel_info()))
    record.append(f"{dist_info}/RECORD,,")
    archive.writestr(_info(f"{dist_info}/RECORD"), "\n".join(record) + "\n",
                     compress_type=archive.compression)


def _file_sha256(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
