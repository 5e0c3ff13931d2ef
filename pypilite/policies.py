"""Package firewall policies: what a repository's policy says, parsed once, and the decision it makes about
one distribution file. Pure: no database, no HTTP; repositories/policed.py applies it to pages and files.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypilite import advisories, licenses
from pypilite.durations import parse_duration

MODES = ("enforce", "report")
SEVERITIES = advisories.SEVERITIES
BLOCK_VULNERABLE = (*SEVERITIES, "none")
UNKNOWN_RULES = ("block", "allow")
# The rules a hosted repository applies to uploads; the others concern an upstream's files.
HOSTED_KEYS = frozenset({"mode", "deny", "allow", "licenses_allow", "licenses_deny", "licenses_unknown"})
MAX_ENTRIES = 1000  # per list: a policy is read on every page build
MAX_ENTRY = 300  # characters in one entry
_NAME_PATTERN = re.compile(r"\s*([A-Za-z0-9*?._-]+)\s*(.*?)\s*\Z")


class PolicyError(ValueError):
    """A policy that cannot be used, worded in one line naming the key."""


@dataclass(frozen=True)
class Policy:
    mode: str = "enforce"
    min_release_age: str = ""  # "90m", "12h", "3d"; empty: off
    # A file whose upstream says no upload time, under min_release_age: nothing vouches for its age.
    undated: str = "block"
    deny: tuple[str, ...] = ()
    allow: tuple[str, ...] = ()
    licenses_allow: tuple[str, ...] = ()
    licenses_deny: tuple[str, ...] = ()
    # A file whose core metadata pypilite could not read, under licence rules.
    licenses_unknown: str = "block"
    block_vulnerable: str = "none"
    block_malicious: bool = True

    @functools.cached_property
    def key(self) -> str:
        """Names this policy's content: part of every page ETag it shapes."""
        return hashlib.blake2b(json.dumps(as_dict(self), sort_keys=True).encode(), digest_size=8).hexdigest()

    @functools.cached_property
    def age(self) -> timedelta | None:
        if not self.min_release_age:
            return None
        return timedelta(seconds=parse_duration(self.min_release_age))

    @property
    def licensed(self) -> bool:
        return bool(self.licenses_allow or self.licenses_deny)

    @property
    def uses_advisories(self) -> bool:
        return self.block_malicious or self.block_vulnerable != "none"


# What a proxy or group without a policy applies once advisories are imported: known-malicious versions blocked.
DEFAULT_POLICY = Policy()


def as_dict(policy: Policy) -> dict[str, Any]:
    return {key: list(value) if isinstance(value, tuple) else value
            for key, value in dataclasses.asdict(policy).items()}


def parse_policy(entry: Any, where: str, kind: str) -> Policy:
    """A policy as the config, the CLI and the API give it; every mistake a PolicyError naming the key."""
    if not isinstance(entry, Mapping):
        raise PolicyError(f"{where}: policy must be a table of rules")
    fields = {f.name for f in dataclasses.fields(Policy)}
    allowed = HOSTED_KEYS if kind == "hosted" else fields
    defaults = as_dict(Policy())
    values: dict[str, Any] = {}
    for key, value in entry.items():
        if key not in fields:
            raise PolicyError(f"{where}: unknown policy key {key!r}")
        values[key] = _value(f"{where}: policy.{key}", key, value)
        if key not in allowed and value != defaults[key]:  # as shown back, every key is there
            raise PolicyError(f"{where}: policy key {key!r} does not apply to a {kind} repository")
    return Policy(**values)


def to_json(policy: Policy | None) -> str:
    """The policy as a repository row keeps it; empty for none."""
    return json.dumps(as_dict(policy), sort_keys=True) if policy is not None else ""


def from_json(text: str, where: str, kind: str) -> Policy:
    return parse_policy(json.loads(text), where, kind)


def _value(where: str, key: str, value: Any) -> Any:
    choices = {"mode": MODES, "undated": UNKNOWN_RULES, "licenses_unknown": UNKNOWN_RULES,
               "block_vulnerable": BLOCK_VULNERABLE}
    if key in choices:
        if value not in choices[key]:
            raise PolicyError(f"{where} must be one of {', '.join(choices[key])}, not {value!r}")
        return value
    if key == "block_malicious":
        if not isinstance(value, bool):
            raise PolicyError(f"{where} must be true or false")
        return value
    if key == "min_release_age":
        if not isinstance(value, str):
            raise PolicyError(f"{where} must be a duration such as \"90m\", \"12h\" or \"3d\", not {value!r}")
        if value:
            try:
                parse_duration(value)
            except ValueError as exc:
                raise PolicyError(f"{where} must be {exc}") from None
        return value
    if not isinstance(value, list | tuple) or not all(isinstance(item, str) for item in value):
        raise PolicyError(f"{where} must be a list of strings")
    if len(value) > MAX_ENTRIES:
        raise PolicyError(f"{where} has more than {MAX_ENTRIES} entries")
    if any(len(item) > MAX_ENTRY for item in value):
        raise PolicyError(f"{where} has an entry longer than {MAX_ENTRY} characters")
    if key in ("deny", "allow"):
        for item in value:
            parse_requirement(item, where)
        return tuple(value)
    try:
        return tuple(licenses.canonical(item) for item in value)
    except licenses.InvalidLicense as exc:
        raise PolicyError(f"{where}: {exc}") from None


