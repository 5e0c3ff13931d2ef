"""Choosing the Simple API representation (PEP 691): Accept with q-values, or ?format= to override."""

from __future__ import annotations

import functools

from flask import Request
from werkzeug.datastructures import MIMEAccept
from werkzeug.exceptions import NotAcceptable
from werkzeug.http import parse_accept_header

TEXT_HTML = "text/html"
HTML_V1 = "application/vnd.pypi.simple.v1+html"
JSON_V1 = "application/vnd.pypi.simple.v1+json"
# "latest" aliases answer with the concrete version they stand for today.
_ALIASES = {
    "application/vnd.pypi.simple.latest+html": HTML_V1,
    "application/vnd.pypi.simple.latest+json": JSON_V1,
}
# Order breaks ties: a client that accepts anything (curl, browsers' */*) gets plain text/html.
OFFERED = (TEXT_HTML, HTML_V1, JSON_V1, *_ALIASES)


class _NotAcceptable(NotAcceptable):
    """406, which depends on Accept like every answer it stands in for."""

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), ("Vary", "Accept")]


def choose_media_type(request: Request) -> str:
    """The media type to answer with; 406 when the client accepts none of ours."""
    requested = request.args.get("format") if request.query_string else None
    if requested is not None:
        requested = requested.replace(" ", "+")  # a "+" typed into the URL arrives decoded as a space
        if requested not in OFFERED:
            raise _NotAcceptable(f"Unsupported format {requested!r}; available: {', '.join(OFFERED[:3])}")
        return _ALIASES.get(requested, requested)
    best = _best_match(request.headers.get("Accept", ""))
    if best is None:
        raise _NotAcceptable(f"None of the accepted media types is available; available: {', '.join(OFFERED[:3])}")
    return best


@functools.lru_cache(maxsize=256)
def _best_match(accept: str) -> str | None:
    """Clients send the same few Accept headers over and over, so each is parsed once per process."""
    accepted = parse_accept_header(accept, MIMEAccept)
    if not accepted:
        return TEXT_HTML
    best = accepted.best_match(OFFERED)
    return _ALIASES.get(best, best) if best is not None else None

