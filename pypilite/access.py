"""The one place that decides whether a principal may do something to a repository.

Levels are read < upload < admin: the highest of admin for a global admin, the user's grant, and read on a
public repository. A token only lowers its owner's: read-only caps it at read, a narrowed one leaves only
public read outside its list. Refusals are pypilite's own errors; the web layer makes them 401 and 403.
"""

from __future__ import annotations

import dataclasses

from pypilite.auth import Authenticator, Principal
from pypilite.errors import Forbidden, Unauthenticated
from pypilite.markers import QUARANTINED
from pypilite.models import Grant, Token, user_key

READ = "read"
UPLOAD = "upload"
ADMIN = "admin"
LEVELS = (READ, UPLOAD, ADMIN)
_RANK = {None: 0, READ: 1, UPLOAD: 2, ADMIN: 3}


def granted_level(user_id: int, repository_id: int) -> str | None:
    grant = Grant.get_or_none((Grant.user == user_id) & (Grant.repository == repository_id))
    return grant.level if grant is not None else None


def granted_levels(user_id: int) -> dict[int, str]:
    """Every grant a user holds, by repository id: one query for pages that list many repositories."""
    return {grant.repository_id: grant.level for grant in Grant.select().where(Grant.user == user_id)}


def level(principal: Principal, repository_id: int, public: bool,
          grants: dict[int, str] | None = None) -> str | None:
    """The highest action the principal may take on the repository, or None. `grants` (from granted_levels)
    saves the query per repository when deciding for many."""
    rank = 0
    in_scope = principal.scope is None or repository_id in principal.scope
    if principal.user_id is not None and in_scope:  # authenticated
        if principal.admin:
            rank = _RANK[ADMIN]
        else:
            granted = grants.get(repository_id) if grants is not None else granted_level(principal.user_id,
                                                                                       repository_id)
            rank = _RANK[granted]
        if principal.read_only:
            rank = min(rank, _RANK[READ])
    if public:
        rank = max(rank, _RANK[READ])
    return LEVELS[rank - 1] if rank else None


def allowed(principal: Principal, repository_id: int, public: bool, action: str) -> bool:
    if action == READ and public:
        return True  # the common case answers without a query
    return _RANK[level(principal, repository_id, public)] >= _RANK[action]


def readable(principal: Principal, repositories: list[tuple[int, bool]]) -> set[int]:
    """The ids, among (id, public) pairs, of the repositories the principal may read, in at most one query."""
    needs_grants = not principal.admin and any(not public for _, public in repositories)
    grants = granted_levels(principal.user_id) if principal.user_id is not None and needs_grants else {}
    return {id for id, public in repositories if level(principal, id, public, grants) is not None}


def require(principal: Principal, repository, action: str) -> None:
    """Raise Unauthenticated (the challenge pip needs before it asks keyring) or Forbidden unless allowed."""
    if allowed(principal, repository.id, repository.public, action):
        return
    require_user(principal)
    raise Forbidden(refusal(principal, repository.id, repository.name, action))


_DOING = {READ: "read", UPLOAD: "upload to", ADMIN: "administer"}


def refusal(principal: Principal, repository_id: int, repository_name: str, action: str) -> str:
    """Why an authenticated principal may not: the token's limit when the user alone could, else the user's."""
    doing = f"{_DOING[action]} repository {repository_name!r}"
    if principal.token_id is not None:
        if principal.scope is not None and repository_id not in principal.scope:
            return f"this token is limited to other repositories: it may not {doing}"
        owner = dataclasses.replace(principal, token_id=None, read_only=False, scope=None)
        if principal.read_only and _RANK[level(owner, repository_id, False)] >= _RANK[action]:
            return f"this token is read-only: it may not {doing} (its owner {principal.name!r} may)"
    return f"{principal.name!r} may not {doing}"


def level_to_set_status(current: str, wanted: str) -> str:
    """PEP 792: archiving or deprecating is a maintainer's call (upload), but a quarantine, put on or lifted,
    is an administrator's: an upload token that malware came in with must not be able to let it out again."""
    return ADMIN if QUARANTINED in (current, wanted) else UPLOAD


