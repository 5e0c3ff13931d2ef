"""Turning refusals into responses: plain text, one line, the message also in the status line's reason
phrase (twine prints the reason), and the Basic challenge kept on 401s."""

from __future__ import annotations

import json
from collections.abc import Callable

import peewee as pw
from flask import Blueprint, Flask, Response, request
from werkzeug.exceptions import HTTPException

from pypilite.auth import CHALLENGE
from pypilite.database import connection_lost
from pypilite.errors import DatabaseUnavailable, Unauthenticated, UserError

API_PREFIX = "/api"


def reason_phrase(message: str) -> str:
    """A status line must be one latin-1 line; keep it short enough for every proxy in between."""
    line = " ".join(message.split())
    return line.encode("latin-1", "replace").decode("latin-1")[:300]


def plain_error(status: int, message: str) -> Response:
    response = Response(message.rstrip("\n") + "\n", content_type="text/plain; charset=utf-8")
    response.status = f"{status} {reason_phrase(message)}"
    return response


def json_error(status: int, message: str) -> Response:
    response = Response(json.dumps({"error": message}) + "\n", content_type="application/json")
    response.status = f"{status} {reason_phrase(message)}"
    return response


def _error(status: int, message: str) -> Response:
    """The REST API speaks JSON, even for a URL under it that matches no route; everything else plain text."""
    if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
        return json_error(status, message)
    return plain_error(status, message)


def register(app: Flask) -> None:
    answer_errors(app, _error)


def answer_errors(scope: Flask | Blueprint, render: Callable[[int, str], Response]) -> None:
    """Refusals and HTTP errors in `scope` answered with `render(status, message)`, keeping the headers an
    HTTP error brings: WWW-Authenticate on a 401 (pip and browsers ask for credentials only then), Allow on a
    405."""
    @scope.errorhandler(UserError)
    def _user_error(exc: UserError) -> Response:
        response = render(exc.status, exc.message)
        if isinstance(exc, Unauthenticated):
            response.headers["WWW-Authenticate"] = CHALLENGE
        return response

    @scope.errorhandler(pw.DataError)
    def _unstorable(_exc: pw.DataError) -> Response:
        """PostgreSQL refuses what SQLite takes (a NUL character in text, an integer beyond 32 bits) in any value
        a request brings, whatever the view; the transaction it broke was rolled back."""
        return render(400, "Invalid input: a NUL character, or a number out of range")

    @scope.errorhandler(pw.OperationalError)
    @scope.errorhandler(pw.InterfaceError)
    def _database_gone(exc: pw.DatabaseError) -> Response:
        """A worker's connection the database server cut answers as one that cannot connect; other database
        failures stay errors (500)."""
        if not connection_lost():
            raise exc
        return render(503, DatabaseUnavailable().message)

    @scope.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        response = render(exc.code or 500, exc.description or exc.name)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers.add(name, value)
        return response
