"""A release's own words: its stored metadata, and its long description rendered as Warehouse renders it.

readme-renderer sanitizes the HTML and the templates escape every other field; only metadata extracted when
a file was stored is read, never an archive. Rendering runs in a child process bounded in time and memory,
and results are kept per process, keyed by the sha256 of their source.
"""

from __future__ import annotations

import dataclasses
import os
import re
import resource
import select
import signal
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from email.message import Message
from time import monotonic

import pkginfo
import readme_renderer.markdown
import readme_renderer.rst
import readme_renderer.txt

from pypilite.dists import MAX_METADATA_BYTES, WHEEL
from pypilite.repositories.base import DistFile
from pypilite.storage import BlobStore

# Rendering is bounded: past this many characters the description is shown as plain text, cut here.
MAX_RENDERED_CHARS = 500_000
# Rendered HTML over this is shown as plain text instead, so every description fits the cache below.
MAX_RENDERED_HTML = 2 * 1024 * 1024
# Parsed and rendered metadata kept per process; one README rendered can be megabytes.
CACHE_BYTES = 32 * 1024 * 1024
# What rendering one description may take, beyond what the process had already; past it, plain text.
RENDER_SECONDS = 10.0
RENDER_MEMORY = 512 * 1024 * 1024
_SAFE_URL = re.compile(r"https?://[^\s\"'<>]+\Z", re.IGNORECASE)


@dataclass(frozen=True)
class ReleaseInfo:
    name: str
    summary: str
    author: str
    maintainer: str
    license: str
    requires_python: str
    keywords: str
    home_page: str
    project_urls: tuple[tuple[str, str], ...]
    requires_dist: tuple[str, ...]
    classifiers: tuple[str, ...]
    description_html: str
    source: str  # the file whose metadata this is


def safe_url(url: str) -> str | None:
    """A metadata URL fit for an href: http(s) only, so `javascript:` and friends stay text."""
    url = url.strip()
    return url if _SAFE_URL.match(url) else None


def render(text: str, content_type: str) -> str:
    """HTML for a long description, as Warehouse does it: reStructuredText when no type is given, Markdown
    (GFM or CommonMark) or plain text when said, plain text for anything unknown or unrenderable."""
    if len(text) > MAX_RENDERED_CHARS:
        return _plain(text[:MAX_RENDERED_CHARS] + "\n\n[… description cut here …]")
    try:
        rendered = _render_markup(text, content_type)
    except Exception:  # a renderer's own failure on hostile input (docutils' RecursionError, say)
        rendered = None
    if rendered is None or len(rendered) > MAX_RENDERED_HTML:
        return _plain(text)
    return rendered


def _plain(text: str) -> str:
    return readme_renderer.txt.render(text) or ""  # typed as optional, but plain text always renders


def _render_markup(text: str, content_type: str) -> str | None:
    header = Message()
    header["Content-Type"] = content_type
    media_type = header.get_content_type() if content_type.strip() else "text/x-rst"
    rendered = None
    if media_type == "text/x-rst":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rendered = readme_renderer.rst.render(text)
    elif media_type == "text/markdown":
        variant = header.get_param("variant")
        rendered = readme_renderer.markdown.render(text, variant=variant if variant in ("GFM", "CommonMark")
                                                   else "GFM")
    return rendered


def render_bounded(text: str, content_type: str) -> str:
    """render() in a child process that is killed past RENDER_SECONDS or RENDER_MEMORY more than this one uses:
    plain text then. A sync worker must go on answering whatever a package's description holds."""
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: render, hand the bytes over, and leave without running anything of the parent's
        try:
            os.close(reader)
            _limit_memory(RENDER_MEMORY)
            view = memoryview(render(text, content_type).encode())
            while view:
                view = view[os.write(writer, view):]
        finally:
            os._exit(0)
    os.close(writer)
    chunks, complete = [], False
    deadline = monotonic() + RENDER_SECONDS
    try:
        while (left := deadline - monotonic()) > 0 and select.select([reader], [], [], left)[0]:
            chunk = os.read(reader, 1024 * 1024)
            if not chunk:
                complete = True
                break
            chunks.append(chunk)
    finally:
        os.close(reader)
        if not complete:
            os.kill(pid, signal.SIGKILL)
        _, status = os.waitpid(pid, 0)
    if not complete or not chunks or os.waitstatus_to_exitcode(status) != 0:
        return _plain(text[:MAX_RENDERED_CHARS])
    return b"".join(chunks).decode()


