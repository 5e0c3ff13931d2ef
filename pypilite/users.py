"""Users: creating them, and the admin that a fresh data dir starts with."""

from __future__ import annotations

import logging
import os
import re
import secrets
from pathlib import Path

from pypilite.auth import hash_password
from pypilite.errors import BadRequest, Conflict
from pypilite.models import User, write_transaction

log = logging.getLogger(__name__)

INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")


def create_user(name: str, password: str | None, admin: bool = False, robot: bool = False) -> User:
    if not _USER_NAME.match(name) or name == "__token__":
        raise BadRequest(f"invalid user name {name!r}: letters, digits, '.', '_', '@' and '-', at most 128")
    if robot and password:
        raise BadRequest("robot users log in with tokens only: give no password")
    if not robot and not password:
        raise BadRequest("a password is required")
    with write_transaction():
        if User.get_or_none(User.name == name) is not None:
            raise Conflict(f"user {name!r} already exists")
        return User.create(name=name, password_hash=hash_password(password) if password else "",
                           admin=admin, robot=robot)


def ensure_initial_admin(data_dir: Path) -> str | None:
    """On a data dir without users, create `admin` with a random password, shown once and kept 0600."""
    path = data_dir / INITIAL_PASSWORD_FILE
    with write_transaction():
        if User.select().exists():
            return None
        password = secrets.token_urlsafe(18)
        User.create(name=INITIAL_ADMIN, password_hash=hash_password(password), admin=True)
        # Written before the commit: if this fails, no admin exists whose password nobody knows.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    log.warning("created user %r with password %s (also written to %s)", INITIAL_ADMIN, password, path)
    return password