def is_global_admin(principal: Principal) -> bool:
    """A global admin acting with full power: a read-only or narrowed token does not carry it."""
    return principal.admin and not principal.read_only and principal.scope is None


def may_read_metrics(principal: Principal) -> bool:
    """Private metrics (and /health's disk figures) are for global administrators; a read-only admin token,
    what a scraper holds, is enough."""
    return principal.admin and principal.scope is None


def require_metrics_reader(principal: Principal) -> None:
    if may_read_metrics(principal):
        return
    require_user(principal)
    raise Forbidden("metrics are for global administrators (server.public_metrics is false)")


def require_advisories_reader(principal: Principal) -> None:
    """How many advisories and how old: for any signed-in user, whose installs the policies built on them
    decide; nothing in it names a private repository or project."""
    require_user(principal)


def require_user(principal: Principal, message: str = "Authentication required") -> None:
    if not principal.authenticated:
        raise Unauthenticated(message)


def require_token_manager(principal: Principal) -> None:
    """Listing, creating and revoking tokens: a user's password, or a token that is neither read-only nor
    narrowed (a token that may do less must not be able to make or take away one that may do more)."""
    require_user(principal)
    if principal.token_id is not None and (principal.read_only or principal.scope is not None):
        raise Forbidden("a read-only or narrowed token cannot list, create or revoke tokens")


def require_global_admin(principal: Principal) -> None:
    require_user(principal)
    if not is_global_admin(principal):
        raise Forbidden("this needs a global administrator (and a token that is neither read-only nor narrowed)")


def require_token_parent(parent: Token) -> None:
    """A token made with a token inherits what it may do: one that may do less, or nothing, makes none."""
    if parent.revoked is not None or parent.read_only or parent.narrowed:
        raise Forbidden("a read-only, narrowed or revoked token cannot create tokens")


def _same_user(name: str, principal: Principal) -> bool:
    return principal.name is not None and user_key(name) == user_key(principal.name)


def require_tokens_of(principal: Principal, owner: str) -> None:
    """Creating or revoking `owner`'s tokens: their own token manager, or a global admin for anyone's."""
    require_token_manager(principal)
    if not _same_user(owner, principal):
        require_global_admin(principal)


def listed_token_owner(principal: Principal, owner: str | None) -> str | None:
    """Whose tokens a listing shows (None: everyone's): a global admin sees any user's, others their own."""
    require_token_manager(principal)
    if is_global_admin(principal):
        return owner
    if owner is not None and not _same_user(owner, principal):
        raise Forbidden("only administrators see other users' tokens")
    return principal.name


def require_grants_of(principal: Principal, user: str) -> None:
    """Listing a user's grants: their own (a narrowed token excepted: it would name repositories outside its
    list), or a global admin for anyone's; a repository's grants are for its admins (require ADMIN)."""
    require_user(principal)
    if principal.admin and principal.scope is None:  # reading: a read-only admin token is enough
        return
    if not _same_user(user, principal):
        raise Forbidden("only administrators see other users' grants")
    if principal.scope is not None:
        raise Forbidden("a narrowed token cannot list grants on other repositories")


def require_password_change(principal: Principal, user: str, old_password: str | None,
                            authenticator: Authenticator, address: str) -> None:
    """A global admin sets anyone's password; a user changes their own by giving the old one, which is checked
    as a login is (throttled, and audited when wrong), so holding a token is not a way to guess it."""
    require_user(principal)
    if is_global_admin(principal):
        return
    if principal.token_id is not None and (principal.read_only or principal.scope is not None):
        raise Forbidden("a read-only or narrowed token cannot change a password")
    if not _same_user(user, principal):
        raise Forbidden("only administrators change other users' passwords")
    if old_password is None:
        raise Forbidden("give your current password as old_password to change it")
    try:
        authenticator.check(user, old_password, address)
    except Unauthenticated:
        raise Forbidden("the old password is wrong") from None
