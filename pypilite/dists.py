"""Distribution files: what a filename says, whether the archive is sane, and what its own metadata says.

Pure functions answering a value or an InvalidDistribution fit for a client's status line. Parsing is
packaging's, pkginfo's, tarfile's and zipfile's; only Warehouse's safety checks are written here, and every
read of an archive is bounded in memory and time.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import re
import tarfile
import warnings
import zipfile
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO, cast

import pkginfo
from packaging.licenses import InvalidLicenseExpression, canonicalize_license_expression
from packaging.metadata import RawMetadata, parse_email
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
# Members of one archive (a large real wheel holds tens of thousands).
MAX_MEMBERS = 100_000
# What tar reads before one member's data, into memory whole: its header, GNU long names, PAX records.
MAX_TAR_HEADER_BYTES = 64 * 1024
# A zip's central directory, which zipfile reads whole before anything else.
MAX_ZIP_DIRECTORY_BYTES = 32 * 1024 * 1024
# Links followed in turn to resolve one link of an sdist, as the kernel's own limit on a path.
MAX_LINK_HOPS = 40
# Links in one sdist (real ones hold a few, if any), each resolved through the others.
MAX_LINKS = 1000
# A member's name or a link's target: real ones are a few dozen characters, and judging one costs its length.
MAX_PATH_LENGTH = 1024
# What wheels use, and zipfile inflates in bounded slices; others it inflates whole, a bomb's gigabyte too.
_ZIP_METHODS = frozenset({zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED})

# The characters the wheel and sdist filename specifications allow (legacy sdist names included).
_FILENAME = re.compile(r"[A-Za-z0-9._+!-]+\Z")
# One component of a wheel's python, abi or platform tag, as packaging lowercases it.
_TAG_PART = re.compile(r"[a-z0-9_]+\Z")
_DRIVE = re.compile(r"[A-Za-z]:")
# zipfile's own end-record reader and its constants: private, so absent from its type stubs.
_ZIP: Any = zipfile
_ZIP_START = b"PK\x03\x04"  # a zip's first local file header
_GZIP_START = b"\x1f\x8b"
_ZIP64_END_BYTES = _ZIP.sizeEndCentDir64 + _ZIP.sizeEndCentDir64Locator
_NOT_TAR_GZ = "Invalid sdist: not a gzip-compressed tar archive, or a truncated one"
_ONE_ROOT = "Invalid sdist: the archive must hold exactly one top-level directory"
_RATIO_MESSAGE = "Invalid distribution: suspicious compression ratio (possible decompression bomb)"

# Newer Metadata-Versions are legitimate, and the fields pypilite reads have not changed since 1.2.
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
    """Project, version and kind from a wheel or sdist filename: only the characters the specifications allow
    (so no path, quote or control character reaches a path or a header) and, for a wheel, valid tags."""
    if not filename or len(filename) > MAX_FILENAME_LENGTH:
        raise InvalidDistribution("Invalid distribution filename: empty or too long")
    if not _FILENAME.match(filename) or filename.startswith("."):
        raise InvalidDistribution(f"Invalid distribution filename: {ascii(filename)} is not a plain file name "
                                  "(letters, digits and . _ - + ! only)")
    try:
        if filename.endswith(".whl"):
            name, version, _build, tags = parse_wheel_filename(filename)
            if not all(_TAG_PART.match(part) for tag in tags for part in (tag.interpreter, tag.abi, tag.platform)):
                raise InvalidDistribution(f"Invalid distribution filename: {filename!r} has an invalid tag")
            return FilenameInfo(name, version, WHEEL)
        if filename.endswith((".tar.gz", ".zip")):
            name, version = parse_sdist_filename(filename)
            return FilenameInfo(name, version, SDIST)
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion) as exc:
        raise InvalidDistribution(f"Invalid distribution filename: {exc}") from None
    raise InvalidDistribution(
        f"Invalid distribution filename: {filename!r} is neither a wheel (.whl) nor an sdist (.tar.gz, .zip)"
    )


# Whether the archive holds a license file by the path a License-File field gives (PEP 639).
HasLicense = Callable[[str], bool]


def read_metadata(path: Path, info: FilenameInfo, filename: str) -> DistMetadata:
    """Check the archive at `path` and parse the metadata it carries."""
    raw, has_license = _read_archive(path, info, filename)
    return _parse_metadata(raw, info, has_license)


def metadata_bytes(path: Path, info: FilenameInfo, filename: str) -> bytes:
    """Check the archive at `path` and return its metadata file (a wheel's METADATA, an sdist's PKG-INFO)."""
    return _read_archive(path, info, filename)[0]


def _read_archive(path: Path, info: FilenameInfo, filename: str) -> tuple[bytes, HasLicense]:
    if info.packagetype == WHEEL:
        return _wheel_metadata(path, info)
    if filename.endswith(".zip"):
        return _zip_sdist_metadata(path)
    return _tar_sdist_metadata(path)


def _shown(text: str) -> str:
    """A name from inside an archive, fit for a one-line message: quoted, cut, anything but ASCII escaped."""
    return ascii(text if len(text) <= 100 else text[:100] + "...")


def _check_ratio(uncompressed: int, compressed: int) -> None:
    if uncompressed > RATIO_FLOOR and uncompressed > MAX_COMPRESSION_RATIO * max(compressed, 1):
        raise InvalidDistribution(_RATIO_MESSAGE)


def _check_member_name(name: str, kind: str) -> None:
    """A member must land inside the directory it is unpacked into, on every system and with every tool."""
    if len(name) > MAX_PATH_LENGTH:
        raise InvalidDistribution(f"Invalid {kind}: member name {_shown(name)} is over {MAX_PATH_LENGTH} characters")
    if (name.startswith("/") or "\\" in name or "\0" in name or _DRIVE.match(name)
            or ".." in name.split("/")):
        raise InvalidDistribution(f"Invalid {kind}: member {_shown(name)} is not a relative path inside the archive")


def _open_zip(path: Path, kind: str) -> zipfile.ZipFile:
    """A zip with nothing before it (a tar or a gzip in front makes a polyglot) and a central directory of a
    bounded size and entry count, both checked before zipfile reads it whole and keeps a ZipInfo per entry."""
    with path.open("rb") as fh:
        first = fh.read(tarfile.BLOCKSIZE)
        if not first.startswith(_ZIP_START):
            raise InvalidDistribution(f"Invalid {kind}: not a zip archive (it must begin with a zip member)")
        if _is_tar_header(first):
            raise InvalidDistribution(f"Invalid {kind}: the file is also a tar archive")
        _check_zip_directory(fh, kind)
    try:
        return zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        raise InvalidDistribution(f"Invalid {kind}: not a zip archive, or a truncated one") from None


def _is_tar_header(block: bytes) -> bool:
    """Whether one block parses as a tar header (checksum included): a zip can begin as an uncompressed tar."""
    try:
        tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
    except tarfile.HeaderError:
        return False
    return True


def _check_zip_directory(fh: BinaryIO, kind: str) -> None:
    """Where the central directory is and how large, as zipfile's own reader of the end record (zip64
    included) says, so that this check and zipfile cannot disagree about which bytes they read."""
    try:
        end = _ZIP._EndRecData(fh)
    except (zipfile.BadZipFile, OSError):
        end = None
    if not end:
        raise InvalidDistribution(f"Invalid {kind}: not a zip archive, or a truncated one")
    size, offset = end[_ZIP._ECD_SIZE], end[_ZIP._ECD_OFFSET]
    if size > MAX_ZIP_DIRECTORY_BYTES:
        raise InvalidDistribution(
            f"Invalid {kind}: its central directory is over {MAX_ZIP_DIRECTORY_BYTES // 2**20} MiB")
    if end[_ZIP._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:
        raise InvalidDistribution(f"Invalid {kind}: more than {MAX_MEMBERS} members")
    zip64 = _ZIP64_END_BYTES if end[_ZIP._ECD_SIGNATURE] == _ZIP.stringEndArchive64 else 0
    if offset + size + zip64 != end[_ZIP._ECD_LOCATION]:
        raise InvalidDistribution(f"Invalid {kind}: bytes before or inside the zip archive")
    fh.seek(offset)
    # Every entry zipfile parses begins with this signature: the count bounds them whatever the end record says.
    if fh.read(size).count(_ZIP.stringCentralDir) > MAX_MEMBERS:
        raise InvalidDistribution(f"Invalid {kind}: more than {MAX_MEMBERS} members")


def _zip_members(archive: zipfile.ZipFile, path: Path, kind: str) -> list[zipfile.ZipInfo]:
    members = archive.infolist()
    _check_ratio(sum(m.file_size for m in members), path.stat().st_size)
    for member in members:
        _check_member_name(member.orig_filename, kind)
    return members


def _read_member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, kind: str) -> bytes:
    if member.file_size > MAX_METADATA_BYTES or member.compress_size > MAX_METADATA_BYTES:
        raise InvalidDistribution(f"Invalid {kind}: metadata file too large")
    if member.compress_type not in _ZIP_METHODS:
        raise InvalidDistribution(f"Invalid {kind}: {_shown(member.filename)} is compressed with a method other "
                                  "than deflate")
    try:
        # zipfile stops at the declared size, and checks the CRC there.
        with archive.open(member) as fh:
            return fh.read(MAX_METADATA_BYTES)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, zlib.error):
        raise InvalidDistribution(f"Invalid {kind}: metadata cannot be read (corrupt or truncated archive)") from None


def _wheel_metadata(path: Path, info: FilenameInfo) -> tuple[bytes, HasLicense]:
    with _open_zip(path, "wheel") as archive:
        members = _zip_members(archive, path, "wheel")
        tops = {m.filename.split("/", 1)[0] for m in members}
        dist_infos = {top for top in tops if top.endswith(".dist-info")}
        matching = [d for d in dist_infos if _names_release(d.removesuffix(".dist-info"), info)]
        if len(matching) != 1:
            raise InvalidDistribution(f"Invalid wheel: expected one {_dist_info_name(info)} directory, found "
                                      f"{len(matching)}")
        dist_info = matching[0]
        names = archive.namelist()
        if f"{dist_info}/WHEEL" not in names:
            raise InvalidDistribution(f"Invalid wheel: WHEEL is missing from {_shown(dist_info)}")
        if f"{dist_info}/METADATA" not in names:
            raise InvalidDistribution(f"Invalid wheel: METADATA is missing from {_shown(dist_info)}")
        if f"{dist_info}/RECORD" not in names:  # installers refuse a wheel without one
            raise InvalidDistribution(f"Invalid wheel: RECORD is missing from {_shown(dist_info)}")
        licenses = {name for name in names if name.startswith(f"{dist_info}/licenses/")}
        return (_read_member(archive, archive.getinfo(f"{dist_info}/METADATA"), "wheel"),
                lambda license_file: f"{dist_info}/licenses/{license_file}" in licenses)


def _dist_info_name(info: FilenameInfo) -> str:
    """The directory name the wheel format prescribes: the name's dashes escaped as underscores."""
    return f"{info.project.replace('-', '_')}-{info.version}.dist-info"


