"""Distribution files: what a filename says, whether the archive is sane, and what its own metadata says.

Pure functions over a path and a filename, each answering with a value or an InvalidDistribution whose
message is fit for a client's status line. Parsing is packaging's and pkginfo's; only the safety checks that
Warehouse adds on top (one root in an sdist, no zip/tar polyglots, no zip bombs) are written here.
"""

from __future__ import annotations

import tarfile
import warnings
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pkginfo
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

MAX_FILENAME_LENGTH = 255
# Uncompressed bytes per compressed byte beyond which an archive is treated as a decompression bomb.
MAX_COMPRESSION_RATIO = 50
# Small archives of text legitimately compress well: the ratio only counts above this many bytes.
RATIO_FLOOR = 64 * 1024 * 1024
MAX_METADATA_BYTES = 4 * 1024 * 1024

# pkginfo warns about every Metadata-Version newer than itself; new versions are legitimate, and the fields
# pypilite needs (Name, Version, Requires-Python) have not changed since 1.2.
warnings.filterwarnings("ignore", category=pkginfo.distribution.UnknownMetadataVersion)

WHEEL = "bdist_wheel"
SDIST = "sdist"


class InvalidDistribution(Exception):
    """The file is not a distribution pypilite will store; the message says why in one line."""


@dataclass(frozen=True)
class FilenameInfo:
    project: NormalizedName
    version: Version
    packagetype: str


@dataclass(frozen=True)
class DistMetadata:
    name: str
    version: str
    requires_python: str
    # The wheel's .dist-info/METADATA bytes, served as the PEP 658 .metadata file; None for sdists.
    core_metadata: bytes | None
    # The metadata file as the archive carries it (METADATA or PKG-INFO): what the web UI shows.
    raw: bytes


def parse_filename(filename: str) -> FilenameInfo:
    """Project, version and kind from a wheel or sdist filename, refusing anything that could be a path."""
    if not filename or len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidDistribution("Invalid distribution filename: empty or too long")
    if any(c in filename for c in "/\\\0") or filename.startswith(".") or not filename.isprintable():
        raise InvalidDistribution(f"Invalid distribution filename: {filename!r} is not a plain file name")
    try:
        if filename.endswith(".whl"):
            name, version, _build, _tags = parse_wheel_filename(filename)
            return FilenameInfo(name, version, WHEEL)
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return FilenameInfo(name, version, SDIST)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidDistribution(f"Invalid distribution filename: {exc}") from None
    raise InvalidDistribution(
        f"Invalid distribution filename: {filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)"
    )


def read_metadata(path: Path, info: FilenameInfo, filename: str) -> DistMetadata:
    """Check the archive at `path` and parse the metadata it carries."""
    return _parse_metadata(metadata_bytes(path, info, filename), info)


def metadata_bytes(path: Path, info: FilenameInfo, filename: str) -> bytes:
    """Check the archive at `path` and return its metadata file (a wheel's METADATA, an sdist's PKG-INFO)."""
    if info.packagetype == WHEEL:
        return _wheel_metadata(path, info)
    if filename.endswith(".zip"):
        return _zip_sdist_metadata(path)
    return _tar_sdist_metadata(path)


def _check_ratio(uncompressed: int, compressed: int) -> None:
    if uncompressed > RATIO_FLOOR and uncompressed > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise InvalidDistribution("Invalid distribution: suspicious compression ratio (possible zip bomb)")


def _open_zip(path: Path, kind: str) -> zipfile.ZipFile:
    if tarfile.is_tarfile(path):
        raise InvalidDistribution(f"Invalid {kind}: the file is also a tar archive")
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError):
        raise InvalidDistribution(f"Invalid {kind}: not a zip archive, or a truncated one") from None


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, kind: str) -> bytes:
    if member.file_size > MAX_METADATA_BYTES:
        raise InvalidDistribution(f"Invalid {kind}: metadata file too large")
    try:
        return archive.read(member)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError):
        raise InvalidDistribution(f"Invalid {kind}: metadata cannot be read (corrupt or truncated archive)") from None


def _wheel_metadata(path: Path, info: FilenameInfo) -> bytes:
    with _open_zip(path, "wheel") as archive:
        members = archive.infolist()
        _check_ratio(sum(m.file_size for m in members), path.stat().st_size)
        tops = {m.filename.split("/", 1)[0] for m in members}
        dist_infos = {top for top in tops if top.endswith(".dist-info")}
        matching = [d for d in dist_infos if _names_release(d.removesuffix(".dist-info"), info)]
        if len(matching) != 1:
            raise InvalidDistribution(
                f"Invalid wheel: expected one {info.project}-{info.version}.dist-info directory, found {len(matching)}"
            )
        dist_info = matching[0]
        by_name = {m.filename: m for m in members}
        if f"{dist_info}/WHEEL" not in by_name:
            raise InvalidDistribution(f"Invalid wheel: {dist_info}/WHEEL is missing")
        metadata = by_name.get(f"{dist_info}/METADATA")
        if metadata is None:
            raise InvalidDistribution(f"Invalid wheel: {dist_info}/METADATA is missing")
        return _read_member(archive, metadata, "wheel")


