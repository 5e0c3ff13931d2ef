"""Vulnerability and malware advisories in OSV format, imported offline and matched against PyPI versions.

A record becomes one `advisory` row and one `advisory_affected` row per PyPI package it names, with its ranges
already reduced to intervals, so a project page needs one query (`for_project`) whatever its number of versions.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import peewee as pw
from cvss import CVSS3, CVSS4
from cvss.exceptions import CVSSError
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from pypilite.database import write_transaction
from pypilite.models import ADVISORIES_GENERATION, AdvisoryAffected, AdvisoryImport, AdvisoryRecord, Meta, utcnow

SEVERITIES = ("critical", "high", "moderate", "low")
ECOSYSTEM = "PyPI"
RANGE_TYPES = ("ECOSYSTEM", "SEMVER")  # GIT ranges name commits, which no version can be matched against
BATCH = 500  # records per transaction
MAX_ID = 200
MAX_SUMMARY = 1000
MAX_ALIASES = 100
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*\Z")
# GitHub's words in database_specific.severity; MEDIUM is what some other databases say.
_WORDS = {"CRITICAL": "critical", "HIGH": "high", "MODERATE": "moderate", "MEDIUM": "moderate", "LOW": "low"}
_CVSS = {"CVSS_V3": CVSS3, "CVSS_V4": CVSS4}


@dataclass(frozen=True)
class Advisory:
    id: str
    aliases: tuple[str, ...]
    summary: str
    severity: str | None
    malicious: bool


class MalformedRecord(ValueError):
    """An OSV record that cannot be read; the message says why in a few words."""


# An interval of affected versions: from `introduced` (None: the first) up to `fixed` (excluded) or
# `last_affected` (included); neither: every later version.
Interval = tuple[Version | None, Version | None, Version | None]


@dataclass(frozen=True)
class _Affected:
    advisory: Advisory
    intervals: tuple[Interval, ...]
    versions: frozenset[Version]

    def matches(self, version: Version) -> bool:
        return version in self.versions or any(_within(version, interval) for interval in self.intervals)


def _within(version: Version, interval: Interval) -> bool:
    introduced, fixed, last_affected = interval
    return ((introduced is None or version >= introduced) and (fixed is None or version < fixed)
            and (last_affected is None or version <= last_affected))


class ProjectAdvisories:
    """Every advisory about one project, read once: ask it about as many versions as a page lists."""

    def __init__(self, entries: Iterable[_Affected]) -> None:
        self._entries = tuple(entries)

    def __bool__(self) -> bool:
        return bool(self._entries)

    def affecting(self, version: str) -> list[Advisory]:
        """The advisories that affect `version`, each once, most severe first; none for an invalid version."""
        try:
            parsed = Version(version)
        except InvalidVersion:
            return []
        found = {entry.advisory.id: entry.advisory for entry in self._entries if entry.matches(parsed)}
        return sorted(found.values(), key=_rank)


def _rank(advisory: Advisory) -> tuple[bool, int, str]:
    order = SEVERITIES.index(advisory.severity) if advisory.severity else len(SEVERITIES)
    return (not advisory.malicious, order, advisory.id)


def for_project(project: str) -> ProjectAdvisories:
    """The advisories about `project` (any spelling of its name), in one query."""
    rows = (AdvisoryAffected.select(AdvisoryAffected.ranges, AdvisoryAffected.versions, AdvisoryRecord)
            .join(AdvisoryRecord).where(AdvisoryAffected.project == canonicalize_name(project)))
    return ProjectAdvisories(_Affected(
        advisory=Advisory(id=row.advisory.id, aliases=tuple(row.advisory.aliases.split()), summary=row.advisory.summary,
                          severity=row.advisory.severity, malicious=row.advisory.malicious),
        intervals=tuple(_interval(*bounds) for bounds in json.loads(row.ranges)),
        versions=frozenset(Version(text) for text in json.loads(row.versions))) for row in rows)


def _interval(introduced: str | None, fixed: str | None, last_affected: str | None) -> Interval:
    return (_version(introduced), _version(fixed), _version(last_affected))


def _version(text: str | None) -> Version | None:
    return None if text is None else Version(text)


def affecting(project: str, version: str) -> list[Advisory]:
    """The advisories that affect `version` of `project`."""
    return for_project(project).affecting(version)


def generation() -> int:
    """A number that changes whenever the advisories do: what caches of decisions based on them are keyed on."""
    row = Meta.get_or_none(Meta.key == ADVISORIES_GENERATION)
    return int(row.value) if row is not None else 0


# Reading records


@dataclass(frozen=True)
class ParsedRecord:
    """A record as it will be stored: `affected` is empty for one to remove (withdrawn, or no PyPI package)."""

    advisory: Advisory
    modified: datetime | None
    affected: tuple[tuple[str, list[list[str | None]], list[str]], ...]  # (project, intervals, versions)
    invalid_versions: int
    withdrawn: bool


def parse_record(data: Any) -> ParsedRecord:
    """An OSV record (parsed JSON) reduced to what matching needs; MalformedRecord when it is not one."""
    if not isinstance(data, dict):
        raise MalformedRecord("not a JSON object")
    ident = data.get("id")
    if not isinstance(ident, str) or len(ident) > MAX_ID or not _ID.match(ident):
        raise MalformedRecord("no valid id")
    aliases = _strings(data.get("aliases", []), "aliases")[:MAX_ALIASES]
    if not all(len(alias) <= MAX_ID and _ID.match(alias) for alias in aliases):
        raise MalformedRecord("an invalid alias")
    summary = data.get("summary") or data.get("details") or ""
    if not isinstance(summary, str):
        raise MalformedRecord("summary is not a string")
    affected_list = data.get("affected", [])
    if not isinstance(affected_list, list) or not all(isinstance(entry, dict) for entry in affected_list):
        raise MalformedRecord("affected is not a list of objects")
    advisory = Advisory(id=ident, aliases=tuple(aliases), summary=" ".join(summary.split())[:MAX_SUMMARY],
                        severity=_severity(data, affected_list),
                        malicious=any(name.startswith("MAL-") for name in (ident, *aliases)))
    invalid = 0
    affected = []
    for entry in affected_list:
        package = entry.get("package")
        if not isinstance(package, dict) or package.get("ecosystem") != ECOSYSTEM:
            continue
        name = package.get("name")
        if not isinstance(name, str) or not name.strip():
            raise MalformedRecord("a PyPI package without a name")
        intervals, versions, bad = _entry_versions(entry)
        invalid += bad
        if intervals or versions:
            affected.append((canonicalize_name(name), intervals, versions))
    return ParsedRecord(advisory=advisory, modified=_time(data.get("modified")), affected=tuple(affected),
                        invalid_versions=invalid, withdrawn=bool(data.get("withdrawn")))


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise MalformedRecord(f"{what} is not a list of strings")
    return value


def _entry_versions(entry: dict[str, Any]) -> tuple[list[list[str | None]], list[str], int]:
    """An affected entry's intervals and explicit versions, normalized; and how many versions were invalid
    (a range with an invalid version is left out whole: neither end can be guessed)."""
    ranges = entry.get("ranges", [])
    if not isinstance(ranges, list) or not all(isinstance(r, dict) for r in ranges):
        raise MalformedRecord("ranges is not a list of objects")
    invalid = 0
    intervals: list[list[str | None]] = []
    for described in ranges:
        if described.get("type") not in RANGE_TYPES:
            continue
        events = described.get("events")
        if not isinstance(events, list) or not all(isinstance(e, dict) and len(e) == 1 for e in events):
            raise MalformedRecord("a range's events are not single-key objects")
        try:
            intervals.extend(_intervals(events))
        except InvalidVersion:
            invalid += 1
    versions = set()
    for text in _strings(entry.get("versions", []), "versions"):
        try:
            versions.add(str(Version(text)))
        except InvalidVersion:
            invalid += 1
    return intervals, sorted(versions), invalid


_EVENT_ORDER = {"introduced": 0, "fixed": 1, "last_affected": 1, "limit": 2}


def _intervals(events: list[dict[str, Any]]) -> Iterator[list[str | None]]:
    """OSV's evaluation: events sorted by version, each `introduced` opening an interval that the next
    `fixed` or `last_affected` closes. `limit` bounds git ranges only and is not used for PyPI."""
    parsed = []
    for event in events:
        ((kind, text),) = event.items()
        if kind not in _EVENT_ORDER or not isinstance(text, str):
            raise MalformedRecord(f"an unknown range event {kind!r}")
        if kind == "limit":
            continue
        # "0" is OSV's word for "before the first version"; Version("0") would miss 0.dev1 and the like.
        parsed.append((kind, None if kind == "introduced" and text == "0" else Version(text)))
    parsed.sort(key=lambda event: (event[1] is not None, event[1] or Version("0"), _EVENT_ORDER[event[0]]))
    start: Version | None = None
    opened = False
    for kind, version in parsed:
        if kind == "introduced":
            if not opened:
                start, opened = version, True
        elif opened:
            assert version is not None  # only introduced may stand for the first version
            yield [_text(start), str(version) if kind == "fixed" else None,
                   str(version) if kind == "last_affected" else None]
            opened = False
    if opened:
        yield [_text(start), None, None]


def _text(version: Version | None) -> str | None:
    return None if version is None else str(version)


def _severity(data: dict[str, Any], affected: list[dict[str, Any]]) -> str | None:
    """GitHub's own word where the record has one, else the highest CVSS v3 or v4 base score's band."""
    specific = data.get("database_specific")
    word = specific.get("severity") if isinstance(specific, dict) else None
    if isinstance(word, str) and word.upper() in _WORDS:
        return _WORDS[word.upper()]
    scores = [score for severity in (data.get("severity"), *(entry.get("severity") for entry in affected))
              for score in _cvss_scores(severity)]
    return _band(max(scores)) if scores else None


def _cvss_scores(severity: Any) -> Iterator[float]:
    if not isinstance(severity, list):
        return
    for item in severity:
        if not isinstance(item, dict) or item.get("type") not in _CVSS or not isinstance(item.get("score"), str):
            continue
        try:
            yield float(_CVSS[item["type"]](item["score"]).base_score)
        except (CVSSError, ValueError, KeyError, IndexError):
            continue


def _band(score: float) -> str | None:
    """CVSS's qualitative bands; "medium" is called moderate, as GitHub does."""
    if score >= 9.0:
        return "critical"
    if score >= 7.0:
        return "high"
    if score >= 4.0:
        return "moderate"
    return "low" if score > 0 else None


