"""The HTTP client for upstream indexes: conditional GETs of Simple API pages parsed into plain records, and
streamed downloads.

Nothing an upstream says is trusted: redirects are checked hop by hop, connections go to global addresses
only (_Guard), pages are bounded in bytes and time and downloads in rate; an UpstreamError names no URL (the
server log has it, redacted).
"""

from __future__ import annotations

import functools
import ipaddress
import json
import logging
import re
import socket
import subprocess
import sys
import time
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urldefrag, urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NameResolutionError, NewConnectionError, ReadTimeoutError
from urllib3.util.connection import allowed_gai_family
from urllib3.util.retry import Retry

from pypilite import markers
from pypilite.markers import Markers
from pypilite.version import __version__

log = logging.getLogger(__name__)

JSON_V1 = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_V1}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.1"
CHUNK = 256 * 1024
MAX_REDIRECTS = 10
# Files one upstream page may list: far more than any real project has; each becomes a row and a page line.
MAX_PAGE_FILES = 100_000
# A page, its redirects and every byte of it, must come within this many remote_timeouts: as long as other
# workers wait for it (ProxyRepository.lock_wait).
PAGE_TIMEOUTS = 3
# A download may start slowly for that long too; after it, one slower than this on average (counting only the
# time spent waiting for the upstream) is broken off: a trickle would hold a worker and the file's lock for good.
MIN_DOWNLOAD_RATE = 32 * 1024
DEFAULT_PORTS = {"http": 80, "https": 443}
# (host, port): who a connection goes to.
Origin = tuple[str, int]


class UpstreamError(Exception):
    """The upstream could not answer usefully; `timeout` tells a slow upstream from a broken one, and `down`
    an upstream that is not answering at all (a timeout, no connection, a 5xx) from one answering badly."""

    def __init__(self, message: str, timeout: bool = False, down: bool = False) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.down = down or timeout


class PrivateAddress(Exception):
    """A connection refused before it was made: its host has an address that is not global."""


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
    provenance_url: str = ""  # PEP 740: where the upstream keeps the file's provenance; "" when it offers none


@dataclass(frozen=True)
class ParsedPage:
    files: tuple[UpstreamFile, ...]
    markers: Markers = markers.NONE


@dataclass(frozen=True)
class FetchedPage:
    files: tuple[UpstreamFile, ...]
    etag: str
    last_modified: str
    markers: Markers = markers.NONE


NOT_MODIFIED = "not modified"
NOT_FOUND = "not found"
_USERINFO = re.compile(r"\A([A-Za-z][A-Za-z0-9+.-]*://)[^/?#]*@")


def redact(url: str) -> str:
    """The URL with whatever credentials it carries (a user, a token, a password) shown as ***, for logs,
    listings and the audit trail. A pattern rather than a parse, so that no malformed URL ever escapes it."""
    return _USERINFO.sub(r"\1***@", url)


def origin(url: str) -> Origin:
    """Host and port of an http(s) URL; ValueError for any other URL."""
    parts = urlsplit(url)
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("not an http(s) URL")
    return parts.hostname.rstrip("."), parts.port or DEFAULT_PORTS[parts.scheme]


