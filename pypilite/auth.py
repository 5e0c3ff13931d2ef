"""Who is asking: HTTP Basic with a password or an API token, or nobody.

Wrong credentials are refused whatever the repository, never read as anonymous. Passwords are scrypt
hashes, so verified ones are cached per process for pip's many requests; failed logins are throttled by
client address and by user name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from werkzeug.security import check_password_hash, generate_password_hash

from pypilite import audit
from pypilite.audit import Actor
from pypilite.database import database, sql
from pypilite.errors import TooManyRequests, Unauthenticated
from pypilite.models import Token, TokenScope, User, earliest, user_key, utcnow

if TYPE_CHECKING:
    from werkzeug.wrappers import Request

REALM = "pypilite"
USER = User._meta.table_name
TOKEN = Token._meta.table_name
TOKEN_SCOPE = TokenScope._meta.table_name
# Credentials are checked on every authenticated request: plain tuples, no model building.
_USER_BY_NAME = f'SELECT id, name, admin, robot, password_hash FROM "{USER}" WHERE LOWER(name) = ?'
_TOKEN_BY_DIGEST = (f'SELECT t.id, t.read_only, t.narrowed, t.expires, t.last_used, t.revoked, '
                    f'u.id, u.name, u.admin, u.robot FROM "{TOKEN}" t JOIN "{USER}" u ON u.id = t.user_id '
                    "WHERE t.digest = ?")
_TOKEN_SCOPE = f'SELECT repository_id FROM "{TOKEN_SCOPE}" WHERE token_id = ?'
TOKEN_USERNAME = "__token__"
TOKEN_PREFIX = "pypl_"
LOGIN_FAILED = "login.failed"

# Throttling: failures counted over this window...
FAILURE_WINDOW = timedelta(minutes=5)
# ...more than this many from one address refuse further logins from it for the rest of the window;
ADDRESS_FAILURES = 10
# ...more than this many for one user name refuse it, from the failing addresses only (no lockout of its owner).
USER_FAILURES = 20
# last_used is written at most this often per token: a write per request would serialise every worker.
LAST_USED_RESOLUTION = timedelta(minutes=1)

# Verified when the user does not exist, so a wrong name costs as long as a wrong password.
_DUMMY_HASH = generate_password_hash("pypilite-dummy-password")


@dataclass(frozen=True)
class Principal:
    name: str | None = None
    user_id: int | None = None
    admin: bool = False
    robot: bool = False
    token_id: int | None = None
    read_only: bool = False
    # repository ids a narrowed token may touch; None: not narrowed
    scope: frozenset[int] | None = None
    # When to check the credentials again though nothing changed (token expiry, last-use note); None: never.
    until: datetime | None = None

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal()
# What a 401 asks for, exactly as pip and browsers react to it (werkzeug would drop the quotes).
CHALLENGE = f'Basic realm="{REALM}"'


def hash_password(password: str) -> str:
    return generate_password_hash(password)


def token_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_secret() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


class CredentialCache:
    """Passwords this process has verified, keyed by an HMAC of name and password under a per-process key
    (no password is kept), and valid only while the stored hash is unchanged: a password change or a removed
    user takes effect at once, in every worker, because the stored hash is read on every request anyway."""

    def __init__(self, size: int = 4096) -> None:
        self._key = secrets.token_bytes(32)
        self._size = size
        self._entries: OrderedDict[bytes, str] = OrderedDict()
        self._lock = threading.Lock()

    def _fingerprint(self, name: str, password: str) -> bytes:
        return hmac.new(self._key, f"{name}\0{password}".encode(), hashlib.sha256).digest()

    def verified(self, name: str, password: str, password_hash: str) -> bool:
        fingerprint = self._fingerprint(name, password)
        with self._lock:
            known = self._entries.get(fingerprint)
            if known is not None:
                self._entries.move_to_end(fingerprint)
        return known is not None and hmac.compare_digest(known, password_hash)

    def remember(self, name: str, password: str, password_hash: str) -> None:
        fingerprint = self._fingerprint(name, password)
        with self._lock:
            self._entries[fingerprint] = password_hash
            self._entries.move_to_end(fingerprint)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)


class Authenticator:
    def __init__(self, cache: CredentialCache | None = None, on_failure: Callable[[], None] | None = None) -> None:
        self.cache = cache or CredentialCache()
        self._on_failure = on_failure

    def authenticate(self, request: Request) -> Principal:
        auth = request.authorization
        if auth is None or auth.type != "basic":
            return ANONYMOUS
        try:
            return self.check(auth.username or "", auth.password or "", request.remote_addr or "")
        except Unauthenticated:
            if self._on_failure is not None:
                self._on_failure()
            raise

    def check(self, username: str, password: str, address: str) -> Principal:
        """The principal these credentials prove; Unauthenticated otherwise (TooManyRequests while throttled)."""
        if password.startswith(TOKEN_PREFIX) or username == TOKEN_USERNAME:
            return self._check_token(username, password, address)
        user = database.execute_sql(sql(_USER_BY_NAME), (user_key(username),)).fetchone()
        user_id, name, admin, robot, password_hash = user if user is not None else (None, None, 0, 0, "")
        can_use_password = user is not None and not robot and bool(password_hash)
        principal = Principal(name=name, user_id=user_id, admin=bool(admin), robot=bool(robot))
        if can_use_password and self.cache.verified(username, password, password_hash):
            return principal
        _throttle(username, address)
        if not can_use_password:
            check_password_hash(_DUMMY_HASH, password)
        elif check_password_hash(password_hash, password):
            self.cache.remember(username, password, password_hash)
            return principal
        reason = "robot users log in with tokens only" if robot else "wrong password"
        raise _failed(username, address, reason if user is not None else "no such user")

    def _check_token(self, username: str, secret: str, address: str) -> Principal:
        row = (database.execute_sql(sql(_TOKEN_BY_DIGEST), (token_digest(secret),)).fetchone()
               if secret.startswith(TOKEN_PREFIX) else None)
        if row is None or user_key(username) not in (TOKEN_USERNAME, user_key(row[7])):
            _throttle(username, address)
            raise _failed(username, address, "unknown token")
        token_id, read_only, narrowed, expires, last_used, revoked, owner_id, owner, admin, robot = row
        expires, last_used = Token.expires.python_value(expires), Token.last_used.python_value(last_used)
        now = utcnow()
        if revoked is not None or (expires is not None and expires <= now):
            _throttle(username, address)
            raise _failed(owner, address, f"token {token_id} revoked or expired", message="Token revoked or expired")
        if last_used is None or last_used < now - LAST_USED_RESOLUTION:
            Token.update(last_used=now).where(Token.id == token_id).execute()
            last_used = now
        scope = None
        if narrowed:
            scope = frozenset(r for (r,) in database.execute_sql(sql(_TOKEN_SCOPE), (token_id,)).fetchall())
        return Principal(name=owner, user_id=owner_id, admin=bool(admin), robot=bool(robot),
                         token_id=token_id, read_only=bool(read_only), scope=scope,
                         until=earliest(last_used + LAST_USED_RESOLUTION, expires))


def _throttle(username: str, address: str) -> None:
    """Refuse to even check credentials for an address, or a user from a failing address, over the limit."""
    later = f"try again in {int(FAILURE_WINDOW.total_seconds()) // 60} minutes"
    key = user_key(username)  # ALICE and alice are one user: their failures count together
    if audit.recent_count(LOGIN_FAILED, address=address, window=FAILURE_WINDOW) >= ADDRESS_FAILURES:
        raise TooManyRequests(f"Too many failed logins from {address}; {later}")
    if (audit.recent_count(LOGIN_FAILED, resource=key, window=FAILURE_WINDOW) >= USER_FAILURES
            and audit.recent_count(LOGIN_FAILED, resource=key, address=address, window=FAILURE_WINDOW)):
        raise TooManyRequests(f"Too many failed logins for {username!r}; {later}")


def _failed(username: str, address: str, reason: str,
            message: str = "Invalid username or password") -> Unauthenticated:
    audit.record(Actor(username or "-", address), LOGIN_FAILED, "user", user_key(username), reason=reason)
    return Unauthenticated(message)
