"""Users: the service functions behind `app.py user …` and /api/v1/users, and the first admin."""

from __future__ import annotations

import logging
import os
import re
import secrets
import string
from pathlib import Path
from typing import Any

import peewee as pw

from pypilite import audit
from pypilite.audit import Actor
from pypilite.auth import TOKEN_PREFIX, TOKEN_USERNAME, hash_password
from pypilite.database import write_transaction
from pypilite.errors import BadRequest, Conflict, NotFound
from pypilite.models import User, api_time, user_key

log = logging.getLogger(__name__)

INITIAL_ADMIN = "admin"
INITIAL_PASSWORD_FILE = "initial-admin-password"
MIN_PASSWORD_LENGTH = 8
_USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,127}\Z")


def as_json(user: User) -> dict[str, Any]:
    return {"name": user.name, "admin": user.admin, "robot": user.robot,
            "created": api_time(user.created)}


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadRequest(f"a password needs at least {MIN_PASSWORD_LENGTH} characters")
    if password.startswith(TOKEN_PREFIX):
        raise BadRequest(f"a password cannot start with {TOKEN_PREFIX!r}, which marks API tokens")


def find_user(name: str) -> User | None:
    """The user of that name in any case."""
    return User.get_or_none(pw.fn.LOWER(User.name) == user_key(name))


def get_user(name: str) -> User:
    user = find_user(name)
    if user is None:
        raise NotFound(f"user {name!r} not found")
    return user


def list_users() -> list[User]:
    return list(User.select().order_by(User.name))


def create_user(name: str, password: str | None, actor: Actor, admin: bool = False, robot: bool = False) -> User:
    if not _USER_NAME.match(name) or user_key(name) == TOKEN_USERNAME:
        raise BadRequest(f"invalid user name {name!r}: letters, digits, '.', '_', '@' and '-', at most 128")
    if robot and password:
        raise BadRequest("robot users log in with tokens only: give no password")
    if not robot:
        if not password:
            raise BadRequest("a password is required")
        _check_password(password)
    with write_transaction():
        existing = find_user(name)
        if existing is not None:
            raise Conflict(f"user {existing.name!r} already exists" if existing.name == name else
                           f"user {existing.name!r} already exists: names differ in more than case")
        user = User.create(name=name, password_hash=hash_password(password) if password else "",
                           admin=admin, robot=robot)
        audit.record(actor, "user.create", "user", name, admin=admin, robot=robot)
    return user


def set_password(name: str, password: str, actor: Actor, data_dir: Path) -> Path | None:
    """Change a user's password. The first admin's new one retires the initial password file: the path
    removed is returned, for the caller to say so."""
    _check_password(password)
    with write_transaction():
        user = get_user(name)
        if user.robot:
            raise BadRequest(f"{name!r} is a robot user: robots log in with tokens only")
        User.update(password_hash=hash_password(password)).where(User.id == user.id).execute()
        audit.record(actor, "user.password", "user", user.name)
    path = data_dir / INITIAL_PASSWORD_FILE
    if user.name != INITIAL_ADMIN or not path.exists():
        return None
    path.unlink(missing_ok=True)
    log.info("removed %s: %r has a new password", path, INITIAL_ADMIN)
    return path


def remove_user(name: str, actor: Actor) -> None:
    with write_transaction():
        user = get_user(name)
        if user.admin and User.select().where(User.admin & (User.id != user.id)).count() == 0:
            raise Conflict(f"{name!r} is the last administrator; make another one first")
        user.delete_instance(recursive=True)
        audit.record(actor, "user.delete", "user", user.name)


def initial_password() -> str:
    """Over 140 random bits in letters and digits only: pasted after `-p` or into a URL, a password that starts
    with "-" or holds "_" is read as an option or needs escaping."""
    return "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(24))


def ensure_initial_admin(data_dir: Path) -> str | None:
    """On a data dir without users, create `admin` with a random password, shown once and kept 0600."""
    path = data_dir / INITIAL_PASSWORD_FILE
    with write_transaction():
        if User.select().exists():
            return None
        password = initial_password()
        User.create(name=INITIAL_ADMIN, password_hash=hash_password(password), admin=True)
        audit.record(Actor("pypilite", "local"), "user.create", "user", INITIAL_ADMIN, admin=True, robot=False)
        # Written before the commit: if this fails, no admin exists whose password nobody knows.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(password + "\n")
            fh.flush()
            os.fsync(fh.fileno())
    log.warning("created user %r with password %s (also written to %s)", INITIAL_ADMIN, password, path)
    return password
