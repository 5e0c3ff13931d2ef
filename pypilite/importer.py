"""`python app.py import DIR --repo NAME`: move in from another index's files (a pypiserver packages dir, a
Nexus or Artifactory export, a `pip download` folder).

Every file goes through publish(), as a web upload does, and is audited as one; identical bytes already
stored are skipped, and a file that fails a check is reported while the rest carry on.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from pypilite.audit import Actor
from pypilite.errors import BadRequest, UserError
from pypilite.repositories.base import UploadOutcome, UploadTarget
from pypilite.storage import BlobStore, BlobTooLarge
from pypilite.uploads import publish

# Legacy formats included, so that they are reported as rejected, with the reason, rather than ignored.
DIST_SUFFIXES = (".whl", ".tar.gz", ".zip", ".egg", ".exe", ".tar.bz2", ".tgz", ".tar.xz", ".tar")
CHUNK = 1024 * 1024


@dataclass
class ImportReport:
    imported: list[str] = field(default_factory=list)
    identical: list[str] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (path relative to DIR, reason)
    ignored: list[str] = field(default_factory=list)

    @property
    def done(self) -> int:
        return len(self.imported) + len(self.identical) + len(self.rejected)


def scan(directory: Path) -> tuple[list[Path], list[Path]]:
    """Distribution files and everything else under `directory`, each sorted; links to directories are not
    followed, so a link loop cannot trap the walk."""
    candidates: list[Path] = []
    others: list[Path] = []
    for root, dirs, names in os.walk(directory):
        dirs.sort()
        for name in sorted(names):
            path = Path(root, name)
            is_dist = path.is_file() and name.lower().endswith(DIST_SUFFIXES)
            (candidates if is_dist else others).append(path)
    return candidates, others


def import_files(target: UploadTarget, directory: Path, paths: Iterable[Path], blobs: BlobStore, limit: int,
                 actor: Actor, report: ImportReport, advance: Callable[[], None] = lambda: None) -> None:
    """Publish each file in turn, noting in `report` what became of it. A refused file is noted and the rest
    carry on; an OSError (a failing disk, a full data dir) ends the import, as it would end every upload."""
    for path in paths:
        name = relative(path, directory)
        try:
            outcome = _import_one(target, directory, path, blobs, limit, actor)
        except UserError as exc:
            report.rejected.append((name, exc.message))
        else:
            (report.identical if outcome is UploadOutcome.IDENTICAL else report.imported).append(name)
        advance()


def _import_one(target: UploadTarget, directory: Path, path: Path, blobs: BlobStore, limit: int,
                actor: Actor) -> UploadOutcome:
    blob = blobs.temp(limit=limit)
    try:
        try:
            with _open_inside(path, directory) as source:
                shutil.copyfileobj(source, blob, CHUNK)
        except BlobTooLarge:
            raise BadRequest(f"File too large: the limit is {limit // 2**20} MB") from None
        except OSError as exc:
            if exc.filename is None:  # not the file refusing to open: a failing disk or a full data dir
                raise
            raise BadRequest(f"cannot read the file: {exc.strerror or exc}") from None
        return publish(target, path.name, blob, actor)
    finally:
        blob.discard()


def _open_inside(path: Path, directory: Path) -> BinaryIO:
    """The file at `path`, if what opens is a regular file under `directory`: never a link out of it (even
    one swapped in after the walk: what was opened is checked, not the name), nor a FIFO or a device, which
    would block the import or never end."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadRequest("not a regular file; not imported")
        if directory not in _opened_path(fd, path).parents:
            raise BadRequest(f"a link to a file outside {directory}; not imported")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _opened_path(fd: int, path: Path) -> Path:
    """Where the file behind `fd` is, after every link: what the kernel says it opened, where it says so
    (Linux), else the name resolved now."""
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return Path(os.path.realpath(path))


def relative(path: Path, directory: Path) -> str:
    return str(path.relative_to(directory))
