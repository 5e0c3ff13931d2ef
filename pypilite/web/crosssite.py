"""Writes another site's page makes a browser send here are refused, whatever the route.

A browser sends the UI's HTTP Basic login with any request here, a cross-site form's too. Sec-Fetch-Site and
Origin say where it comes from (command-line clients send neither), and the API takes only JSON bodies,
which no form can send without a CORS preflight that pypilite never grants.
"""

from __future__ import annotations

import logging
from urllib.parse import urlsplit

from flask import Request

from pypilite import audit
from pypilite.audit import Actor
from pypilite.database import write_transaction
from pypilite.errors import UserError
from pypilite.web.errors import API_PREFIX
from pypilite.web.forwarded import external
from pypilite.web.wrappers import PypiliteRequest

log = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# "none": the user typed the address, opened a bookmark or reloaded.
OWN_SITE = frozenset({"same-origin", "none"})
ACTION = "request.cross_site"
_DEFAULT_PORTS = {"http": 80, "https": 443}
# Characters of a header value or path the audit trail keeps.
_AUDITED = 200

Origin = tuple[str, str, int]


def cross_site_header(request: Request, public_url: str) -> str | None:
    """The header by which the browser says another site's page sent this request; None when none says so."""
    site = request.headers.get("Sec-Fetch-Site")
    if site is not None and site.strip().lower() not in OWN_SITE:
        return "Sec-Fetch-Site"
    origin = request.headers.get("Origin")
    if origin is not None and _origin(origin, bare=True) not in own_origins(request, public_url):
        return "Origin"
    return None


def own_origins(request: Request, public_url: str) -> set[Origin]:
    """This server's origins: the one the request was sent to, the one a proxy on this machine says the
    client used, and public_url's."""
    address = external(request)
    urls = [f"{request.scheme}://{request.host}", f"{address.scheme}://{address.host}", public_url]
    return {origin for origin in (_origin(url, bare=False) for url in urls if url) if origin is not None}


def _origin(url: str, bare: bool) -> Origin | None:
    """(scheme, host, port) of an http(s) URL; None for anything else ("null" included). `bare`: nothing but
    scheme, host and port, as an Origin header is."""
    parts = urlsplit(url.strip())
    try:
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    if bare and (parts.path or parts.query or parts.fragment or "@" in parts.netloc):
        return None
    return scheme, parts.hostname, port or _DEFAULT_PORTS[scheme]


def refuse_cross_site_write(request: PypiliteRequest, public_url: str) -> None:
    """403, audited, for a write (any method but GET, HEAD and OPTIONS) that another site's page sent."""
    if request.method in SAFE_METHODS:
        return
    header = cross_site_header(request, public_url)
    if header is None:
        return
    _record(request, header)
    raise UserError(403, f"Cross-site request refused: {header} says another site's page sent it; write from "
                         "this server's own pages or with a client such as twine or curl")


def require_json_api_body(request: Request) -> None:
    """415 for an API write whose body is not JSON (a bodiless one without a Content-Type passes)."""
    if request.method in SAFE_METHODS or not (request.path + "/").startswith(API_PREFIX + "/"):
        return
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if (request.mimetype or request.content_length or chunked) and not request.is_json:
        raise UserError(415, "Unsupported body: the API takes JSON, sent with Content-Type: application/json")


def _record(request: PypiliteRequest, header: str) -> None:
    """The refusal in the audit trail when right credentials came with it: a user's browser made to write by
    another site, what the trail is for. Without them it is only logged: anyone may send these, as often as
    they like, and each audit entry is a write."""
    try:
        who = request.principal.name
    except Exception:  # wrong credentials, throttled, the database away: the refusal stays a 403
        who = None
    detail = {"method": request.method, "header": header}
    for name in ("Sec-Fetch-Site", "Origin"):
        if name in request.headers:
            detail[name.lower().replace("-", "_")] = request.headers[name][:_AUDITED]
    if who is None:
        log.info("refused a cross-site %s %s from %s without credentials: %s", request.method,
                 request.path[:_AUDITED], request.remote_addr, detail)
        return
    try:
        with write_transaction():
            audit.record(Actor(who, request.remote_addr or ""), ACTION, "request", request.path[:_AUDITED],
                         **detail)
    except Exception:  # an audit trail that cannot be written must not turn the refusal into a 500
        log.exception("could not record a refused cross-site %s %s", request.method, request.path[:_AUDITED])
