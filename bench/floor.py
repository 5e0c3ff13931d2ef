"""The floors: a minimal Flask view (`floor:app`) and a bare WSGI callable (`floor:wsgi`) answering every GET
with the same constant body.

No Flask view can answer on gunicorn for less than the first, and nothing at all on gunicorn for less than the
second, so `bench/limits.py` runs both on the same gunicorn settings as pypilite, with a body the size of a
project page (and of a wheel, for downloads), and gives pypilite's rates as shares of them.
`FLOOR_PAGE_BYTES` sets the body size.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flask import Flask, Response

BODY = b"x" * int(os.environ.get("FLOOR_PAGE_BYTES", "3500"))

app = Flask(__name__)


@app.get("/<path:anything>")
def page(anything: str) -> Response:
    return Response(BODY, content_type="text/html; charset=utf-8")


_HEADERS = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(BODY)))]


def wsgi(environ: dict, start_response: Callable) -> list[bytes]:
    start_response("200 OK", list(_HEADERS))
    return [BODY]
