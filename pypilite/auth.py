"""Who is asking: HTTP Basic credentials checked against users, or anonymous.

Passwords are stored as werkzeug's scrypt hashes. A request either carries no credentials (anonymous),
right ones (that user), or wrong ones (401, whatever the repository), so a typo in ~/.netrc is reported
instead of silently reading as anonymous.
"""

from __future__ import annotations

from dataclasses import dataclass

from flask import Request
from werkzeug.exceptions import Unauthorized
from werkzeug.security import check_password_hash, generate_password_hash

from pypilite.models import User

REALM = "pypilite"
# Checked when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("pypilite-dummy-password")


@dataclass(frozen=True)
class Principal:
    name: str | None = None
    admin: bool = False

    @property
    def authenticated(self) -> bool:
        return self.name is not None


ANONYMOUS = Principal()


class Challenge(Unauthorized):
    """401 with the exact Basic challenge pip and browsers react to (werkzeug would drop the quotes)."""

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), ("WWW-Authenticate", f'Basic realm="{REALM}"')]


def challenge(message: str = "Authentication required") -> Unauthorized:
    return Challenge(message)


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def check_credentials(username: str, password: str) -> Principal | None:
    user = User.get_or_none(User.name == username)
    if user is None or user.robot or not user.password_hash:
        check_password_hash(_DUMMY_HASH, password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    return Principal(name=user.name, admin=user.admin)


def authenticate(request: Request) -> Principal:
    auth = request.authorization
    if auth is None or auth.type != "basic":
        return ANONYMOUS
    principal = check_credentials(auth.username or "", auth.password or "")
    if principal is None:
        raise challenge("Invalid username or password")
    return principal
