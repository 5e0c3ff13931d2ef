"""The Flask floor: a minimal Flask view answering every GET with the same constant page.

No index can serve a page through Flask on gunicorn for less than this, so `bench/limits.py` runs it on the
same gunicorn settings as pypilite, with a page of the same size, and gives pypilite's page rate as a share
of it. `FLOOR_PAGE_BYTES` sets the page size.
"""

from __future__ import annotations

import os

from flask import Flask, Response

BODY = b"x" * int(os.environ.get("FLOOR_PAGE_BYTES", "3500"))

app = Flask(__name__)


@app.get("/<path:anything>")
def page(anything: str) -> Response:
    return Response(BODY, content_type="text/html; charset=utf-8")