def _time(value: Any) -> datetime | None:
    """An RFC 3339 time as a naive UTC datetime (as every stored time); None when there is none."""
    if not isinstance(value, str):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None) if moment.tzinfo is not None else moment


# Storing records


@dataclass
class ImportReport:
    stored: int = 0
    removed: int = 0  # withdrawn, or no longer about any PyPI version
    ignored: int = 0  # about no PyPI version, and not stored before
    invalid_versions: int = 0
    malformed: list[tuple[str, str]] = field(default_factory=list)  # (member name, why)


def import_records(records: Iterable[tuple[str, Any]], source: str, report: ImportReport,
                   advance: Callable[[], None] = lambda: None) -> ImportReport:
    """Store parsed JSON documents (name, document), replacing what an earlier import stored under the same
    ids, one transaction per batch; the import is recorded at the end. A MalformedRecord (or an exception
    given in place of a document) is noted in the report and the rest carry on."""
    batch: dict[str, ParsedRecord] = {}
    for name, document in records:
        try:
            if isinstance(document, Exception):
                raise MalformedRecord(str(document))
            parsed = parse_record(document)
        except MalformedRecord as exc:
            report.malformed.append((name, str(exc)))
        else:
            report.invalid_versions += parsed.invalid_versions
            batch[parsed.advisory.id] = parsed
            if len(batch) >= BATCH:
                _store(batch.values(), report)
                batch = {}
        advance()
    _store(batch.values(), report)
    with write_transaction():
        AdvisoryImport.create(source=source, stored=report.stored, removed=report.removed)
        _bump()
    return report


