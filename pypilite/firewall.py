"""What the package firewall keeps per process: compiled policies, the licences read from core metadata, the
advisories, and the record of its decisions (metrics on every one, one audit event per new one)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Generic, TypeVar

from pypilite import advisories, audit, licenses, serials
from pypilite.audit import Actor
from pypilite.database import database, write_transaction
from pypilite.metrics import Metrics
from pypilite.models import PolicyBlock, Project
from pypilite.policies import Advisories, Decision, Facts, Policy, Rules
from pypilite.storage import BlobStore

K = TypeVar("K")
V = TypeVar("V")
FIREWALL_ACTOR = Actor("firewall", "local")
# Core metadata larger than this is not read for a licence (metadata is kilobytes; this bounds a hostile one).
MAX_METADATA_BYTES = 4 * 2**20
# Entries kept per process before starting afresh: far more than the files of the projects in use.
_KEPT = 100_000


class Kept(Generic[K, V]):
    """A dict of what a process worked out, started afresh when it holds too much."""

    def __init__(self) -> None:
        self._entries: dict[K, V] = {}

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        if len(self._entries) >= _KEPT:
            self._entries.clear()
        self._entries[key] = value


class Firewall:
    def __init__(self, blobs: BlobStore, metrics: Metrics) -> None:
        self.blobs = blobs
        self.metrics = metrics
        self._rules: Kept[Policy, Rules] = Kept()
        self._licenses: Kept[str, str] = Kept()
        self._recorded: set[tuple[int, str, str, str]] = set()
        # A page's oldest file still too young, under its tables' ETag (repositories/policed.py).
        self.young: Kept[tuple[object, ...], tuple[datetime | None]] = Kept()

    def rules(self, policy: Policy) -> Rules:
        rules = self._rules.get(policy)
        if rules is None:
            rules = Rules(policy)
            self._rules.put(policy, rules)
        return rules

    def advisories(self, policy: Policy, project: str) -> Advisories | None:
        """The advisories about a project, read once for all the files of a page; None where not used."""
        return advisories.for_project(project) if policy.uses_advisories else None

    def license(self, *sha256s: str | None) -> str | None:
        """The licence expression of the first of these core metadata blobs that is in the store (empty: it
        declares none); None when none of them is."""
        for sha256 in sha256s:
            if sha256 is None:
                continue
            found = self._licenses.get(sha256)
            if found is None:
                try:
                    with self.blobs.open(sha256) as fh:
                        raw = fh.read(MAX_METADATA_BYTES + 1)
                except FileNotFoundError:
                    continue  # not fetched yet: nothing known, and nothing remembered
                found = self.license_of(raw)
                self._licenses.put(sha256, found)
            return found
        return None

    def license_of(self, raw: bytes) -> str:
        return licenses.of_metadata(raw) if len(raw) <= MAX_METADATA_BYTES else ""

    def decide(self, policy: Policy, facts: Facts, now: datetime, known: Advisories | None,
               final: bool = True) -> Decision | None:
        decision = self.rules(policy).decide(facts, now, known, final)
        if decision is not None and policy.mode == "report":
            return dataclasses.replace(decision, enforced=False)
        return decision

    def withdrawn(self, repository_ids: list[int], project: str) -> None:
        """A licence learned for a download blocks a file its pages still offer: they change now."""
        with write_transaction():
            serials.projects_changed(Project.select(Project.id).where(
                Project.repository.in_(repository_ids) & (Project.name == project)))

    def record(self, repository_id: int, repository: str, policy: Policy, where: str,
               blocked: list[tuple[str, Decision]]) -> None:
        """Count each block; audit each one this repository's policy had not made before (per file, rule and
        policy), however many times the file is asked for."""
        if not blocked:
            return
        for _filename, decision in blocked:
            self.metrics.policy_block(decision.rule, policy.mode, where)
        key = policy.key
        new = [(filename, decision) for filename, decision in blocked
               if (repository_id, filename, decision.rule, key) not in self._recorded]
        if not new:
            return
        with write_transaction():
            for filename, decision in new:
                insert = PolicyBlock.insert(repository=repository_id, filename=filename, rule=decision.rule,
                                            policy_key=key).on_conflict_ignore()
                if database.execute_sql(*insert.sql()).rowcount == 1:  # not decided before, by any process
                    audit.record(FIREWALL_ACTOR, "policy.block" if policy.mode == "enforce" else "policy.report",
                                 "repository", repository, filename=filename, rule=decision.rule,
                                 reason=decision.reason, advisories=list(decision.advisories))
        if len(self._recorded) >= _KEPT:
            self._recorded.clear()
        self._recorded.update((repository_id, filename, decision.rule, key) for filename, decision in new)