def _names_release(stem: str, info: FilenameInfo) -> bool:
    name, sep, version = stem.rpartition("-")
    if not sep:
        return False
    try:
        return canonicalize_name(name) == info.project and Version(version) == info.version
    except InvalidVersion:
        return False


def _single_root(names: list[str], kind: str) -> str:
    roots = {name.split("/", 1)[0] for name in names}
    if len(roots) != 1:
        raise InvalidDistribution(f"Invalid {kind}: the archive must hold exactly one top-level directory")
    root = roots.pop()
    if root in ("", ".", ".."):
        raise InvalidDistribution(f"Invalid {kind}: bad top-level directory {root!r}")
    return root


def _zip_sdist_metadata(path: Path) -> bytes:
    with _open_zip(path, "sdist") as archive:
        members = archive.infolist()
        _check_ratio(sum(m.file_size for m in members), path.stat().st_size)
        root = _single_root([m.filename for m in members], "sdist")
        pkg_info = next((m for m in members if m.filename == f"{root}/PKG-INFO"), None)
        if pkg_info is None:
            raise InvalidDistribution(f"Invalid sdist: {root}/PKG-INFO is missing")
        return _read_member(archive, pkg_info, "sdist")


def _tar_sdist_metadata(path: Path) -> bytes:
    if zipfile.is_zipfile(path):
        raise InvalidDistribution("Invalid sdist: the file is also a zip archive")
    compressed = path.stat().st_size
    names: list[str] = []
    pkg_info: dict[str, bytes] = {}
    uncompressed = 0
    try:
        # Read every member: a truncated or corrupt tail must be caught now, not by the user's pip.
        with tarfile.open(path, mode="r:gz") as archive:
            for member in archive:
                names.append(member.name)
                uncompressed += member.size
                _check_ratio(uncompressed, compressed)
                parts = member.name.split("/")
                if len(parts) == 2 and parts[1] == "PKG-INFO" and member.isfile():
                    if member.size > MAX_METADATA_BYTES:
                        raise InvalidDistribution("Invalid sdist: PKG-INFO too large")
                    extracted = archive.extractfile(member)
                    pkg_info[parts[0]] = extracted.read() if extracted else b""
    except (tarfile.TarError, EOFError, OSError, ValueError):
        raise InvalidDistribution("Invalid sdist: not a gzip-compressed tar archive, or a truncated one") from None
    if not names:
        raise InvalidDistribution("Invalid sdist: the archive is empty")
    root = _single_root(names, "sdist")
    if root not in pkg_info:
        raise InvalidDistribution(f"Invalid sdist: {root}/PKG-INFO is missing")
    return pkg_info[root]


def _parse_metadata(raw: bytes, info: FilenameInfo) -> DistMetadata:
    dist = pkginfo.Distribution()
    try:
        dist.parse(raw)
    except Exception:  # pkginfo raises assorted errors on garbage; all mean the same to the uploader
        raise InvalidDistribution("Invalid distribution: its metadata cannot be parsed") from None
    if not dist.name or not dist.version:
        raise InvalidDistribution("Invalid distribution: its metadata has no Name or Version")
    if canonicalize_name(dist.name) != info.project:
        raise InvalidDistribution(
            f"Invalid distribution: metadata name {dist.name!r} does not match the filename's {info.project!r}"
        )
    try:
        version = Version(dist.version)
    except InvalidVersion:
        raise InvalidDistribution(f"Invalid distribution: metadata version {dist.version!r} is not valid") from None
    if version != info.version:
        raise InvalidDistribution(
            f"Invalid distribution: metadata version {dist.version!r} does not match the filename's {info.version}"
        )
    requires_python = (dist.requires_python or "").strip()
    if requires_python:
        try:
            SpecifierSet(requires_python)
        except InvalidSpecifier:
            raise InvalidDistribution(
                f"Invalid distribution: Requires-Python {requires_python!r} is not valid") from None
    return DistMetadata(
        name=dist.name,
        version=dist.version,
        requires_python=requires_python,
        core_metadata=raw if info.packagetype == WHEEL else None,
        raw=raw,
    )
