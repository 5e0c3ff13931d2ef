"""A proxy whose upstream is this very server asks itself for every page it lacks, each ask another ask, until
workers or timeouts run out. The default proxy reads pip's configuration, which a team points at pypilite:
the loop is one config line away. Refused at start where the URL shows it; elsewhere (behind a reverse proxy,
under another name) on the wire: every upstream request carries a marker only this index's nodes can make,
and a request that bears it is answered 508 at once."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Mapping

from pypilite.config import ServerConfig
from pypilite.upstream import UpstreamError, origin, pip_index_url, redact

HEADER = "X-Pypilite-Loop"


class UpstreamLoop(Exception):
    """A proxy repository's upstream is this server; the message says which, and what to set."""


def marker(etag_key: bytes) -> str:
    """The same on every node of one index (they share the key), unguessable from outside it."""
    return hmac.new(etag_key, b"upstream loop marker", hashlib.sha256).hexdigest()[:32]


def is_own(value: str | None, own_marker: str) -> bool:
    return value is not None and hmac.compare_digest(value.encode(), own_marker.encode())


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