def _without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """The URL without its userinfo, and the credentials that were in it, as requests would read them."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None
    bare = urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))
    return bare, (unquote(parts.username or ""), unquote(parts.password or ""))


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


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_global(address: str) -> bool:
    """Global, and so is any IPv4 address inside it (mapped, 6to4, Teredo's client, NAT64's well-known prefix):
    a gateway would hand the connection on to that one."""
    ip = ipaddress.ip_address(address)
    if not ip.is_global:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        teredo = ip.teredo[1] if ip.teredo else None
        nat64 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF) if ip in _NAT64 else None
        return all(inner.is_global for inner in (ip.ipv4_mapped, ip.sixtofour, teredo, nat64) if inner is not None)
    return True


def _addresses(host: str, port: int, allowed: Origin | None) -> list[str]:
    """The addresses `host` resolves to, unless one is not global and (host, port) is not `allowed`."""
    found = socket.getaddrinfo(host, port, allowed_gai_family(), socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in found))
    if (host.rstrip(".").lower(), port) != allowed and not all(_is_global(a) for a in addresses):
        raise PrivateAddress()
    return addresses


class _Guard:
    """Mixed into urllib3's connections: resolve the host once, refuse it unless every address is global or it
    is the session's own upstream, and connect to an address that was checked, so a DNS answer that changes
    in between (rebinding) is never used. urllib3 connects to `_dns_host` and verifies TLS against `host`,
    which is `_dns_host` too, hence the swap for the connect alone."""

    allowed: Origin | None = None
    _dns_host: str

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            addresses = _addresses(name, self.port, self.allowed)  # type: ignore[attr-defined]
        except socket.gaierror as exc:
            raise NameResolutionError(name, self, exc) from exc  # type: ignore[arg-type]
        error: Exception | None = None
        try:
            for address in addresses:
                self._dns_host = address
                try:
                    return super()._new_conn()  # type: ignore[misc]
                except (NewConnectionError, ConnectTimeoutError) as exc:
                    error = exc
        finally:
            self._dns_host = name
        raise error  # type: ignore[misc]


def _guarded_pools(allowed: Origin | None) -> dict[str, type[HTTPConnectionPool]]:
    def pool(base: type[HTTPConnectionPool], connection: type[HTTPConnection]) -> type[HTTPConnectionPool]:
        guarded = type(f"Guarded{connection.__name__}", (_Guard, connection), {"allowed": allowed})
        return type(f"Guarded{base.__name__}", (base,), {"ConnectionCls": guarded})

    return {"http": pool(HTTPConnectionPool, HTTPConnection), "https": pool(HTTPSConnectionPool, HTTPSConnection)}


class _GuardedAdapter(HTTPAdapter):
    """requests' adapter with pools of guarded connections. Only direct connections go through them: a proxy
    from the environment resolves names itself, so Upstream checks what it sends there (see _check_proxied)."""

    def __init__(self, allowed: Origin | None, **kwargs: Any) -> None:
        self.allowed = allowed
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _guarded_pools(self.allowed)


class _Session(requests.Session):
    """Redirects are Upstream's to follow, hop by hop: requests would read a redirect's whole body first, even
    one it does not follow, and that body is as long as the upstream likes."""

    def resolve_redirects(self, *args: Any, **kwargs: Any) -> Iterator[Any]:
        return iter(())


def make_session(allowed: Origin | None = None) -> requests.Session:
    """A pooled session that connects to global addresses, and to `allowed` wherever it is."""
    session = _Session()
    # Connection failures and 502/503/504 are retried; a read timeout is not: a slow upstream asked again
    # only makes the client wait twice as long for the stale page it will get anyway.
    retry = Retry(total=2, connect=2, read=False, status=2, backoff_factor=0.2, status_forcelist=(502, 503, 504),
                  allowed_methods=("GET", "HEAD"), raise_on_status=False)
    adapter = _GuardedAdapter(allowed, pool_connections=8, pool_maxsize=16, max_retries=retry)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = f"pypilite/{__version__} (+private package index proxy)"
    return session


class Sessions:
    """The process's pooled sessions, one per upstream origin, each allowed to reach that origin alone among
    the non-global addresses: a kept-alive connection to one proxy's private mirror is never lent to another
    proxy whose pages name that mirror."""

    def __init__(self) -> None:
        self._by_origin: dict[Origin, requests.Session] = {}

    def get(self, allowed: Origin) -> requests.Session:
        session = self._by_origin.get(allowed)
        if session is None:
            session = self._by_origin.setdefault(allowed, make_session(allowed))
        return session


class Upstream:
    """One repository's upstream simple index."""

    def __init__(self, sessions: Sessions, root: str, timeout: float, name: str, max_page_bytes: int,
                 own_headers: Mapping[str, str] | None = None) -> None:
        self.name = name
        self.own_headers = dict(own_headers or {})  # for the root's origin alone, as its credentials
        self.timeout = timeout
        self.max_page_bytes = max_page_bytes
        # Credentials go to the root's own origin only, never to a host a page or a redirect names.
        self.root, self.auth = _without_credentials(root if root.endswith("/") else root + "/")
        try:
            self.origin = origin(self.root)
        except ValueError:
            raise self._failed("is not an http(s) URL (remote_url)", root) from None
        self.session = sessions.get(self.origin)

    def fetch_page(self, project: str, etag: str = "", last_modified: str = "") -> FetchedPage | str:
        """The project's page, NOT_MODIFIED for a matching validator, or NOT_FOUND."""
        url = urljoin(self.root, f"{project}/")
        headers = {"Accept": ACCEPT}
        if etag:
            headers["If-None-Match"] = etag
        if last_modified:
            headers["If-Modified-Since"] = last_modified
        deadline = time.monotonic() + PAGE_TIMEOUTS * self.timeout
        response = self._get(url, headers, deadline)
        with response:
            if response.status_code == 304:
                return NOT_MODIFIED
            if response.status_code in (404, 410):
                return NOT_FOUND
            if response.status_code != 200:
                raise self._failed(f"answered {response.status_code}", response.url,
                                   down=response.status_code >= 500)
            body = self._page_body(response, deadline)
            try:
                parsed = parse_page(body, response.headers.get("Content-Type", ""), response.url)
            except UpstreamError as exc:
                raise self._failed(str(exc), response.url) from None
            return FetchedPage(parsed.files, response.headers.get("ETag", ""),
                               response.headers.get("Last-Modified", ""), parsed.markers)

    def download(self, url: str, size: int | None = None) -> tuple[Generator[bytes, None, None], int | None]:
        """A file's bytes in chunks, as they left the upstream (pip's way: a .tar.gz some servers mislabel
        as gzip-encoded must not be unpacked), and its length when the upstream said. `size`: what its page
        declared, which a Content-Length must not contradict."""
        response = self._get(url, {"Accept-Encoding": "identity"})
        header = response.headers.get("Content-Length", "")
        length = int(header) if header.isdigit() else None
        if response.status_code != 200 or None not in (size, length) and size != length:
            response.close()
            how = (f"answered {response.status_code} for a file" if response.status_code != 200
                   else f"sent a file of {length} bytes where its page declared {size}")
            raise self._failed(how, response.url, down=response.status_code >= 500)

        def chunks() -> Generator[bytes, None, None]:
            received, waited = 0, 0.0
            with response:
                while True:
                    started = time.monotonic()
                    chunk = self._read(response, decode=False)
                    waited += time.monotonic() - started
                    if not chunk:
                        return
                    received += len(chunk)
                    grace = PAGE_TIMEOUTS * self.timeout
                    if waited > grace and received < MIN_DOWNLOAD_RATE * (waited - grace):
                        raise self._failed(f"sent a file slower than {MIN_DOWNLOAD_RATE // 1024} KiB/s; broken off",
                                           response.url, timeout=True)
                    yield chunk

        return chunks(), length

    def _page_body(self, response: requests.Response, deadline: float) -> bytes:
        """The page's bytes as decoded (gzip and friends), counted while they arrive and stopped at the cap."""
        body = bytearray()
        while chunk := self._read(response, decode=True):
            body += chunk
            if len(body) > self.max_page_bytes:
                raise self._failed(f"sent a page larger than server.max_upstream_page_mb "
                                   f"({self.max_page_bytes // (1024 * 1024)} MB)", response.url)
            if time.monotonic() > deadline:
                raise self._failed(f"did not send its page within {PAGE_TIMEOUTS * self.timeout:g} s", response.url,
                                   timeout=True)
        return bytes(body)

    def _read(self, response: requests.Response, decode: bool) -> bytes:
        """What one read of the socket brought (b"" at the end), so a deadline is looked at between reads."""
        try:
            return response.raw.read1(CHUNK, decode_content=decode)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise self._failed(f"broke off ({type(exc).__name__})", response.url, down=True,
                               timeout=isinstance(exc, (ReadTimeoutError, TimeoutError))) from None

    def _get(self, url: str, headers: dict[str, str], deadline: float | None = None) -> requests.Response:
        """The answer at `url` after its redirects, each hop checked; a redirect's body is never read."""
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                target_origin = origin(url)
            except ValueError:
                raise self._failed("named a URL that is not http(s), which is never fetched", url) from None
            target, _ = _without_credentials(url)
            timeout = self.timeout
            if deadline is not None:
                timeout = min(timeout, deadline - time.monotonic())
                if timeout <= 0:
                    raise self._failed(f"did not send its page within {PAGE_TIMEOUTS * self.timeout:g} s", url,
                                       timeout=True)
            try:
                self._check_proxied(target, target_origin)
                own = target_origin == self.origin
                response = self.session.get(target, headers={**headers, **self.own_headers} if own else headers,
                                            timeout=timeout, stream=True, allow_redirects=False,
                                            auth=self.auth if own else None)
            except PrivateAddress:
                raise self._failed("named a private or local address, which is never fetched (only remote_url's "
                                   "own host may be one)", url) from None
            except requests.Timeout:
                raise self._failed(f"did not answer within {timeout:g} s", url, timeout=True) from None
            except requests.RequestException as exc:
                garbled = bool(exc.args) and isinstance(exc.args[0], urllib3.exceptions.ProtocolError)
                how = "hung up or sent a malformed answer" if garbled else "is unreachable"
                raise self._failed(f"{how} ({type(exc).__name__})", url, down=True) from None
            location = self.session.get_redirect_target(response)
            if location is None:
                return response
            response.close()
            url = urljoin(target, location)
        raise self._failed(f"redirected more than {MAX_REDIRECTS} times", url)

    def _check_proxied(self, url: str, target: Origin) -> None:
        """Through a proxy from the environment, the proxy resolves the name and no connection here can be
        checked: refuse what resolves here to a private address. A name only the proxy can resolve goes on."""
        proxies = self.session.merge_environment_settings(url, {}, None, None, None)["proxies"]
        if requests.utils.select_proxy(url, proxies) is None:
            return
        try:
            _addresses(target[0], target[1], self.origin)
        except (socket.gaierror, UnicodeError):
            pass

    def _failed(self, how: str, url: str, timeout: bool = False, down: bool = False) -> UpstreamError:
        """The one-line error for answers, which names no URL; the URL, redacted, goes to the log."""
        log.warning("%s: upstream %s %s", self.name, redact(url), how)
        return UpstreamError(f"upstream of repository {self.name!r} {how}", timeout, down)