@dataclass(frozen=True)
class Match:
    """A deny or allow entry: a name pattern (fnmatch on the normalized name) and the versions it covers."""

    text: str
    pattern: str
    specifier: SpecifierSet

    def covers(self, project: str, version: str) -> bool:
        if not fnmatch.fnmatchcase(project, self.pattern):
            return False
        if not self.specifier:
            return True
        try:
            return self.specifier.contains(Version(version), prereleases=True)
        except InvalidVersion:
            return False


def parse_requirement(text: str, where: str = "policy") -> Match:
    """`evil-*`, `foo==1.2.3`, `bar<2`: a name (globs allowed) and a specifier set, read by packaging."""
    found = _NAME_PATTERN.match(text)
    if found is None or not found.group(1):
        raise PolicyError(f"{where}: {text!r} is not a requirement such as \"name\", \"name==1.0\" or \"evil-*\"")
    name, rest = found.groups()
    try:
        if not set(name) & set("*?"):
            Requirement(f"{name}{rest}")  # the full grammar, for the names that can be checked so
        specifier = SpecifierSet(rest)
    except (InvalidRequirement, InvalidSpecifier) as exc:
        raise PolicyError(f"{where}: {text!r}: {exc}") from None
    return Match(text, canonicalize_name(name), specifier)  # a glob's * and ? pass through unchanged


class Advisory(Protocol):
    """What the firewall reads of an advisory (pypilite.advisories gives these)."""

    @property
    def id(self) -> str: ...
    @property
    def severity(self) -> str | None: ...
    @property
    def malicious(self) -> bool: ...


class Advisories(Protocol):
    """The advisories about one project (pypilite.advisories.ProjectAdvisories)."""

    def affecting(self, version: str) -> Sequence[Advisory]: ...


@dataclass(frozen=True)
class Decision:
    """Why a file is not offered (or, in report mode, would not be): the rule, a one-line reason, the advisories
    it cites."""

    rule: str
    reason: str
    advisories: tuple[str, ...] = ()
    enforced: bool = True  # False: report mode, the file is still offered


@dataclass(frozen=True)
class Facts:
    """What a decision reads of one file."""

    project: str
    version: str
    filename: str
    upload_time: datetime | None
    # Whether an upstream published it (a proxy's file): release age and advisories concern those alone.
    upstream: bool
    # The file's licence expression (empty: its core metadata declares none); None: that metadata is not known.
    license: Callable[[], str | None]


class Rules:
    """A policy compiled once per process: its entries parsed, ready to decide many files."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.deny = [parse_requirement(text) for text in policy.deny]
        self.allow = [parse_requirement(text) for text in policy.allow]
        self.age = policy.age

    def allowed_explicitly(self, project: str, version: str) -> Match | None:
        return next((m for m in self.allow if m.covers(project, version)), None)

    def decide(self, facts: Facts, now: datetime, advisories: Advisories | None, final: bool = True
               ) -> Decision | None:
        """The first rule that blocks the file, or None. The allow list excepts it from all of them. Not
        `final` (a page): a licence not known yet is learned when the file is asked for, so it does not block."""
        if self.allowed_explicitly(facts.project, facts.version):
            return None
        what = f"{facts.project} {facts.version}"
        denied = next((m for m in self.deny if m.covers(facts.project, facts.version)), None)
        if denied is not None:
            return Decision("deny", f"{what} is on the deny list ({denied.text!r})")
        if self.age is not None and facts.upstream:
            if facts.upload_time is None:
                if self.policy.undated == "block":
                    return Decision("release_age", f"{facts.filename} has no upload time, so its age is unknown "
                                                   f"(min_release_age = {self.policy.min_release_age!r})")
            elif facts.upload_time > now - self.age:
                return Decision("release_age", f"{facts.filename} was uploaded at "
                                               f"{facts.upload_time:%Y-%m-%dT%H:%M:%SZ}, less than "
                                               f"{self.policy.min_release_age} ago (min_release_age)")
        if self.policy.uses_advisories and advisories is not None and facts.upstream:
            decision = self._advisories(facts, advisories.affecting(facts.version))
            if decision is not None:
                return decision
        if self.policy.licensed:
            return self._license(facts, final)
        return None

    def _advisories(self, facts: Facts, found: Sequence[Advisory]) -> Decision | None:
        what = f"{facts.project} {facts.version}"
        malicious = tuple(a.id for a in found if a.malicious)
        if malicious and self.policy.block_malicious:
            return Decision("malicious", f"{what} is known to be malicious ({', '.join(malicious)})", malicious)
        if self.policy.block_vulnerable == "none":
            return None
        floor = SEVERITIES.index(self.policy.block_vulnerable)
        # An advisory without a severity counts as the most severe: nobody has said it is harmless.
        vulnerable = tuple(a.id for a in found if not a.malicious
                           and (a.severity not in SEVERITIES or SEVERITIES.index(a.severity) <= floor))
        if vulnerable:
            return Decision("vulnerable", f"{what} has known vulnerabilities of severity "
                                          f"{self.policy.block_vulnerable} or above ({', '.join(vulnerable)})",
                            vulnerable)
        return None

    def _license(self, facts: Facts, final: bool) -> Decision | None:
        expression = facts.license()
        if expression is None and not final:
            return None
        if not expression:
            if self.policy.licenses_unknown == "allow":
                return None
            why = "its core metadata declares no SPDX licence" if expression == "" else "its core metadata is unknown"
            return Decision("license", f"{facts.filename}: {why} (licenses_unknown = \"block\")")
        if not licenses.acceptable(expression, self.policy.licenses_allow, self.policy.licenses_deny):
            return Decision("license", f"{facts.project} {facts.version} is licensed {expression!r}, which the "
                                       "policy's licence rules do not accept")
        return None