def _names_release(stem: str, info: FilenameInfo) -> bool:
    name, sep, version = stem.rpartition("-")
    if not sep:
        return False
    try:
        return canonicalize_name(name) == info.project and Version(version) == info.version
    except InvalidVersion:
        return False


def _check_root(root: str, kind: str) -> str:
    if root in ("", ".", ".."):
        raise InvalidDistribution(f"Invalid {kind}: bad top-level directory {_shown(root)}")
    return root


def _zip_sdist_metadata(path: Path) -> tuple[bytes, HasLicense]:
    with _open_zip(path, "sdist") as archive:
        members = _zip_members(archive, path, "sdist")
        roots = {m.filename.split("/", 1)[0] for m in members}
        if len(roots) != 1:
            raise InvalidDistribution(_ONE_ROOT)
        root = _check_root(roots.pop(), "sdist")
        pkg_info = next((m for m in members if m.filename == f"{root}/PKG-INFO"), None)
        if pkg_info is None:
            raise InvalidDistribution(f"Invalid sdist: PKG-INFO is missing from {_shown(root)}")
        names = {m.filename for m in members}
        return _read_member(archive, pkg_info, "sdist"), lambda license_file: f"{root}/{license_file}" in names


class _BoundedStream:
    """The decompressed tar as tarfile reads it. tarfile reads a member's GNU long names and PAX records into
    memory whole, following a chain of them by recursion, before it returns the member: the reads allowed
    before the next member (`allowance`) bound both. How far the stream may go bounds the decompression."""

    def __init__(self, fileobj: io.BufferedIOBase, limit: int) -> None:
        self._fileobj = fileobj
        self._limit = limit
        self.allowance = MAX_TAR_HEADER_BYTES

    def read(self, size: int = -1) -> bytes:
        if size < 0 or size > self.allowance:
            raise InvalidDistribution(f"Invalid sdist: a member's header (long names, PAX records) is over "
                                      f"{MAX_TAR_HEADER_BYTES // 1024} KiB")
        self.allowance -= size
        self._reach(self.tell() + size)
        return self._fileobj.read(size)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence != io.SEEK_SET:
            raise ValueError("only absolute seeks")
        self._reach(offset)
        return self._fileobj.seek(offset)

    def tell(self) -> int:
        return self._fileobj.tell()

    def _reach(self, position: int) -> None:
        if position > self._limit:
            raise InvalidDistribution(_RATIO_MESSAGE)


