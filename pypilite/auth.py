"""Who is asking: HTTP Basic with a password or an API token, or nobody.

A request carries no credentials (anonymous), right ones (that user, or that user through a token), or wrong
ones: 401 whatever the repository, so a typo in ~/.netrc is reported instead of silently reading as
anonymous. Passwords are werkzeug scrypt hashes, deliberately slow; a per-process cache of verified
passwords keeps pip's dozens of requests per install from paying that cost each time, and failed logins are
throttled by client address and by user name.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta

from flask import Request
from werkzeug.exceptions import TooManyRequests, Unauthorized
from werkzeug.security import check_password_hash, generate_password_hash

from pypilite import audit
from pypilite.audit import Actor
from pypilite.models import Token, TokenScope, User, first, utcnow

REALM = "pypilite"
USER = User._meta.table_name
TOKEN_USERNAME = "__token__"
TOKEN_PREFIX = "pypl_"
LOGIN_FAILED = "login.failed"

# Throttling: failures counted over this window...
FAILURE_WINDOW = timedelta(minutes=5)
# ...more than this many from one address refuse further logins from it for the rest of the window;
ADDRESS_FAILURES = 10
# ...more than this many for one user name refuse further logins as that user, but only from addresses that
# have themselves failed for it: an attacker cannot lock the real user out of their own account.
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

    @property
    def authenticated(self) -> bool:
        return self.user_id is not None


ANONYMOUS = Principal()


class Challenge(Unauthorized):
    """401 with the exact Basic challenge pip and browsers react to (werkzeug would drop the quotes)."""

    def get_headers(self, environ=None, scope=None) -> list[tuple[str, str]]:
        return [*super().get_headers(environ, scope), ("WWW-Authenticate", f'Basic realm="{REALM}"')]


def challenge(message: str = "Authentication required") -> Unauthorized:
    return Challenge(message)


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
        except Unauthorized:
            if self._on_failure is not None:
                self._on_failure()
            raise

    def check(self, username: str, password: str, address: str) -> Principal:
        """The principal these credentials prove, or 401 (429 while throttled)."""
        if password.startswith(TOKEN_PREFIX) or username == TOKEN_USERNAME:
            return self._check_token(username, password, address)
        user = first(User.raw(f'SELECT * FROM "{USER}" WHERE name = ?', username))
        can_use_password = user is not None and not user.robot and bool(user.password_hash)
        if can_use_password and self.cache.verified(username, password, user.password_hash):
            return _user_principal(user)
        _throttle(username, address)
        if not can_use_password:
            check_password_hash(_DUMMY_HASH, password)
        elif check_password_hash(user.password_hash, password):
            self.cache.remember(username, password, user.password_hash)
            return _user_principal(user)
        reason = "robot users log in with tokens only" if user is not None and user.robot else "wrong password"
        raise _failed(username, address, reason if user is not None else "no such user")

    def _check_token(self, username: str, secret: str, address: str) -> Principal:
        token = (Token.select(Token, User).join(User).where(Token.digest == token_digest(secret)).first()
                 if secret.startswith(TOKEN_PREFIX) else None)
        if token is None or username not in (TOKEN_USERNAME, token.user.name):
            _throttle(username, address)
            raise _failed(username, address, "unknown token")
        now = utcnow()
        if token.revoked is not None or (token.expires is not None and token.expires <= now):
            _throttle(username, address)
            raise _failed(token.user.name, address, f"token {token.id} revoked or expired",
                          message="Token revoked or expired")
        if token.last_used is None or token.last_used < now - LAST_USED_RESOLUTION:
            Token.update(last_used=now).where(Token.id == token.id).execute()
        scope = None
        if token.narrowed:
            scope = frozenset(row.repository_id for row in TokenScope.select(TokenScope.repository)
                              .where(TokenScope.token == token.id))
        owner = token.user
        return Principal(name=owner.name, user_id=owner.id, admin=owner.admin, robot=owner.robot,
                         token_id=token.id, read_only=token.read_only, scope=scope)


def _user_principal(user: User) -> Principal:
    return Principal(name=user.name, user_id=user.id, admin=user.admin, robot=user.robot)


def _throttle(username: str, address: str) -> None:
    """Refuse to even check credentials for an address, or a user from a failing address, over the limit."""
    seconds = int(FAILURE_WINDOW.total_seconds())
    if audit.recent_count(LOGIN_FAILED, address=address, window=FAILURE_WINDOW) >= ADDRESS_FAILURES:
        raise TooManyRequests(f"Too many failed logins from {address}; try again later", retry_after=seconds)
    if (audit.recent_count(LOGIN_FAILED, resource=username, window=FAILURE_WINDOW) >= USER_FAILURES
            and audit.recent_count(LOGIN_FAILED, resource=username, address=address, window=FAILURE_WINDOW)):
        raise TooManyRequests(f"Too many failed logins for {username!r}; try again later", retry_after=seconds)


def _failed(username: str, address: str, reason: str,
            message: str = "Invalid username or password") -> Unauthorized:
    audit.record(Actor(username or "-", address), LOGIN_FAILED, "user", username, reason=reason)
    return challenge(message)
