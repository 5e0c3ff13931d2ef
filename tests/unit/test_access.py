"""The permission decision as a table: every level × every action × public/private, and what tokens do."""

from __future__ import annotations

import pytest

from pypilite import access
from pypilite.audit import Actor
from pypilite.auth import ANONYMOUS, Principal
from pypilite.database import database
from pypilite.errors import Forbidden, Unauthenticated
from pypilite.grants import set_grant
from pypilite.models import Repository, User
from pypilite.users import create_user
from tests.conftest import Index

ACTIONS = (access.READ, access.UPLOAD, access.ADMIN)
ACTOR = Actor("test")

# level held -> public? -> the actions allowed
EXPECTED = {
    "anonymous": {True: {"read"}, False: set()},
    "no grant": {True: {"read"}, False: set()},
    "read": {True: {"read"}, False: {"read"}},
    "upload": {True: {"read", "upload"}, False: {"read", "upload"}},
    "admin": {True: {"read", "upload", "admin"}, False: {"read", "upload", "admin"}},
    "global admin": {True: {"read", "upload", "admin"}, False: {"read", "upload", "admin"}},
}


@pytest.fixture(scope="module")
def setup(module_index: Index):
    """Users holding each level on a public and a private repository."""
    module_index.client  # binds the database
    with database.connection_context():
        from pypilite.config import RepositoryConfig
        from pypilite.repository_admin import create_repository
        create_repository(RepositoryConfig(name="open", repository_type="hosted"), ACTOR)
        create_repository(RepositoryConfig(name="closed", repository_type="hosted", public=False), ACTOR)
        principals = {"anonymous": ANONYMOUS}
        for holder in ("no grant", "read", "upload", "admin"):
            name = "holds-" + holder.replace(" ", "-")
            user = create_user(name, "password-123", ACTOR)
            if holder != "no grant":
                for repo in ("open", "closed"):
                    set_grant(name, repo, holder, ACTOR)
            principals[holder] = Principal(name=name, user_id=user.id)
        admin = User.get(User.name == "admin")
        principals["global admin"] = Principal(name="admin", user_id=admin.id, admin=True)
        repos = {public: Repository.get(Repository.name == ("open" if public else "closed"))
                 for public in (True, False)}
    return principals, repos


@pytest.mark.parametrize("holder", sorted(EXPECTED))
@pytest.mark.parametrize("public", [True, False])
@pytest.mark.parametrize("action", ACTIONS)
def test_decision_table(setup, module_index, holder: str, public: bool, action: str) -> None:
    principals, repos = setup
    module_index.client
    with database.connection_context():
        repo = repos[public]
        assert access.allowed(principals[holder], repo.id, repo.public, action) == (action in EXPECTED[holder][public])


@pytest.mark.parametrize("holder", ["upload", "admin", "global admin"])
@pytest.mark.parametrize("public", [True, False])
def test_read_only_token_caps_at_read(setup, module_index, holder: str, public: bool) -> None:
    principals, repos = setup
    module_index.client
    token = Principal(**{**principals[holder].__dict__, "token_id": 1, "read_only": True})
    with database.connection_context():
        repo = repos[public]
        assert [access.allowed(token, repo.id, repo.public, a) for a in ACTIONS] == [True, False, False]


@pytest.mark.parametrize("holder", ["upload", "global admin"])
def test_narrowed_token_has_nothing_outside_its_scope_but_public_read(setup, module_index, holder: str) -> None:
    principals, repos = setup
    module_index.client
    with database.connection_context():
        elsewhere = Principal(**{**principals[holder].__dict__, "token_id": 1, "scope": frozenset({-1})})
        inside = Principal(**{**principals[holder].__dict__, "token_id": 1, "scope": frozenset({repos[False].id})})
        assert [access.allowed(elsewhere, repos[True].id, True, a) for a in ACTIONS] == [True, False, False]
        assert [access.allowed(elsewhere, repos[False].id, False, a) for a in ACTIONS] == [False, False, False]
        assert access.allowed(inside, repos[False].id, False, access.UPLOAD)


def test_require_says_401_to_the_anonymous_and_403_to_the_known(setup, module_index) -> None:
    principals, repos = setup
    module_index.client
    with database.connection_context():
        closed = module_index.app.extensions["pypilite"].repositories.get("closed", None)
        with pytest.raises(Unauthenticated) as refused:
            access.require(ANONYMOUS, closed, access.READ)
        assert refused.value.status == 401
        with pytest.raises(Forbidden):
            access.require(principals["read"], closed, access.UPLOAD)
        access.require(principals["read"], closed, access.READ)
