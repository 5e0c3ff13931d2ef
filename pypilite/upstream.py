"""The HTTP client for upstream indexes: conditional GETs of Simple API pages, parsed from PEP 691 JSON or
PEP 503 HTML into plain records, and streamed file downloads.

One pooled requests session per process, idempotent calls retried with back-off, and every failure turned
into an UpstreamError that says in one line what went wrong (unreachable, timed out, or a bad answer).
"""

from __future__ import annotations

import functools
import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from html.parser import HTMLParser
from typing import Any
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from pypilite import __version__

log = logging.getLogger(__name__)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_V1}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
CHUNK = 256 * 1024


class UpstreamError(Exception):
    """The upstream could not answer usefully; `timeout` tells a slow upstream from a broken one."""

    def __init__(self, message: str, timeout: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout


@dataclass(frozen=True)
class UpstreamFile:
    filename: str
    url: str
    sha256: str | None
    requires_python: str
    yanked: bool
    yanked_reason: str
    metadata_sha256: str | None  # the declared hash of the PEP 658 file; None when none is offered
    size: int | None
    upload_time: datetime | None


@dataclass(frozen=True)
class FetchedPage:
    files: tuple[UpstreamFile, ...]
    etag: str
    last_modified: str


NOT_MODIFIED = "not modified"
NOT_FOUND = "not found"


def redact(url: str) -> str:
    """The URL without the password of any credentials in it, for logs, listings and the audit trail."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


@functools.cache
def pip_index_url() -> str:
    """The index pip on this machine installs from: its environment, then its configuration files, then its
    built-in default. Asked of pip itself, at run time, so pypilite never names an index of its own."""
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        listed = ""
    settings = dict(line.split("=", 1) for line in listed.splitlines() if "=" in line)
    for key in (":env:.index-url", "install.index-url", "global.index-url"):
        if key in settings:
            return settings[key].strip().strip("'\"")
    try:
        from pip._internal.models.index import PyPI  # pip's own default, which it keeps up to date
    except ImportError:
        raise UpstreamError("no upstream: set remote_url, since pip (whose index is the default) is not "
                            "installed here") from None
    return PyPI.simple_url


def make_session() -> requests.Session:
    session = requests.Session()
    # Connection failures and 502/503/504 are retried; a read timeout is not: a slow upstream asked again
    # only makes the client wait twice as long for the stale page it will get anyway.
    retry = Retry(total=2, connect=2, read=False, status=2, backoff_factor=0.2, status_forcelist=(502, 503, 504),
                  allowed_methods=("GET", "HEAD"), raise_on_status=False)
    adapter = HTTPAdapter(pool_connections=8, pool_maxsize=16, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"pypilite/{__version__} (+private package index proxy)"
    return session


class Upstream:
    """One upstream simple index, reached through the process's shared session."""

    def __init__(self, session: requests.Session, root: str, timeout: float) -> None:
        self.session = session
        self.root = root if root.endswith("/") else root + "/"
        self.timeout = timeout

    def fetch_page(self, project: str, etag: str = "", last_modified: str = "") -> FetchedPage | str:
        """The project's page, NOT_MODIFIED for a matching validator, or NOT_FOUND."""
        url = urljoin(self.root, f"{project}/")
        headers = {"Accept": ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        response = self._get(url, headers)
        with response:
            if response.status_code == 304:
                return NOT_MODIFIED
            if response.status_code in (404, 410):
                return NOT_FOUND
            if response.status_code != 200:
                raise UpstreamError(f"upstream answered {response.status_code} for {redact(url)}")
            files = parse_page(response.content, response.headers.get("Content-Type", ""), response.url)
            return FetchedPage(files, response.headers.get("ETag", ""), response.headers.get("Last-Modified", ""))

    def download(self, url: str) -> tuple[Iterator[bytes], int | None]:
        """A file's bytes in chunks, and its length when the upstream said."""
        response = self._get(url, {}, stream=True)
        if response.status_code != 200:
            response.close()
            raise UpstreamError(f"upstream answered {response.status_code} for {redact(url)}")
        length = response.headers.get("Content-Length")

        def chunks() -> Iterator[bytes]:
            with response:
                try:
                    yield from response.iter_content(CHUNK)
                except requests.RequestException as exc:
                    raise UpstreamError(f"download of {redact(url)} broke off: {type(exc).__name__}") from None

        return chunks(), int(length) if length and length.isdigit() else None

    def _get(self, url: str, headers: dict[str, str], stream: bool = False) -> requests.Response:
        try:
            return self.session.get(url, headers=headers, timeout=self.timeout, stream=stream)
        except requests.Timeout:
            raise UpstreamError(f"upstream did not answer within {self.timeout:g} s: {redact(url)}",
                                timeout=True) from None
        except requests.RequestException as exc:
            raise UpstreamError(f"upstream unreachable: {redact(url)} ({type(exc).__name__})") from None


def parse_page(body: bytes, content_type: str, base_url: str) -> tuple[UpstreamFile, ...]:
    """An upstream project page, JSON or HTML by its Content-Type, with every URL made absolute."""
    try:
        if content_type.split(";")[0].strip() == JSON_V1:
            return tuple(_from_json(entry, base_url) for entry in json.loads(body)["files"])
        parser = _Anchors()
        parser.feed(body.decode("utf-8", "replace"))
        return tuple(_from_anchor(attrs, text, base_url) for attrs, text in parser.anchors)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UpstreamError(f"upstream sent a page that cannot be parsed ({type(exc).__name__})") from None


def _metadata_hash(value: Any) -> str | None:
    if isinstance(value, dict):
        digest = value.get("sha256")
        return digest.lower() if isinstance(digest, str) else None
    return None


def _from_json(entry: dict[str, Any], base_url: str) -> UpstreamFile:
    yanked = entry.get("yanked", False)
    metadata = entry.get("core-metadata", entry.get("dist-info-metadata"))
    upload_time = entry.get("upload-time")
    size = entry.get("size")
    return UpstreamFile(
        filename=entry["filename"],
        url=urljoin(base_url, entry["url"]),
        sha256=(entry.get("hashes") or {}).get("sha256", "").lower() or None,
        requires_python=entry.get("requires-python") or "",
        yanked=bool(yanked),
        yanked_reason=yanked if isinstance(yanked, str) else "",
        metadata_sha256=_metadata_hash(metadata),
        size=size if isinstance(size, int) and size >= 0 else None,
        upload_time=_parse_time(upload_time) if isinstance(upload_time, str) else None,
    )


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(timezone.utc).replace(tzinfo=None) if parsed.tzinfo else parsed


def _from_anchor(attrs: dict[str, str | None], text: str, base_url: str) -> UpstreamFile:
    url, fragment = urldefrag(urljoin(base_url, attrs.get("href") or ""))
    name, _, digest = fragment.partition("=")
    metadata = attrs.get("data-core-metadata", attrs.get("data-dist-info-metadata"))
    metadata_name, _, metadata_digest = (metadata or "").partition("=")
    yanked = "data-yanked" in attrs
    return UpstreamFile(
        filename=text.strip() or url.rsplit("/", 1)[-1],
        url=url,
        sha256=digest.lower() if name == "sha256" and digest else None,
        requires_python=attrs.get("data-requires-python") or "",
        yanked=yanked,
        yanked_reason=(attrs.get("data-yanked") or "") if yanked else "",
        metadata_sha256=metadata_digest.lower() if metadata_name == "sha256" and metadata_digest else None,
        size=None,
        upload_time=None,
    )


class _Anchors(HTMLParser):
    """The <a> elements of a PEP 503 page: attributes (entities already unescaped) and text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text)))
            self._open = None
