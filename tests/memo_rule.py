"""The memo's rule, held in every in-process test: a view whose answer the memo may repeat reads nothing of the
request but what the memo keys its answers by (SHAPING, CREDENTIALS and PARTIAL in pypilite/web/memo.py)."""

from __future__ import annotations

from typing import Any

from flask import Flask, request, request_started

from pypilite.web import memo

# Besides the declared headers: the method (the memo answers only GETs), and the WSGI server's and framework's
# own keys, which by PEP 3333 have a dot in their names and are no part of the request.
ALLOWED = frozenset((*memo.SHAPING, memo.CREDENTIALS, *memo.PARTIAL, "REQUEST_METHOD"))
EVERYTHING = "<every key>"


class Recording(dict):
    """A request's environ that notes the keys read from it once Flask has routed the request."""

    def __init__(self, environ: dict[str, Any]) -> None:
        super().__init__(environ)
        self.read: set[str] = set()
        self.watching = False

    def _note(self, key: str) -> None:
        if self.watching:
            self.read.add(key)

    def __getitem__(self, key: str) -> Any:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(str(key))
        return super().__contains__(key)

    def get(self, key: str, default: Any = None) -> Any:
        self._note(key)
        return super().get(key, default)

    def __iter__(self):
        self._note(EVERYTHING)
        return super().__iter__()

    def keys(self):
        self._note(EVERYTHING)
        return super().keys()

    def items(self):
        self._note(EVERYTHING)
        return super().items()

    def values(self):
        self._note(EVERYTHING)
        return super().values()

    def copy(self) -> dict[str, Any]:
        self._note(EVERYTHING)
        return super().copy()


def outside_the_rule(read: set[str]) -> set[str]:
    return {key for key in read if key not in ALLOWED and (key == EVERYTHING or "." not in key)}


def hold(app: Flask) -> None:
    """Put a recording environ before the Flask road behind `app`'s memo: an answer offered to the memo by a
    view that read anything else of the request fails the test that asked for it."""
    guarded: memo.Memo = app.wsgi_app  # type: ignore[assignment]
    flask_road = guarded.app

    def recorded(environ: dict[str, Any], start_response: memo.StartResponse) -> Any:
        recording = Recording(environ)
        body = flask_road(recording, start_response)
        environ.update(dict.items(recording))
        offered = dict.get(recording, memo.OFFER)
        if offered is not None:
            stray = outside_the_rule(recording.read)
            assert not stray, f"{offered.endpoint} offered its answer to the memo, but read {sorted(stray)}"
        return body

    guarded.app = recorded


def _watch(_sender: Flask, **_extra: Any) -> None:
    """Flask has routed the request (which reads Host): from here on, what is read is the views'."""
    if isinstance(request.environ, Recording):
        request.environ.watching = True


request_started.connect(_watch)
