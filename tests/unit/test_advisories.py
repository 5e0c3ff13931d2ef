"""Advisories: OSV records written here, imported, and matched against versions (pypilite/advisories.py)."""

from __future__ import annotations

from typing import Any

import pytest

from pypilite import advisories
from pypilite.advisories import Advisory, ImportReport, import_records
from tests.conftest import Index

CRITICAL_VECTOR = "CVSS:3.1/AV:N/AC:L/PR:N/UI:N/S:U/C:H/I:H/A:H"  # 9.8
LOW_VECTOR = "CVSS:3.1/AV:N/AC:H/PR:H/UI:R/S:U/C:L/I:N/A:N"  # 2.2


def osv(ident: str, package: str = "Demo_Pkg", ecosystem: str = "PyPI", ranges: list[Any] | None = None,
        versions: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    affected: dict[str, Any] = {"package": {"ecosystem": ecosystem, "name": package}}
    if ranges is not None:
        affected["ranges"] = ranges
    if versions is not None:
        affected["versions"] = versions
    return {"schema_version": "1.6.0", "id": ident, "modified": "2026-11-01T10:00:00Z", "summary": f"about {ident}",
            "affected": [affected], **extra}


def ecosystem(*events: dict[str, str], kind: str = "ECOSYSTEM") -> dict[str, Any]:
    return {"type": kind, "events": list(events)}


def load(index: Index, *records: Any, source: str = "test.zip") -> ImportReport:
    return index.run(import_records, [(f"r{i}.json", r) for i, r in enumerate(records)], source, ImportReport())


def ids(index: Index, project: str, version: str) -> list[str]:
    return [a.id for a in index.run(advisories.affecting, project, version)]


def test_ecosystem_range_with_fixed(index: Index) -> None:
    load(index, osv("GHSA-aaaa-bbbb-cccc", ranges=[ecosystem({"introduced": "1.0"}, {"fixed": "1.4.2"})]))
    assert ids(index, "demo-pkg", "0.9") == []
    assert ids(index, "demo-pkg", "1.0") == ["GHSA-aaaa-bbbb-cccc"]
    assert ids(index, "DEMO.pkg", "1.4.1") == ["GHSA-aaaa-bbbb-cccc"]  # any spelling of the name
    assert ids(index, "demo-pkg", "1.4.2rc1") == ["GHSA-aaaa-bbbb-cccc"]
    assert ids(index, "demo-pkg", "1.4.2") == []
    assert ids(index, "demo-pkg", "2.0") == []


def test_introduced_zero_covers_pre_releases_and_open_end(index: Index) -> None:
    load(index, osv("PYSEC-2026-1", ranges=[ecosystem({"introduced": "0"})]))
    for version in ("0.dev1", "0.0.1", "1.0", "99.0.post3"):
        assert ids(index, "demo-pkg", version) == ["PYSEC-2026-1"]


def test_last_affected_is_included(index: Index) -> None:
    load(index, osv("GHSA-last-aff-ectd", ranges=[ecosystem({"introduced": "0"}, {"last_affected": "2.0"})]))
    assert ids(index, "demo-pkg", "2.0") == ["GHSA-last-aff-ectd"]
    assert ids(index, "demo-pkg", "2.0.post1") == []


def test_several_intervals_in_one_range_unsorted_events(index: Index) -> None:
    events = [{"fixed": "2.5"}, {"introduced": "3.0"}, {"introduced": "1.0"}, {"fixed": "3.1"}]
    load(index, osv("GHSA-many-inte-rval", ranges=[ecosystem(*events)]))
    affected = [v for v in ("0.5", "1.0", "2.4", "2.5", "2.9", "3.0", "3.0.1", "3.1", "4") if
                ids(index, "demo-pkg", v)]
    assert affected == ["1.0", "2.4", "3.0", "3.0.1"]


def test_semver_range_is_evaluated_with_pep440_versions(index: Index) -> None:
    load(index, osv("GHSA-semv-erra-nges", ranges=[ecosystem({"introduced": "1.2.0"}, {"fixed": "1.2.5"},
                                                             kind="SEMVER")]))
    assert ids(index, "demo-pkg", "1.2.3") == ["GHSA-semv-erra-nges"]
    assert ids(index, "demo-pkg", "1.2.5") == []


def test_git_ranges_are_ignored(index: Index) -> None:
    report = load(index, osv("GHSA-gitr-ange-only", ranges=[
        {"type": "GIT", "repo": "https://git.example/x", "events": [{"introduced": "abc123"}]}]))
    assert ids(index, "demo-pkg", "1.0") == []
    assert (report.stored, report.ignored) == (0, 1)


def test_versions_list_matches_equal_versions(index: Index) -> None:
    load(index, osv("PYSEC-2026-2", versions=["1.0", "1.1.0", "not a version!"]))
    assert ids(index, "demo-pkg", "1.0.0") == ["PYSEC-2026-2"]  # 1.0.0 == 1.0 for PEP 440
    assert ids(index, "demo-pkg", "1.1") == ["PYSEC-2026-2"]
    assert ids(index, "demo-pkg", "1.2") == []


def test_invalid_versions_are_counted_and_their_range_left_out(index: Index) -> None:
    report = load(index, osv("GHSA-badv-ersi-ons", ranges=[
        ecosystem({"introduced": "0"}, {"fixed": "not-a-version"}),
        ecosystem({"introduced": "5.0"}, {"fixed": "5.1"})], versions=["bogus version", "7.0"]))
    assert report.invalid_versions == 2
    assert ids(index, "demo-pkg", "1.0") == []  # the broken range is not guessed open-ended
    assert ids(index, "demo-pkg", "5.0") == ["GHSA-badv-ersi-ons"]
    assert ids(index, "demo-pkg", "7.0") == ["GHSA-badv-ersi-ons"]
    assert ids(index, "demo-pkg", "garbage!") == []  # an invalid version asked about


def test_other_ecosystems_are_ignored(index: Index) -> None:
    record = osv("GHSA-mixe-deco-syst", ranges=[ecosystem({"introduced": "0"})])
    record["affected"].append({"package": {"ecosystem": "npm", "name": "leftpad"},
                               "ranges": [ecosystem({"introduced": "0"})]})
    npm_only = osv("GHSA-npmo-nlyr-ecrd", package="demo-pkg", ecosystem="npm", ranges=[ecosystem({"introduced": "0"})])
    report = load(index, record, npm_only)
    assert ids(index, "leftpad", "1.0") == []
    assert ids(index, "demo-pkg", "1.0") == ["GHSA-mixe-deco-syst"]
    assert (report.stored, report.ignored) == (1, 1)


def test_withdrawn_records_are_ignored_and_remove_what_was_stored(index: Index) -> None:
    record = osv("GHSA-with-draw-nnnn", ranges=[ecosystem({"introduced": "0"})])
    load(index, record)
    assert ids(index, "demo-pkg", "1.0") == ["GHSA-with-draw-nnnn"]
    report = load(index, {**record, "withdrawn": "2026-11-02T00:00:00Z"})
    assert ids(index, "demo-pkg", "1.0") == []
    assert (report.stored, report.removed) == (0, 1)
    never = load(index, {**osv("GHSA-neve-rsto-red0", ranges=[ecosystem({"introduced": "0"})]),
                         "withdrawn": "2026-11-02T00:00:00Z"})
    assert (never.stored, never.removed, never.ignored) == (0, 0, 1)


def test_malicious_records(index: Index) -> None:
    load(index, osv("MAL-2026-1234", package="evil-pkg", versions=["0.1"]),
         osv("GHSA-mali-ciou-sali", package="evil-pkg", ranges=[ecosystem({"introduced": "0"})],
             aliases=["MAL-2026-9999"]),
         osv("GHSA-notm-alic-ious", package="evil-pkg", versions=["0.1"],
             database_specific={"severity": "LOW"}))
    found = index.run(advisories.affecting, "evil-pkg", "0.1")
    assert [(a.id, a.malicious) for a in found] == [
        ("GHSA-mali-ciou-sali", True), ("MAL-2026-1234", True), ("GHSA-notm-alic-ious", False)]


@pytest.mark.parametrize(("extra", "expected"), [
    ({"database_specific": {"severity": "MODERATE"}}, "moderate"),
    ({"database_specific": {"severity": "critical"}, "severity": [{"type": "CVSS_V3", "score": LOW_VECTOR}]},
     "critical"),  # GitHub's word wins over a score
    ({"severity": [{"type": "CVSS_V3", "score": CRITICAL_VECTOR}]}, "critical"),
    ({"severity": [{"type": "CVSS_V3", "score": LOW_VECTOR}]}, "low"),
    ({"severity": [{"type": "CVSS_V3", "score": LOW_VECTOR}, {"type": "CVSS_V3", "score": CRITICAL_VECTOR}]},
     "critical"),  # the highest
    ({"severity": [{"type": "CVSS_V4", "score": "CVSS:4.0/AV:N/AC:L/AT:N/PR:N/UI:N/VC:H/VI:L/VA:N/SC:N/SI:N/SA:N"}]},
     "high"),
    ({"severity": [{"type": "CVSS_V3", "score": "CVSS:3.1/garbage"}]}, None),
    ({"severity": [{"type": "CVSS_V2", "score": "AV:N/AC:L/Au:N/C:P/I:P/A:P"}]}, None),
    ({"database_specific": {"severity": "UNKNOWN"}}, None),
    ({}, None),
])
def test_severity(index: Index, extra: dict[str, Any], expected: str | None) -> None:
    load(index, osv("GHSA-seve-rity-test", versions=["1.0"], **extra))
    (found,) = index.run(advisories.affecting, "demo-pkg", "1.0")
    assert found == Advisory(id="GHSA-seve-rity-test", aliases=(), summary="about GHSA-seve-rity-test",
                             severity=expected, malicious=False)


def test_for_project_answers_many_versions_from_one_query(index: Index) -> None:
    load(index, osv("GHSA-onea-aaaa-aaaa", ranges=[ecosystem({"introduced": "0"}, {"fixed": "100"})]),
         osv("GHSA-twob-bbbb-bbbb", versions=["5"], aliases=["CVE-2026-0001"]))
    queries = []

    def lookups() -> list[list[str]]:
        from pypilite.database import database
        execute = database.obj.execute_sql

        def counted(*args: Any, **kwargs: Any) -> Any:
            queries.append(args[0])
            return execute(*args, **kwargs)
        database.obj.execute_sql = counted
        try:
            project = advisories.for_project("demo-pkg")
            return [[a.id for a in project.affecting(str(v))] for v in range(500)]
        finally:
            del database.obj.execute_sql
    found = index.run(lookups)
    assert len(queries) == 1
    assert found[5] == ["GHSA-onea-aaaa-aaaa", "GHSA-twob-bbbb-bbbb"] and found[499] == []


def test_reimport_replaces_and_generation_moves(index: Index) -> None:
    first = index.run(advisories.generation)
    load(index, osv("GHSA-repl-aced-once", versions=["1.0"], aliases=["CVE-1"]))
    second = index.run(advisories.generation)
    assert second > first
    load(index, osv("GHSA-repl-aced-once", versions=["2.0"], aliases=["CVE-2"], summary="changed"))
    assert index.run(advisories.generation) > second
    assert ids(index, "demo-pkg", "1.0") == []
    (found,) = index.run(advisories.affecting, "demo-pkg", "2.0")
    assert (found.aliases, found.summary) == (("CVE-2",), "changed")
    status = index.run(advisories.status)
    assert (status.advisories, status.source) == (1, "test.zip")
    assert status.age_seconds() is not None and status.age_seconds() < 600


@pytest.mark.parametrize(("record", "why"), [
    ([1, 2], "not a JSON object"),
    ({"affected": []}, "no valid id"),
    ({"id": "../../etc/passwd"}, "no valid id"),
    ({"id": "X" * 500}, "no valid id"),
    ({"id": "GHSA-x", "aliases": "CVE-1"}, "aliases is not a list of strings"),
    ({"id": "GHSA-x", "affected": {"package": "x"}}, "affected is not a list of objects"),
    ({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI"}}]}, "a PyPI package without a name"),
    ({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "ranges": "0"}]},
     "ranges is not a list of objects"),
    ({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"},
                                    "ranges": [{"type": "ECOSYSTEM", "events": [{"introduced": "0", "fixed": "1"}]}]}]},
     "a range's events are not single-key objects"),
    ({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"},
                                    "ranges": [{"type": "ECOSYSTEM", "events": [{"patched": "1"}]}]}]},
     "an unknown range event 'patched'"),
    ({"id": "GHSA-x", "affected": [{"package": {"ecosystem": "PyPI", "name": "x"}, "versions": [1.0]}]},
     "versions is not a list of strings"),
])
def test_malformed_records_are_reported_and_the_rest_stored(index: Index, record: Any, why: str) -> None:
    report = load(index, record, osv("GHSA-good-reco-rdok", versions=["1.0"]))
    assert report.malformed == [("r0.json", why)]
    assert report.stored == 1
    assert ids(index, "demo-pkg", "1.0") == ["GHSA-good-reco-rdok"]


def test_a_batch_boundary_keeps_every_record(index: Index, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(advisories, "BATCH", 3)
    report = load(index, *(osv(f"PYSEC-2026-{n}", package=f"p{n % 4}", versions=["1.0"]) for n in range(10)))
    assert report.stored == 10
    assert ids(index, "p1", "1.0") == ["PYSEC-2026-1", "PYSEC-2026-5", "PYSEC-2026-9"]