def parse_page(body: bytes, content_type: str, base_url: str) -> ParsedPage:
    """An upstream project page, JSON or HTML by its Content-Type, with every URL made absolute."""
    try:
        if content_type.split(";")[0].strip() == JSON_V1:
            page = json.loads(body)
            entries = page["files"]
            _check_count(len(entries))
            files = tuple(_from_json(entry, base_url) for entry in entries)
            status = page.get("project-status")
            status = status if isinstance(status, dict) else {}
            meta = page.get("meta")
            return ParsedPage(files, _markers(status.get("status"), status.get("reason"),
                                              _list(meta.get("tracks") if isinstance(meta, dict) else None),
                                              _list(page.get("alternate-locations")), base_url))
        parser = _Anchors()
        parser.feed(body.decode("utf-8", "replace"))
        _check_count(len(parser.anchors))
        files = tuple(_from_anchor(attrs, text, base_url) for attrs, text in parser.anchors)
        found = parser.metas
        return ParsedPage(files, _markers(next(iter(found.get("pypi:project-status", [])), None),
                                          next(iter(found.get("pypi:project-status-reason", [])), None),
                                          found.get("pypi:tracks", []), found.get("pypi:alternate-locations", []),
                                          base_url))
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError) as exc:
        raise UpstreamError(f"sent a page that cannot be parsed ({type(exc).__name__})") from None


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _markers(status: Any, reason: Any, tracks: list[Any], alternates: list[Any], base_url: str) -> Markers:
    """The page's own PEP 792 and PEP 708 words, each value checked (see markers)."""
    status, reason = markers.upstream_status(status, reason)
    host = (urlsplit(base_url).hostname or "").rstrip(".")

    def absolute(values: list[Any]) -> tuple[str, ...]:
        joined = (urljoin(base_url, v) for v in values[:markers.MAX_URLS * 4]
                  if isinstance(v, str) and len(v) <= markers.MAX_URL_LENGTH and v.isprintable())
        return markers.upstream_urls(joined, host)

    return Markers(status, reason, absolute(tracks), absolute(alternates))


