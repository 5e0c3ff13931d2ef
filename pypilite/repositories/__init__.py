"""Looking repositories up by name: one database read, then the right kind behind the common interface.

A group is told which members the asking principal may read. Rows are kept per process keyed by their
values: an unchanged row costs one indexed read and no model building, a changed one is a new key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from pypilite import access, groups, models
from pypilite.auth import Principal
from pypilite.breakers import Breaker, BreakerState
from pypilite.database import columns, database, from_row, sql
from pypilite.errors import NotFound, UserError
from pypilite.firewall import Firewall
from pypilite.metrics import Metrics
from pypilite.policies import DEFAULT_POLICY, Policy, from_json
from pypilite.repositories.base import Repository
from pypilite.repositories.group import GroupRepository
from pypilite.repositories.hosted import HostedRepository
from pypilite.repositories.policed import PolicedRepository
from pypilite.repositories.proxy import ProxyRepository
from pypilite.storage import BlobStore
from pypilite.upstream import PAGE_TIMEOUTS, Sessions, Upstream, UpstreamError, pip_index_url

REPOSITORY = models.Repository._meta.table_name
GROUP_MEMBER = models.GroupMember._meta.table_name
_COLUMNS = columns(models.Repository, "r")
# The row, and the advisories' generation its policy's decisions and ETags name (read here, once a request).
_BY_NAME = (f'SELECT {_COLUMNS}, (SELECT value FROM "{models.Meta._meta.table_name}" WHERE key = ?) '
            f'FROM "{REPOSITORY}" r WHERE r.name = ?')
_MEMBERS = (f'SELECT {_COLUMNS} FROM "{GROUP_MEMBER}" m JOIN "{REPOSITORY}" r ON r.id = m.member_id '
            "WHERE m.group_id = ? ORDER BY m.position")
# Rows kept per process; far more than any index has repositories, so only rows replaced by newer ones leave.
_ROW_CACHE_SIZE = 512


class Repositories:
    def __init__(self, blobs: BlobStore, etag_key: bytes, locks: Path, metrics: Metrics,
                 max_upstream_page_bytes: int, upstream_headers: Mapping[str, str] | None = None,
                 breakers: Path | None = None, upstream_backoff: float = 0) -> None:
        self.blobs = blobs
        self.etag_key = etag_key
        self.locks = locks
        self.metrics = metrics
        self.max_upstream_page_bytes = max_upstream_page_bytes
        self.upstream_headers = dict(upstream_headers or {})
        self.breakers = breakers or locks.parent / "breakers"
        self.upstream_backoff = upstream_backoff
        self.sessions = Sessions()  # connection pools for the process's life, shared by the proxies of an upstream
        self._rows: dict[tuple[object, ...], models.Repository] = {}
        self._policies: dict[str, Policy] = {}
        self.firewall = Firewall(blobs, metrics)

    def get(self, name: str, principal: Principal | None) -> Repository:
        """The repository as `principal` may see it; None (for writes, which check their target) sees all."""
        found = database.execute_sql(sql(_BY_NAME), (models.ADVISORIES_GENERATION, name)).fetchone()
        if found is None:
            raise NotFound(f"repository {name!r} not found")
        *values, generation = found
        return self._build(self._row(tuple(values)), principal, generation or models.NO_ADVISORIES)

    def _row(self, values: tuple[object, ...]) -> models.Repository:
        row = self._rows.get(values)
        if row is None:
            if len(self._rows) >= _ROW_CACHE_SIZE:
                self._rows.clear()
            row = from_row(models.Repository, values)
            self._rows[values] = row
        return row

    def _build(self, row: models.Repository, principal: Principal | None, generation: str) -> Repository:
        """The repository behind its policy, which reads the advisories as of `generation`; once advisories were
        imported, a proxy or group without a policy applies the default, which blocks known-malicious versions."""
        repository = self._kind(row, principal, generation)
        if not row.policy:
            if generation != models.NO_ADVISORIES and row.repository_type != "hosted":
                return PolicedRepository(repository, DEFAULT_POLICY, self.firewall, generation)
            return repository
        policy = self._policies.get(row.policy)
        if policy is None:
            if len(self._policies) >= _ROW_CACHE_SIZE:
                self._policies.clear()
            policy = self._policies[row.policy] = from_json(row.policy, row.name, row.repository_type)
        return PolicedRepository(repository, policy, self.firewall, generation)

    def _kind(self, row: models.Repository, principal: Principal | None, generation: str) -> Repository:
        if row.repository_type == "group":
            leaves = groups.flatten(self._members(row) or [], self._members, key=lambda member: member.id)
            members = [self._build(leaf, principal, generation) for leaf in leaves]
            return GroupRepository(row.id, row.name, row.public, members, row.upload_to,
                                   frozenset(row.pass_through.split()), _reader(principal))
        if row.repository_type == "proxy":
            try:
                upstream = Upstream(self.sessions, row.remote_url or pip_index_url(), row.remote_timeout, row.name,
                                    self.max_upstream_page_bytes, self.upstream_headers)
            except UpstreamError as exc:
                raise UserError(502, str(exc)) from None
            breaker = Breaker(self.breakers, self.locks, row.name, upstream.origin, self.upstream_backoff,
                              PAGE_TIMEOUTS * upstream.timeout, self.metrics)
            return ProxyRepository(row, self.blobs, self.etag_key, upstream, self.locks, self.metrics, breaker)
        return HostedRepository(row, self.blobs, self.etag_key)

    def breaker_state(self, name: str) -> BreakerState | None:
        """A proxy's upstream breaker (breakers.py), None while closed or for another kind."""
        try:
            repository = self.get(name, None)
        except UserError:
            return None  # a proxy without an upstream has no breaker either
        proxy = repository.underlying()
        return proxy.breaker.state() if isinstance(proxy, ProxyRepository) else None

    def _members(self, row: models.Repository) -> list[models.Repository] | None:
        """A group's members in order; None for another kind."""
        if row.repository_type != "group":
            return None
        return [self._row(values) for values in database.execute_sql(sql(_MEMBERS), (row.id,)).fetchall()]


def _reader(principal: Principal | None) -> Callable[[Repository], bool] | None:
    if principal is None:
        return None
    return lambda leaf: access.allowed(principal, leaf.id, leaf.public, access.READ)
