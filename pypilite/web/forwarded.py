"""Who a client is and which address it used: the request's own peer, scheme, host and sub-path, or what a
reverse proxy on this machine says they were.

X-Forwarded-* is believed only from a loopback peer, and of X-Forwarded-For only the last hop (the one that
proxy appended). Behind a proxy on another machine, set server.public_url.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from flask import Request

_FORWARDED = {
    "X-Forwarded-Proto": re.compile(r"https?\Z"),
    "X-Forwarded-Host": re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?\Z|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?\Z"),
    "X-Forwarded-Prefix": re.compile(r"(/[A-Za-z0-9._~-]+)*/?\Z"),
}


@dataclass(frozen=True)
class Address:
    scheme: str
    host: str  # host[:port], as a Host header carries it
    prefix: str  # the sub-path this server is mounted at, "" at the root


def external(request: Request) -> Address:
    """Where the client sent this request: the proxy's word for it when the peer is a proxy on this machine."""
    scheme, host, prefix = request.scheme, request.host, request.script_root
    if is_loopback(request.environ.get("REMOTE_ADDR")):
        scheme = _forwarded(request, "X-Forwarded-Proto") or scheme
        host = _forwarded(request, "X-Forwarded-Host") or host
        prefix = _forwarded(request, "X-Forwarded-Prefix") or prefix
    return Address(scheme, host, prefix)


def client_address(environ: dict[str, Any]) -> str:
    """The address of the client: the peer's, or the last X-Forwarded-For hop when the peer is a proxy on this
    machine (what audit entries show and login throttling counts)."""
    peer = environ.get("REMOTE_ADDR") or ""
    forwarded = environ.get("HTTP_X_FORWARDED_FOR")
    if forwarded and is_loopback(peer):
        hop = forwarded.rsplit(",", 1)[-1].strip()
        try:
            return str(ipaddress.ip_address(hop))
        except ValueError:
            return peer
    return peer


def is_loopback(address: str | None) -> bool:
    """Whether the peer is on this machine; an IPv4 peer of a server bound to "::" counts too."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    mapped = getattr(ip, "ipv4_mapped", None)
    return (mapped or ip).is_loopback


def _forwarded(request: Request, name: str) -> str | None:
    """The first (client-side) value of a forwarding header, if it is well formed."""
    value = request.headers.get(name, "").split(",")[0].strip()
    return value if value and _FORWARDED[name].match(value) else None