def _provenance(value: Any, base_url: str) -> str:
    """A file's provenance URL, made absolute; it is only ever fetched through the guarded session."""
    if not isinstance(value, str) or not value or len(value) > markers.MAX_URL_LENGTH or not value.isprintable():
        return ""
    url = urljoin(base_url, value)
    return url if urlsplit(url).scheme in ("http", "https") else ""


def _check_count(files: int) -> None:
    if files > MAX_PAGE_FILES:
        raise UpstreamError(f"sent a page of more than {MAX_PAGE_FILES} files")


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
        size=size if type(size) is int and 0 <= size < 2**63 else None,  # what a database column holds
        upload_time=_parse_time(upload_time) if isinstance(upload_time, str) else None,
        provenance_url=_provenance(entry.get("provenance"), base_url),
    )


def _parse_time(value: str) -> datetime | None:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed


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
        provenance_url=_provenance(attrs.get("data-provenance"), base_url),
    )


class _Anchors(HTMLParser):
    """The <a> elements of a PEP 503 page: attributes (entities already unescaped) and text; and the
    contents of its <meta name="pypi:..."> elements, a bounded number of each."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[dict[str, str | None], str]] = []
        self.metas: dict[str, list[str]] = {}
        self._open: dict[str, str | None] | None = None
        self._text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self._open, self._text = dict(attrs), []
        elif tag == "meta":
            found = dict(attrs)
            name, content = found.get("name") or "", found.get("content")
            if name.startswith("pypi:") and content is not None:
                values = self.metas.setdefault(name[:40], [])
                if len(values) < markers.MAX_URLS * 4:
                    values.append(content)

    def handle_data(self, data: str) -> None:
        if self._open is not None:
            self._text.append(data)

    def handle_endtag(self, tag: str) -> None:
        if tag == "a" and self._open is not None:
            self.anchors.append((self._open, "".join(self._text)))
            self._open = None
