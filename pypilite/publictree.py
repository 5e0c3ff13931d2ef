"""Links to the files anyone may read, so that nginx sends them without asking pypilite (deploy/nginx.conf).

Behind nginx, a download pypilite decides costs nginx a question (to pypilite, or to its cache of pypilite's
answers) before it sends the blob: half of what nginx sends on its own. So when pypilite says yes to a
download without credentials, it also hard-links the blob under the download's URL in this tree
(`<data_dir>/public/current/<repo>/files/<member>/<sha256>/<filename>`), and nginx sends the next anonymous
request for that URL straight from the tree, as a static file. Only a yes is ever written down: a URL with no
link is asked about as before.

A link is a standing yes, so the tree must never outlive a change that could take one back. Rather than find
which links a change touches, every database write that may narrow what anonymous readers get (a deletion,
an overwrite, a repository made private, a group's members changed, a new hosted project that a group's guard
now hides namesakes for, a proxy page that lost a file) retires the whole tree: `current` is pointed at a
new, empty generation before the write commits (models.write_transaction), and the tree fills again as files
are asked for. Writes that say they take nothing from anonymous readers (a new file in a known project; users,
tokens and grants) keep it.

What makes that hold under races and crashes, with every worker and every CLI process on the data dir:
- a writer retires the tree while it holds the database's write lock and this tree's lock, fsyncs the swap
  before its commit (a crash never brings the old generation back to a database that revoked it), and lets
  go of the lock only after the commit;
- a link is made under the same lock, after the decision is taken again from the database: a yes read before
  a revoking commit can only be written into a generation that commit already retired.
Retired generations are removed after the commit; anything written there meanwhile is never served. Every
start (a worker, a command) retires the tree as well, since nothing tells what happened to the database
while no pypilite ran.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
from collections.abc import Callable
from pathlib import Path

from pypilite.errors import UserError
from pypilite.locks import FileLock, LockTimeout
from pypilite.storage import fsync_dir, out_of_space_is_507

log = logging.getLogger(__name__)

CURRENT = "current"
LOCK_NAME = "public-tree"
# A writer waits this long for a link being made (a few file system calls and one indexed read) before its
# commit fails; a download that would make a link gives up sooner and is simply sent without one.
RETIRE_WAIT = 30.0
PUBLISH_WAIT = 1.0


class PublicTree:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "public"
        self.current = self.root / CURRENT
        self._locks = data_dir / "locks"

    def link_path(self, url_path: str) -> Path:
        """Where nginx looks for a file's URL path, `<repo>/files/<member>/<sha256>/<filename>` or another of
        deploy/nginx.conf's file locations."""
        return self.current / url_path

    def publish(self, url_path: str, blob: Path, still_public: Callable[[], bool]) -> bool:
        """Link `blob` at `url_path` if `still_public()`, asked again under the lock, says anyone may read it.
        Whether the link is there now; when it is not, that costs only speed."""
        if _unsafe(url_path):
            raise ValueError(f"not a relative path of plain names: {url_path!r}")
        if self.link_path(url_path).is_file():  # current, so no commit has taken it back since it was made
            return True
        try:
            with FileLock(self._locks, LOCK_NAME).acquire(PUBLISH_WAIT):
                generation = self._current_generation()
                target = generation / url_path
                if target.is_file():
                    return True
                if not still_public():
                    return False
                target.parent.mkdir(parents=True, exist_ok=True)
                os.link(blob, target)
                return True
        except FileExistsError:
            return True
        except (LockTimeout, OSError) as exc:  # another file system, no permission, no space: no shortcut
            log.warning("no public link for %s: %s", url_path, exc)
            return False

    def retire(self) -> FileLock:
        """Point `current` at a new, empty generation (if there is a tree at all). Returns the held lock:
        the caller releases it after its commit, then calls `sweep`."""
        try:
            lock = FileLock(self._locks, LOCK_NAME).acquire(RETIRE_WAIT)
        except LockTimeout:
            raise UserError(503, f"the public file tree in {self.root} stayed locked for {RETIRE_WAIT:g} s "
                                 "(a stuck process?); nothing was changed, try again") from None
        try:
            if self.root.is_dir():
                with out_of_space_is_507():
                    self._swap_or_remove()
        except BaseException:
            lock.release()
            raise
        return lock

    def forget(self) -> None:
        """At start: nothing tells what happened to the database while no pypilite ran (a backup copied back
        into place, an older pypilite, a hand edit), so no link made before is trusted."""
        with FileLock(self._locks, LOCK_NAME).acquire(RETIRE_WAIT):
            if self.root.is_dir():
                self._swap_or_remove()
        self.sweep()

    def sweep(self) -> None:
        """Remove every generation but the current one. Safe at any time: links are only made in `current`,
        under the lock, and a generation is never current again once retired."""
        try:
            entries = list(self.root.iterdir())
            served = os.readlink(self.current) if os.path.islink(self.current) else None
            for entry in entries:
                if entry.name in (CURRENT, served):
                    continue
                if entry.is_symlink() or not entry.is_dir():
                    entry.unlink(missing_ok=True)
                else:
                    shutil.rmtree(entry, ignore_errors=True)
        except FileNotFoundError:
            return
        except OSError as exc:  # only space is at stake: the next sweep tries again
            log.warning("public tree %s: retired generations not removed: %s", self.root, exc)

    def _swap_or_remove(self) -> None:
        """Retire the current generation; if no new one can be made, remove `current` itself (nginx then
        asks pypilite about every download). Raises only when neither works: the write must not commit."""
        try:
            self._new_generation()
        except OSError as exc:
            log.error("public tree %s: cannot make a new generation (%s); removing %s", self.root, exc, CURRENT)
            if self.current.is_dir() and not self.current.is_symlink():
                shutil.rmtree(self.current)
            else:
                self.current.unlink(missing_ok=True)
            fsync_dir(self.root)

    def _current_generation(self) -> Path:
        """The generation links go into, made (with the tree) when there is none yet. Under the lock."""
        try:
            return self.root / os.readlink(self.current)
        except FileNotFoundError:
            self.root.mkdir(parents=True, exist_ok=True)
            return self._new_generation()

    def _new_generation(self) -> Path:
        """An empty generation, made current by one rename and made durable before anything relies on it."""
        name = secrets.token_hex(8)
        generation = self.root / name
        generation.mkdir()
        pointer = self.root / f".{name}"
        os.symlink(name, pointer)
        os.replace(pointer, self.current)
        fsync_dir(self.root)
        return generation


def _unsafe(url_path: str) -> bool:
    parts = url_path.split("/")
    return url_path.startswith("/") or any(part in ("", ".", "..") or "\0" in part for part in parts)
