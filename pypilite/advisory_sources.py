"""Where `advisories import` reads OSV records: a zip of JSON records (the OSV project's per-ecosystem dump) or a
directory of them. Both are hostile input: members and files are read, never extracted, each up to a size
cap, and a zip's central directory is sized before zipfile reads it into memory."""

from __future__ import annotations

import json
import os
import stat
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, TypeVar

from pypilite.errors import BadRequest

MAX_RECORD_BYTES = 1024 * 1024  # the largest real records (long `versions` lists) are tens of KiB
MAX_MEMBERS = 500_000
MAX_DIRECTORY_BYTES = 64 * 1024 * 1024  # the central directory zipfile reads whole; names can be 64 KiB each
SUFFIX = ".json"

T = TypeVar("T")
# (name, parsed JSON), or (name, the reason it could not be read)
Record = tuple[str, Any]


class Unreadable(ValueError):
    """One record that could not be read: too large, not JSON, a broken zip member."""


class Source:
    """The records under one path, counted before any is read (for a progress bar)."""

    def __init__(self, path: Path) -> None:
        self.name = path.resolve().name  # what the import is recorded as: a name, never the whole path
        self._zip: zipfile.ZipFile | None = None
        if path.is_dir():
            self._files = sorted(_json_files(path))
            if len(self._files) > MAX_MEMBERS:
                raise BadRequest(f"{self.name}: more than {MAX_MEMBERS} .json files; not an OSV dump")
            self._members: list[zipfile.ZipInfo] = []
        elif path.is_file():
            self._zip = _open_zip(path)
            self._files = []
            self._members = [info for info in self._zip.infolist()
                             if not info.is_dir() and info.filename.lower().endswith(SUFFIX)]
        else:
            raise BadRequest(f"{self.name}: not a zip file nor a directory of OSV JSON records")
        if not self.count:  # a wrong path, most likely: it must not make old data look fresh
            self.close()
            raise BadRequest(f"{self.name}: no .json records in it; nothing imported")

    @property
    def count(self) -> int:
        return len(self._members) + len(self._files)

    def records(self) -> Iterator[Record]:
        for info in self._members:
            yield info.filename, _document(self._read_member, info)
        for path in self._files:
            yield str(path), _document(_read_file, path)

    def close(self) -> None:
        if self._zip is not None:
            self._zip.close()

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _read_member(self, info: zipfile.ZipInfo) -> bytes:
        assert self._zip is not None
        if info.file_size > MAX_RECORD_BYTES:
            raise Unreadable(f"larger than {MAX_RECORD_BYTES // 1024} KiB")
        try:
            with self._zip.open(info) as member:
                return _bounded(member)
        # A bad CRC, an encrypted or unknown method, offsets pointing outside the file.
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, OSError,
                ValueError) as exc:
            raise Unreadable(f"a broken zip member ({exc})") from None


def _document(read: Callable[[T], bytes], where: T) -> Any:
    """The parsed record, or an Unreadable saying why there is none."""
    try:
        return json.loads(read(where))
    except Unreadable as exc:
        return exc
    except (ValueError, RecursionError):  # bad JSON, bad UTF-8, a number too long, nesting too deep
        return Unreadable("not a JSON document")


def _bounded(stream: IO[bytes]) -> bytes:
    data = stream.read(MAX_RECORD_BYTES + 1)
    if len(data) > MAX_RECORD_BYTES:
        raise Unreadable(f"larger than {MAX_RECORD_BYTES // 1024} KiB")
    return data


def _open_zip(path: Path) -> zipfile.ZipFile:
    """The zip at `path`, once its end record says its central directory is of a dump's size."""
    try:
        with path.open("rb") as fh:
            end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # zipfile's own reader of the end record
        if end is None:
            raise BadRequest(f"{path.name}: not a zip file nor a directory of OSV JSON records")
        if end[zipfile._ECD_ENTRIES_TOTAL] > MAX_MEMBERS:  # type: ignore[attr-defined]
            raise BadRequest(f"{path.name}: more than {MAX_MEMBERS} members; not an OSV dump")
        if end[zipfile._ECD_SIZE] > MAX_DIRECTORY_BYTES:  # type: ignore[attr-defined]
            raise BadRequest(f"{path.name}: a list of members larger than {MAX_DIRECTORY_BYTES // 2**20} MiB; "
                             "not an OSV dump")
        return zipfile.ZipFile(path)
    except zipfile.BadZipFile as exc:
        raise BadRequest(f"{path.name}: a broken zip file ({exc})") from None
    except OSError as exc:
        raise BadRequest(f"{path.name}: cannot read it ({exc.strerror or exc})") from None


def _json_files(directory: Path) -> Iterator[Path]:
    """The .json files under `directory`, one more than MAX_MEMBERS at most; links to directories are not
    followed, so no loop traps the walk."""
    found = 0
    for root, _dirs, names in os.walk(directory):
        for name in names:
            if name.lower().endswith(SUFFIX):
                yield Path(root, name)
                found += 1
                if found > MAX_MEMBERS:
                    return


def _read_file(path: Path) -> bytes:
    """A regular file's bytes, never through a link (it could lead anywhere) nor from a FIFO (it would block)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as exc:
        raise Unreadable(f"cannot open it ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise Unreadable("not a regular file")
        return _bounded(fh)