def _store(records: Iterable[ParsedRecord], report: ImportReport) -> None:
    records = list(records)
    if not records:
        return
    ids = [record.advisory.id for record in records]
    kept = [record for record in records if record.affected and not record.withdrawn]
    with write_transaction():
        existing = {ident for (ident,) in AdvisoryRecord.select(AdvisoryRecord.id)
                    .where(AdvisoryRecord.id.in_(ids)).tuples()}
        AdvisoryAffected.delete().where(AdvisoryAffected.advisory.in_(ids)).execute()
        AdvisoryRecord.delete().where(AdvisoryRecord.id.in_(ids)).execute()
        if kept:
            AdvisoryRecord.insert_many([
                {"id": r.advisory.id, "aliases": "\n".join(r.advisory.aliases), "summary": r.advisory.summary,
                 "severity": r.advisory.severity, "malicious": r.advisory.malicious, "modified": r.modified}
                for r in kept]).execute()
        rows = [{"advisory": r.advisory.id, "project": project, "ranges": json.dumps(intervals),
                 "versions": json.dumps(versions)} for r in kept for project, intervals, versions in r.affected]
        for start in range(0, len(rows), BATCH):
            AdvisoryAffected.insert_many(rows[start:start + BATCH]).execute()
        _bump()
    dropped = set(ids) - {record.advisory.id for record in kept}
    report.stored += len(kept)
    report.removed += len(dropped & existing)
    report.ignored += len(dropped - existing)


def _bump() -> None:
    Meta.update(value=pw.Cast(pw.Cast(Meta.value, "INTEGER") + 1, "TEXT")).where(
        Meta.key == ADVISORIES_GENERATION).execute()


# Status


@dataclass(frozen=True)
class Status:
    advisories: int
    malicious: int
    imported: datetime | None  # the last import's end, naive UTC
    source: str

    def age_seconds(self, now: datetime | None = None) -> int | None:
        if self.imported is None:
            return None
        return max(0, int(((now or utcnow()) - self.imported).total_seconds()))


def status() -> Status:
    last = AdvisoryImport.select().order_by(AdvisoryImport.id.desc()).first()
    return Status(advisories=AdvisoryRecord.select().count(),
                  malicious=AdvisoryRecord.select().where(AdvisoryRecord.malicious).count(),
                  imported=last.time if last else None, source=last.source if last else "")