def _limit_memory(extra: int) -> None:
    """Let this process's address space grow by `extra` bytes at most, where Linux says how large it is."""
    try:
        with open("/proc/self/statm") as fh:
            size = int(fh.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return
    resource.setrlimit(resource.RLIMIT_AS, (size + extra, size + extra))


def release_info(blobs: BlobStore, files: list[DistFile]) -> ReleaseInfo | None:
    """The metadata of a release from the first of its files whose metadata was extracted when it was stored
    (wheels first); None when there is none yet (a proxy that has not downloaded a file)."""
    for dist in sorted(files, key=lambda f: f.packagetype != WHEEL):
        if dist.info_sha256:
            info = _CACHE.get(dist.info_sha256)
            if info is None:
                info = _parse(blobs, dist.info_sha256)
                if info is None:
                    continue
                _CACHE.put(dist.info_sha256, info)
            return dataclasses.replace(info, source=dist.filename)
    return None


class InfoCache:
    """ReleaseInfo by the sha256 of its metadata, least recently used out first, bounded by the characters it
    holds (about its bytes); an entry over an eighth of the bound is not kept, so one cannot flush the rest."""

    def __init__(self, max_bytes: int = CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[str, tuple[ReleaseInfo, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def get(self, sha256: str) -> ReleaseInfo | None:
        with self._lock:
            entry = self._entries.get(sha256)
            if entry is None:
                return None
            self._entries.move_to_end(sha256)
            return entry[0]

    def put(self, sha256: str, info: ReleaseInfo) -> None:
        size = sum(len(str(value)) for value in vars(info).values())
        if size > self.max_bytes // 8:
            return
        with self._lock:
            if sha256 in self._entries:
                return
            self._entries[sha256] = (info, size)
            self._size += size
            while self._size > self.max_bytes:
                _, (_, evicted) = self._entries.popitem(last=False)
                self._size -= evicted


_CACHE = InfoCache()


def _parse(blobs: BlobStore, sha256: str) -> ReleaseInfo | None:
    try:
        with blobs.open(sha256) as fh:
            raw = fh.read(MAX_METADATA_BYTES)
    except OSError:
        return None
    dist = pkginfo.Distribution()
    try:
        dist.parse(raw)
    except Exception:  # pkginfo raises assorted errors on garbage; the page then shows no description
        return None
    urls = tuple(_labelled_url(entry) for entry in dist.project_urls or ())
    return ReleaseInfo(
        name=dist.name or "",
        summary=dist.summary or "",
        author=_person(dist.author, dist.author_email),
        maintainer=_person(dist.maintainer, dist.maintainer_email),
        license=getattr(dist, "license_expression", None) or _first_line(dist.license or ""),
        requires_python=dist.requires_python or "",
        keywords=dist.keywords or "",
        home_page=dist.home_page or "",
        project_urls=urls,
        requires_dist=tuple(dist.requires_dist or ()),
        classifiers=tuple(dist.classifiers or ()),
        description_html=render_bounded(dist.description or "", dist.description_content_type or ""),
        source="",
    )


def _person(name: str | None, email: str | None) -> str:
    return ", ".join(part for part in (name or "", email or "") if part)


def _first_line(text: str) -> str:
    """A license field sometimes holds the whole license text; the page shows its first line."""
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _labelled_url(entry: str) -> tuple[str, str]:
    label, _, url = entry.partition(",")
    return (label.strip(), url.strip()) if url else ("", label.strip())
