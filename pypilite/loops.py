"""A proxy whose upstream is this very server asks itself for every page it lacks, each ask another, until
workers run out; the default proxy reads pip's configuration, which a team points at pypilite. Refused at start
where the URL shows it, and on the wire where it does not: requests to a proxy's own upstream carry a marker
of this index, and a request bearing it is answered 508."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import socket
import time
from collections.abc import Mapping

from pypilite.config import ServerConfig
from pypilite.errors import UserError
from pypilite.upstream import UpstreamError, origin, pip_index_url, redact

HEADER = "X-Pypilite-Loop"
WARN_EVERY = 60.0
_warned_at = -WARN_EVERY

log = logging.getLogger(__name__)


class UpstreamLoop(Exception):
    """A proxy repository's upstream is this server; the message says which, and what to set."""


def marker(etag_key: bytes) -> str:
    """The same on every node of one index (they share the key), unguessable from outside it."""
    return hmac.new(etag_key, b"upstream loop marker", hashlib.sha256).hexdigest()[:32]


def is_own(value: str | None, own_marker: str) -> bool:
    return value is not None and hmac.compare_digest(value.encode(), own_marker.encode())


def refuse_own(value: str | None, own_marker: str) -> None:
    """Refuse (508) a request this index's own proxy sent; logged once a minute at most, since whoever sees
    the marker (the upstream does) could otherwise fill the log."""
    global _warned_at
    if not is_own(value, own_marker):
        return
    if time.monotonic() - _warned_at >= WARN_EVERY:
        _warned_at = time.monotonic()
        log.warning("refused a request from this index's own proxy: a proxy repository's upstream is this "
                    "server; set its remote_url")
    raise UserError(508, "this request came from this index's own proxy: a proxy repository's upstream is this "
                         "server; set its remote_url to the upstream index")


def effective_remote(remote_url: str) -> tuple[str, str]:
    """The upstream a proxy actually uses, and where it came from: its own remote_url, or pip's index."""
    if remote_url:
        return remote_url, "remote_url"
    return pip_index_url(), "pip's index-url on this machine"


def points_here(url: str, server: ServerConfig) -> bool:
    """Whether `url` names the address this server listens on, from the URL alone: no name is looked up."""
    try:
        host, port = origin(url)
    except ValueError:
        return False
    if port != server.port:
        return False
    if host in ("localhost", server.host, socket.gethostname()) or host.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    return any(a is not None and (a.is_loopback or a.is_unspecified) for a in (address, mapped))


def refuse_self_proxies(proxies: Mapping[str, str], server: ServerConfig) -> None:
    """Raise UpstreamLoop for the first proxy (name: remote_url) whose upstream is this server's own address."""
    for name, remote_url in sorted(proxies.items()):
        try:
            remote, source = effective_remote(remote_url)
        except UpstreamError:
            continue  # no pip here: the proxy says so itself when asked
        if points_here(remote, server):
            raise UpstreamLoop(f"proxy repository {name!r} would fetch from this server itself "
                               f"({redact(remote)}, its {source}): set its remote_url to the upstream index")