def _tar_sdist_metadata(path: Path) -> tuple[bytes, HasLicense]:
    if zipfile.is_zipfile(path):  # reads the end record only
        raise InvalidDistribution("Invalid sdist: the file is also a zip archive")
    with path.open("rb") as fh:
        if fh.read(len(_GZIP_START)) != _GZIP_START:
            raise InvalidDistribution(_NOT_TAR_GZ)
    limit = max(RATIO_FLOOR, MAX_COMPRESSION_RATIO * path.stat().st_size)
    try:
        with gzip.open(path) as decompressed:
            stream = _BoundedStream(decompressed, limit)
            # Reading, tarfile only reads, seeks and tells.
            return _walk_tar(tarfile.TarFile(fileobj=cast(IO[bytes], stream)), stream)
    except (tarfile.TarError, EOFError, OSError, ValueError, zlib.error):
        raise InvalidDistribution(_NOT_TAR_GZ) from None


def _walk_tar(archive: tarfile.TarFile, stream: _BoundedStream) -> tuple[bytes, HasLicense]:
    """Every member, header by header (a truncated or corrupt tail is caught now, not by the user's pip); only
    PKG-INFO is read. A file or a directory can only escape by its name; links are judged at the end, through
    each other; devices and FIFOs are refused."""
    root = None
    pkg_info = None
    count = 0
    symlinks: dict[str, str] = {}
    hardlinks: list[tuple[str, str]] = []
    files: set[bytes] = set()  # a short digest of each file's name, for License-File: never the names themselves
    while True:
        stream.allowance = MAX_TAR_HEADER_BYTES
        member = archive.next()
        if member is None:
            break
        # tarfile keeps every member it has read (in a list its stubs omit); one at a time is enough here.
        archive.members.clear()  # type: ignore[attr-defined]
        count += 1
        if count > MAX_MEMBERS:
            raise InvalidDistribution(f"Invalid sdist: more than {MAX_MEMBERS} members")
        _check_member_name(member.name, "sdist")
        if member.issym() or member.islnk():
            if len(member.linkname) > MAX_PATH_LENGTH or len(symlinks) + len(hardlinks) >= MAX_LINKS:
                raise InvalidDistribution(f"Invalid sdist: more than {MAX_LINKS} links, or one over "
                                          f"{MAX_PATH_LENGTH} characters")
            if member.issym():
                symlinks["/".join(_parts(member.name))] = member.linkname
            else:
                hardlinks.append((member.name, member.linkname))
        elif not (member.isreg() or member.isdir()):
            raise InvalidDistribution(
                f"Invalid sdist: member {_shown(member.name)} is not a file, a directory or a link")
        top, _, rest = member.name.partition("/")
        if root is None:
            root = _check_root(top, "sdist")
        elif top != root:
            raise InvalidDistribution(_ONE_ROOT)
        if member.isfile():
            files.add(_name_digest(member.name))
        if rest == "PKG-INFO" and member.isfile():
            if member.size > MAX_METADATA_BYTES:
                raise InvalidDistribution("Invalid sdist: PKG-INFO too large")
            stream.allowance = member.size
            pkg_info = cast(IO[bytes], archive.extractfile(member)).read()  # a regular file's: never None
    if root is None:
        raise InvalidDistribution("Invalid sdist: the archive is empty")
    if pkg_info is None:
        raise InvalidDistribution(f"Invalid sdist: PKG-INFO is missing from {_shown(root)}")
    _check_links(root, symlinks, hardlinks)
    return pkg_info, lambda license_file: _name_digest(f"{root}/{license_file}") in files


