"""A release's own words: its metadata as the stored files carry it, and its long description rendered the way
Warehouse renders it (readme-renderer by Description-Content-Type, sanitized; plain text when that fails).

A package's HTML never reaches a page as it is: readme-renderer cleans what reStructuredText and Markdown
produce, and the templates escape every other field. Parsing and rendering cost milliseconds to seconds, so
results are kept per process, keyed by the sha256 of the bytes they came from (which never change).
"""

from __future__ import annotations

import functools
import re
import warnings
from dataclasses import dataclass
from email.message import Message
from pathlib import Path

import pkginfo
import readme_renderer.markdown
import readme_renderer.rst
import readme_renderer.txt

from pypilite.dists import MAX_METADATA_BYTES, WHEEL, InvalidDistribution, metadata_bytes, parse_filename
from pypilite.repositories.base import DistFile
from pypilite.storage import BlobStore

# Rendering is bounded: past this many characters the description is shown as plain text, cut here.
MAX_RENDERED_CHARS = 500_000
CACHE_ENTRIES = 256
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
        return readme_renderer.txt.render(text[:MAX_RENDERED_CHARS] + "\n\n[… description cut here …]")
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
    return rendered if rendered is not None else readme_renderer.txt.render(text)


def release_info(blobs: BlobStore, files: list[DistFile]) -> ReleaseInfo | None:
    """The metadata of a release from any of its files this server holds (wheels first: their metadata is a
    small blob of its own); None when none is stored here yet (a proxy that has not downloaded one)."""
    for dist in sorted(files, key=lambda f: f.packagetype != WHEEL):
        if dist.metadata_sha256 and blobs.path(dist.metadata_sha256).is_file():
            return _parse(dist.metadata_sha256, str(blobs.path(dist.metadata_sha256)), "", dist.filename)
        if blobs.path(dist.sha256).is_file():
            info = _parse(dist.sha256, str(blobs.path(dist.sha256)), dist.filename, dist.filename)
            if info is not None:
                return info
    return None


@functools.lru_cache(maxsize=CACHE_ENTRIES)
def _parse(sha256: str, path: str, archive_name: str, source: str) -> ReleaseInfo | None:
    """`path` is a metadata file, or (archive_name set) a distribution to read it from. Keyed by sha256 for
    the cache; the other arguments follow from it."""
    try:
        if archive_name:
            raw = metadata_bytes(Path(path), parse_filename(archive_name), archive_name)
        else:
            with open(path, "rb") as fh:
                raw = fh.read(MAX_METADATA_BYTES)
    except (InvalidDistribution, OSError):
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
        description_html=render(dist.description or "", dist.description_content_type or ""),
        source=source,
    )


def _person(name: str | None, email: str | None) -> str:
    return ", ".join(part for part in (name or "", email or "") if part)


def _first_line(text: str) -> str:
    """A license field sometimes holds the whole license text; the page shows its first line."""
    return text.strip().splitlines()[0][:200] if text.strip() else ""


def _labelled_url(entry: str) -> tuple[str, str]:
    label, _, url = entry.partition(",")
    return (label.strip(), url.strip()) if url else ("", label.strip())
