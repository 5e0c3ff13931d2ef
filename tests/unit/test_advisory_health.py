"""/health and the age of the advisories: a warning, never a failure."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from pypilite.advisories import ImportReport, import_records
from pypilite.audit import Actor
from pypilite.models import AdvisoryImport, utcnow
from tests.conftest import Index, basic
from tests.unit.test_advisories import osv


def imported(index: Index, days_ago: float) -> None:
    index.run(import_records, [("a.json", osv("PYSEC-2026-1", versions=["1.0"]))], "dump.zip", ImportReport(),
              Actor.command_line())
    index.run(lambda: AdvisoryImport.update(time=utcnow() - timedelta(days=days_ago)).execute())


def test_no_advisories_is_no_warning(index: Index) -> None:
    body = index.get("/health").json
    assert (body["status"], body["advisories"], body["advisories_age_seconds"]) == ("ok", "none", None)
    assert "warnings" not in body


def test_fresh_advisories(index: Index) -> None:
    imported(index, 1)
    response = index.get("/health")
    assert response.status_code == 200
    assert (response.json["advisories"], response.json["advisories_age_seconds"] // 3600) == ("ok", 24)
    assert "warnings" not in response.json


def test_old_advisories_warn_and_the_node_stays_healthy(index: Index) -> None:
    imported(index, 8)
    response = index.get("/health")
    assert response.status_code == 200
    body = response.json
    assert (body["status"], body["advisories"], body["warnings"]) == ("ok", "stale", ["advisories"])
    assert "failing" not in body


def test_max_age_is_configured(tmp_path: Path) -> None:
    index = Index(tmp_path / "data", {"advisories": {"max_age": "12h"}})
    imported(index, 1)
    assert index.get("/health").json["advisories"] == "stale"
    never = Index(tmp_path / "never", {"storage": {"data_dir": str(tmp_path / "never")},
                                       "advisories": {"max_age": "0"}})
    imported(never, 1000)
    assert never.get("/health").json["advisories"] == "ok"


def test_the_age_is_for_metrics_readers_only_when_metrics_are_private(tmp_path: Path) -> None:
    index = Index(tmp_path / "data", {"server": {"public_metrics": False}})
    imported(index, 8)
    anonymous = index.get("/health").json
    assert (anonymous["advisories"], anonymous["warnings"]) == ("stale", ["advisories"])
    assert "advisories_age_seconds" not in anonymous
    assert index.get("/health", headers=index.auth).json["advisories_age_seconds"] >= 8 * 86400
    assert "advisories_age_seconds" not in index.get("/health", headers=basic("admin", "wrong")).json


def test_api_status_for_any_signed_in_user(index: Index) -> None:
    from pypilite import users
    from pypilite.audit import Actor
    assert index.get("/api/v1/advisories").status_code == 401
    index.run(users.create_user, "dev", "dev-password", Actor.command_line())
    empty = index.get("/api/v1/advisories", headers=basic("dev", "dev-password")).json
    assert (empty["advisories"], empty["imported"], empty["age_seconds"], empty["stale"]) == (0, None, None, False)
    imported(index, 8)
    body = index.get("/api/v1/advisories", headers=basic("dev", "dev-password")).json
    assert (body["advisories"], body["malicious"], body["source"], body["stale"]) == (1, 0, "dump.zip", True)
    assert body["age_seconds"] >= 8 * 86400 and body["max_age_seconds"] == 7 * 86400
    assert body["generation"] > empty["generation"] and body["imported"].endswith("Z")