def _name_digest(name: str) -> bytes:
    return hashlib.blake2b("/".join(_parts(name)).encode(errors="surrogateescape"), digest_size=12).digest()


def _check_links(root: str, symlinks: dict[str, str], hardlinks: list[tuple[str, str]]) -> None:
    """Every link lands inside the root once unpacked, through the archive's other links as the file system
    will follow them: a chain of links that each stay in can still leave together."""
    links = [(name, target if target.startswith("/") else f"{name.rpartition('/')[0]}/{target}")
             for name, target in symlinks.items()] + hardlinks
    for name, target in links:
        resolved = _resolve(target, symlinks)
        if resolved is None or resolved[:1] != [root]:
            raise InvalidDistribution(f"Invalid sdist: member {_shown(name)} links outside the archive's root")


def _resolve(path: str, symlinks: dict[str, str]) -> list[str] | None:
    """`path`'s components with every link among `symlinks` (member name: target) followed; None when it
    climbs above the archive, is absolute, or loops."""
    if path.startswith("/"):
        return None
    pending, hops = deque(_parts(path)), 0
    resolved: list[str] = []
    prefixes: list[str] = []  # "/".join(resolved[:i + 1]) for each i, kept as resolved grows and shrinks
    while pending:
        part = pending.popleft()
        if part == "..":
            if not resolved:
                return None
            resolved.pop()
            prefixes.pop()
            continue
        prefix = f"{prefixes[-1]}/{part}" if prefixes else part
        target = symlinks.get(prefix)
        if target is None:
            resolved.append(part)
            prefixes.append(prefix)
            continue
        hops += 1
        if hops > MAX_LINK_HOPS or target.startswith("/"):
            return None
        pending.extendleft(reversed(_parts(target)))  # from the link's own directory
    return resolved


