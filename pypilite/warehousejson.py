"""Warehouse's JSON API documents (/pypi/<project>/json and /pypi/<project>/<version>/json), which
dependency bots and audit tools read, built from a project page and its files' stored core metadata.

Shaped as Warehouse's; digests pypilite does not keep (md5, blake2b) are left out rather than guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from packaging.metadata import RawMetadata, parse_email
from packaging.utils import InvalidWheelFilename, canonicalize_version, parse_wheel_filename

from pypilite.dists import MAX_METADATA_BYTES, SDIST, WHEEL
from pypilite.errors import NotFound
from pypilite.repositories.base import DistFile, ProjectPage
from pypilite.storage import BlobStore

# The URL a file's entry gives for it: the one the Simple API's page gives, made absolute.
FileUrl = Callable[[DistFile], str]


def release_version(page: ProjectPage, wanted: str | None) -> str:
    """The version a document is about: the one asked for (404 when the project has none such, compared as
    PEP 440 versions so 1.0.0 finds 1.0), else the one pip would pick."""
    if not page.versions:
        raise NotFound(f"project {page.name!r} offers no files ({page.markers.status or 'none stored'})")
    if wanted is None:
        return page.latest_version()
    if wanted in page.versions:
        return wanted
    key = canonicalize_version(wanted)
    for version in page.versions:
        if canonicalize_version(version) == key:
            return version
    raise NotFound(f"project {page.name!r} has no version {wanted[:100]!r}")


def read_metadata(blobs: BlobStore, files: list[DistFile]) -> RawMetadata | None:
    """The core metadata of a release, from the first of its files (wheels first) whose metadata was stored."""
    for dist in sorted(files, key=lambda f: f.packagetype != WHEEL):
        if not dist.info_sha256:
            continue
        try:
            with blobs.open(dist.info_sha256) as fh:
                raw, _ = parse_email(fh.read(MAX_METADATA_BYTES))
        except (OSError, ValueError):
            continue
        return raw
    return None


def document(page: ProjectPage, version: str, metadata: RawMetadata | None, file_url: FileUrl,
             ui_url: str, with_releases: bool) -> dict[str, Any]:
    """The JSON API document of `version` of the project on `page`; `ui_url` is the project's page in the
    web UI, which package_url and release_url name (as Warehouse's name its project pages)."""
    entries = {dist.filename: _file(dist, file_url(dist)) for dist in page.files}
    files = [dist for dist in page.files if dist.version == version]
    doc: dict[str, Any] = {
        "info": _info(page, version, files, metadata or {}, ui_url),
        "last_serial": page.serial,
        "urls": [entries[dist.filename] for dist in files],
        "vulnerabilities": [],
    }
    if with_releases:
        releases: dict[str, list[dict[str, Any]]] = {v: [] for v in page.versions}
        for dist in page.files:
            releases[dist.version].append(entries[dist.filename])
        doc["releases"] = releases
    return doc


def _info(page: ProjectPage, version: str, files: list[DistFile], meta: RawMetadata,
          ui_url: str) -> dict[str, Any]:
    yanked = bool(files) and all(dist.yanked for dist in files)
    reason = next((dist.yanked_reason for dist in files if dist.yanked_reason), "") if yanked else ""
    keywords = meta.get("keywords")
    platforms = meta.get("platforms")
    return {
        "author": meta.get("author"),
        "author_email": meta.get("author_email"),
        "bugtrack_url": None,
        "classifiers": meta.get("classifiers", []),
        "description": meta.get("description"),
        "description_content_type": meta.get("description_content_type"),
        "docs_url": None,
        "download_url": meta.get("download_url"),
        "downloads": {"last_day": -1, "last_month": -1, "last_week": -1},
        "dynamic": meta.get("dynamic"),
        "home_page": meta.get("home_page"),
        "keywords": ",".join(keywords) if keywords is not None else None,
        "license": meta.get("license"),
        "license_expression": meta.get("license_expression"),
        "license_files": meta.get("license_files"),
        "maintainer": meta.get("maintainer"),
        "maintainer_email": meta.get("maintainer_email"),
        "name": meta.get("name") or page.name,
        "package_url": ui_url,
        "platform": ", ".join(platforms) if platforms else None,
        "project_url": ui_url,
        "project_urls": meta.get("project_urls"),
        "provides_extra": meta.get("provides_extra"),
        "release_url": f"{ui_url}?version={quote(version, safe='')}",
        "requires_dist": meta.get("requires_dist"),
        "requires_python": meta.get("requires_python"),
        "summary": meta.get("summary"),
        "version": version,
        "yanked": yanked,
        "yanked_reason": reason or None,
    }


def _file(dist: DistFile, url: str) -> dict[str, Any]:
    uploaded = dist.upload_time
    return {
        "comment_text": "",
        "digests": {"sha256": dist.sha256},
        "downloads": -1,
        "filename": dist.filename,
        "has_sig": False,
        "packagetype": dist.packagetype,
        "python_version": _python_version(dist),
        "requires_python": dist.requires_python or None,
        "size": dist.size,
        "upload_time": uploaded.strftime("%Y-%m-%dT%H:%M:%S") if uploaded else None,
        "upload_time_iso_8601": uploaded.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if uploaded else None,
        "url": url,
        "yanked": dist.yanked,
        "yanked_reason": dist.yanked_reason or None,
    }


def _python_version(dist: DistFile) -> str:
    """What twine sends as pyversion and Warehouse shows: a wheel's Python tag, "source" for an sdist."""
    if dist.packagetype == SDIST:
        return "source"
    try:
        tags = parse_wheel_filename(dist.filename)[3]
    except InvalidWheelFilename:
        return ""
    return ".".join(sorted({tag.interpreter for tag in tags}))
