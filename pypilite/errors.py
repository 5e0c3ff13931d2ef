"""Errors that users cause: a status and a one-line message, rendered by whichever door they came through."""

from __future__ import annotations


class UserError(Exception):
    """A request pypilite refuses, with the HTTP status that says why."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class NotFound(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(404, message)


class BadRequest(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(400, message)


class Conflict(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(409, message)


class InsufficientStorage(UserError):
    """The disk (or quota, or file size limit) refused the bytes: the request may succeed once space is freed."""

    def __init__(self, message: str) -> None:
        super().__init__(507, message)


class Unauthenticated(UserError):
    """Credentials missing or wrong: the web layer answers with the Basic challenge clients ask again on."""

    def __init__(self, message: str = "Authentication required") -> None:
        super().__init__(401, message)


class Forbidden(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(403, message)


class TooManyRequests(UserError):
    def __init__(self, message: str) -> None:
        super().__init__(429, message)


class DatabaseUnavailable(UserError):
    """The database cannot be reached (a PostgreSQL server down or refusing): another node, or later, may serve."""

    def __init__(self) -> None:
        super().__init__(503, "Service unavailable: the database cannot be reached; try again shortly")