def _parts(path: str) -> list[str]:
    return [part for part in path.split("/") if part not in ("", ".")]


def check_metadata_version(value: str | None, where: str) -> Version:
    """A Metadata-Version this index understands: a version whose major is 1 or 2 (a newer major may change
    what fields mean, and Warehouse refuses it)."""
    if not value:
        raise InvalidDistribution(f"Invalid distribution: {where} Metadata-Version is missing")
    try:
        version = Version(value)
    except InvalidVersion:
        raise InvalidDistribution(
            f"Invalid distribution: {where} Metadata-Version {value!r} is not a version") from None
    if version.major > 2:
        raise InvalidDistribution(f"Invalid distribution: {where} Metadata-Version {value} is newer than this index "
                                  "understands (2.x)")
    return version


def _check_licenses(fields: RawMetadata, has_license: HasLicense) -> None:
    """License-Expression must be valid SPDX, and every License-File must be in the archive (PEP 639)."""
    expression = fields.get("license_expression")
    if expression:
        try:
            canonicalize_license_expression(expression)
        except InvalidLicenseExpression as exc:
            raise InvalidDistribution(f"Invalid distribution: License-Expression {expression[:100]!r} is not a valid "
                                      f"SPDX expression ({exc})") from None
    for license_file in fields.get("license_files") or ():
        if license_file.startswith("/") or ".." in license_file.split("/") or not has_license(license_file):
            raise InvalidDistribution(f"Invalid distribution: License-File {_shown(license_file)} is not in the "
                                      "archive")


def _parse_metadata(raw: bytes, info: FilenameInfo, has_license: HasLicense) -> DistMetadata:
    fields, _ = parse_email(raw)  # lenient: what Warehouse also checks by name
    check_metadata_version(fields.get("metadata_version"), "its metadata's")
    _check_licenses(fields, has_license)
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
