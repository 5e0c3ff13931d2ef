"""The floors: a minimal Flask view (`floor:app`) and a bare WSGI callable (`floor:wsgi`) answering every GET
with the same constant body (`FLOOR_PAGE_BYTES`), on pypilite's gunicorn settings.

Nothing on gunicorn answers for less, so `bench/limits.py` gives pypilite's rates as shares of them.
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
