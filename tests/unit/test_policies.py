"""The package firewall in-process: parsing policies, each rule on a proxy's pages and files, report mode,
groups over their members, hosted uploads, and pages that change when the policy or the clock does."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from pypilite import licenses
from pypilite.config import parse_repository
from pypilite.models import AuditEvent, PolicyBlock
from pypilite.policies import PolicyError, parse_policy, parse_requirement
from pypilite.repository_admin import config_drift
from tests.conftest import Index, call
from tests.distfactory import metadata_text, wheel_bytes
from tests.unit.test_advisories import CRITICAL_VECTOR, LOW_VECTOR, ecosystem, load, osv
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"


def ago(**delta: float) -> str:
    return (datetime.now(UTC) - timedelta(**delta)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture
def upstream(tmp_path) -> Iterator[Upstream]:
    dists = [wheel("demo", "1.0", license_expression="MIT", upload_time=ago(days=30)),
             wheel("demo", "2.0", license_expression="AGPL-3.0-only", upload_time=ago(days=20)),
             wheel("demo", "3.0rc1", license_expression="MIT", upload_time=ago(days=10)),
             wheel("demo", "3.0", license_expression="MIT", upload_time=ago(hours=1)),
             wheel("evil-thing", "1.0", upload_time=ago(days=30)),
             wheel("undated", "1.0", upload_time=None)]
    server = Upstream(tmp_path / "upstream", dists, json_api=True).start()
    yield server
    server.stop()


def policed(tmp_path, upstream: Upstream, policy: dict | None, group_policy: dict | None = None) -> Index:
    proxy = {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 2}
    group = {"name": "all", "repository_type": "group", "members": ["local", "pypi"], "upload_to": "local"}
    if policy is not None:
        proxy["policy"] = policy
    if group_policy is not None:
        group["policy"] = group_policy
    return Index(tmp_path / "data", {"repository": [{"name": "local", "repository_type": "hosted"}, proxy, group]})


def versions(index: Index, url: str) -> list[str]:
    response = index.get(url, accept=JSON)
    assert response.status_code == 200, response.text
    return response.json["versions"]


def download(index: Index, upstream: Upstream, repo: str, filename: str):
    sha256 = next(d.sha256 for d in upstream.dists if d.filename == filename)
    return index.get(f"/{repo}/files/pypi/{sha256}/{filename}")


def test_parsing_names_the_key_and_refuses_what_a_hosted_repository_cannot_apply() -> None:
    assert parse_policy({"min_release_age": "3d", "deny": ["evil-*", "foo==1.2.3"]}, "r", "proxy").age == \
        timedelta(days=3)
    for entry, message in (({"min_release_age": "3 days"}, "min_release_age"), ({"mode": "warn"}, "mode"),
                           ({"deny": ["foo==="]}, "deny"), ({"licenses_deny": ["Not A Licence("]}, "licenses_deny"),
                           ({"colour": "red"}, "colour"), ({"block_vulnerable": "urgent"}, "block_vulnerable"),
                           ({"deny": ["x" * 301]}, "longer than"), ({"allow": ["a"] * 1001}, "more than")):
        with pytest.raises(PolicyError, match=message):
            parse_policy(entry, "r", "proxy")
    with pytest.raises(PolicyError, match="does not apply to a hosted"):
        parse_policy({"min_release_age": "1d"}, "r", "hosted")


def test_requirements_match_globs_and_prereleases() -> None:
    assert parse_requirement("Evil_*").covers("evil-thing", "1.0")
    assert parse_requirement("bar<2").covers("bar", "2.0rc1") is False
    assert parse_requirement("bar<2").covers("bar", "1.5a1")
    assert not parse_requirement("foo==1.2.3").covers("foo", "1.2.4")


def test_licence_expressions_offer_a_choice_under_or_and_none_under_and() -> None:
    assert licenses.acceptable("MIT OR AGPL-3.0-only", (), ("AGPL-3.0-only",))
    assert not licenses.acceptable("MIT AND AGPL-3.0-only", (), ("AGPL-3.0-only",))
    assert not licenses.acceptable("GPL-2.0-only WITH Classpath-exception-2.0", ("MIT",), ())
    assert licenses.of_metadata(metadata_text("a", "1", license_expression="mit").encode()) == "MIT"


def test_release_age_hides_young_and_undated_files_and_the_allow_list_excepts(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"min_release_age": "3d"})
    assert versions(index, "/pypi/simple/demo/") == ["1.0", "2.0", "3.0rc1"]
    assert index.get("/pypi/simple/undated/", accept=JSON).json["files"] == []
    refused = download(index, upstream, "pypi", "demo-3.0-py3-none-any.whl")
    assert refused.status_code == 403 and "min_release_age" in refused.text and "\n" not in refused.text.strip()
    excepted = policed(tmp_path / "b", upstream, {"min_release_age": "3d", "allow": ["demo==3.0"],
                                                  "undated": "allow"})
    assert versions(excepted, "/pypi/simple/demo/") == ["1.0", "2.0", "3.0rc1", "3.0"]
    assert versions(excepted, "/pypi/simple/undated/") == ["1.0"]


def test_deny_list_and_report_mode(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"deny": ["evil-*", "demo>=2,<3"]})
    assert versions(index, "/pypi/simple/demo/") == ["1.0", "3.0rc1", "3.0"]
    assert versions(index, "/pypi/simple/evil-thing/") == []
    report = policed(tmp_path / "r", upstream, {"deny": ["evil-*"], "mode": "report"})
    assert versions(report, "/pypi/simple/evil-thing/") == ["1.0"]
    assert download(report, upstream, "pypi", "evil_thing-1.0-py3-none-any.whl").status_code == 200
    events = report.run(lambda: [(e.action, json.loads(e.detail)["rule"]) for e in AuditEvent.select()
                                 .where(AuditEvent.action.startswith("policy."))])
    assert events == [("policy.report", "deny")]
    assert 'pypilite_policy_blocks_total{mode="report",rule="deny",where="page"}' in report.get("/metrics").text


def test_each_block_is_audited_once_however_often_it_is_asked(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"deny": ["evil-*"]})
    for _ in range(3):
        versions(index, "/pypi/simple/evil-thing/")
        download(index, upstream, "pypi", "evil_thing-1.0-py3-none-any.whl")
    assert index.run(lambda: PolicyBlock.select().count()) == 1
    assert index.run(lambda: AuditEvent.select().where(AuditEvent.action == "policy.block").count()) == 1


def test_licences_are_read_from_core_metadata_the_proxy_fetches(tmp_path, upstream, monkeypatch) -> None:
    index = policed(tmp_path, upstream, {"licenses_deny": ["AGPL-3.0-only"]})
    assert versions(index, "/pypi/simple/demo/") == ["1.0", "3.0rc1", "3.0"]
    assert upstream.log.count("demo-2.0-py3-none-any.whl.metadata") == 1
    refused = download(index, upstream, "pypi", "demo-2.0-py3-none-any.whl")
    assert refused.status_code == 403 and "AGPL-3.0-only" in refused.text
    assert download(index, upstream, "pypi", "demo-1.0-py3-none-any.whl").status_code == 200
    # Not read by a page (none left to read per build): the download reads it first, and refuses.
    monkeypatch.setattr("pypilite.repositories.policed.LEARN_PER_PAGE", 0)
    later = policed(tmp_path / "later", upstream, {"licenses_deny": ["AGPL-3.0-only"]})
    assert "2.0" in versions(later, "/pypi/simple/demo/")
    assert download(later, upstream, "pypi", "demo-2.0-py3-none-any.whl").status_code == 403
    assert "2.0" not in versions(later, "/pypi/simple/demo/")


def test_a_group_applies_its_own_policy_over_its_members(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, None, group_policy={"deny": ["demo==1.0"]})
    assert versions(index, "/pypi/simple/demo/") == ["1.0", "2.0", "3.0rc1", "3.0"]
    assert versions(index, "/all/simple/demo/") == ["2.0", "3.0rc1", "3.0"]
    sha256 = next(d.sha256 for d in upstream.dists if d.filename == "demo-1.0-py3-none-any.whl")
    refused = index.get(f"/all/files/pypi/{sha256}/demo-1.0-py3-none-any.whl")
    assert refused.status_code == 403 and "'all'" in refused.text


def test_a_policy_change_shows_on_the_next_request_and_never_a_stale_etag(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, None)
    first = index.get("/all/simple/demo/", accept=JSON)
    assert first.json["versions"] == ["1.0", "2.0", "3.0rc1", "3.0"]
    changed = index.client.put("/api/v1/repos/pypi/policy", json={"deny": ["demo==3.0"]}, headers=index.auth)
    assert changed.status_code == 200, changed.text
    again = index.get("/all/simple/demo/", accept=JSON, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and again.json["versions"] == ["1.0", "2.0", "3.0rc1"]


def test_hosted_uploads_are_refused_by_deny_and_licence_rules(tmp_path, upstream) -> None:
    index = Index(tmp_path / "data", {"repository": [{"name": "local", "repository_type": "hosted", "policy": {
        "deny": ["evil-*"], "licenses_allow": ["MIT", "Apache-2.0"]}}]})
    mit = wheel_bytes("good", "1.0", metadata=metadata_text("good", "1.0", license_expression="MIT"))
    assert index.upload("good-1.0-py3-none-any.whl", mit).status_code == 200
    agpl = wheel_bytes("good", "2.0", metadata=metadata_text("good", "2.0", license_expression="AGPL-3.0-only"))
    refused = index.upload("good-2.0-py3-none-any.whl", agpl)
    assert refused.status_code == 400 and "AGPL-3.0-only" in refused.text
    evil = wheel_bytes("evil-x", "1.0", metadata=metadata_text("evil-x", "1.0", license_expression="MIT"))
    assert "deny list" in index.upload("evil_x-1.0-py3-none-any.whl", evil).text
    assert [row.filename for row in index.file_rows()] == ["good-1.0-py3-none-any.whl"]


def test_the_command_line_sets_shows_and_explains(capsys, tmp_path, upstream) -> None:
    config = tmp_path / "pypilite.toml"
    config.write_text(f'[storage]\ndata_dir = "{tmp_path / "data"}"\n[[repository]]\nname = "pypi"\n'
                      f'repository_type = "proxy"\nremote_url = "{upstream.url}"\n'
                      '[repository.policy]\ndeny = ["demo<2"]\n')
    Index(tmp_path / "data", {"repository": [{"name": "pypi", "repository_type": "proxy",
                                              "remote_url": upstream.url}]})
    rules = tmp_path / "rules.toml"
    rules.write_text('min_release_age = "3d"\ndeny = ["evil-*"]\n')
    code, out, err = call(capsys, "policy", "set", "pypi", str(rules), "--config", str(config))
    assert code == 0, err
    code, out, _ = call(capsys, "policy", "show", "pypi", "--config", str(config))
    assert json.loads(out)["min_release_age"] == "3d"
    code, out, _ = call(capsys, "policy", "explain", "pypi", "demo", "--config", str(config))
    assert code == 0 and "3.0: blocked" in out and "min_release_age" in out and "1.0: allowed" in out
    assert call(capsys, "policy", "set", "pypi", "--from-config", "--config", str(config))[0] == 0
    code, out, _ = call(capsys, "policy", "explain", "pypi", "demo", "1.0", "--config", str(config))
    assert out.splitlines()[0] == "1.0: blocked" and "deny list" in out
    rules.write_text('min_release_age = "soon"\n')
    code, _out, err = call(capsys, "policy", "set", "pypi", str(rules), "--config", str(config))
    assert code != 0 and len(err.strip().splitlines()) == 1 and "min_release_age" in err


def test_the_ui_shows_blocked_versions_with_their_rule(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"min_release_age": "3d", "deny": ["demo==2.0"]})
    versions(index, "/pypi/simple/demo/")
    page = index.get("/ui/pypi/demo/", headers=index.auth).text
    blocked = page[page.index('id="blocked"'):]
    assert "3.0" in blocked and "release_age (pypi)" in blocked and "deny (pypi)" in blocked


def test_vulnerable_and_malicious_versions_are_blocked_and_an_import_shows_at_once(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"block_vulnerable": "high", "allow": ["evil-thing==1.0"]})
    first = index.get("/pypi/simple/demo/", accept=JSON)
    assert first.json["versions"] == ["1.0", "2.0", "3.0rc1", "3.0"]
    load(index, osv("GHSA-crit-ical-0001", package="demo", ranges=[ecosystem({"introduced": "0"}, {"fixed": "2.0"})],
                    severity=[{"type": "CVSS_V3", "score": CRITICAL_VECTOR}]),
         osv("GHSA-lowl-owlo-0002", package="demo", versions=["2.0"],
             severity=[{"type": "CVSS_V3", "score": LOW_VECTOR}]),
         osv("MAL-2026-1", package="demo", versions=["3.0rc1"]),
         osv("MAL-2026-2", package="evil-thing", versions=["1.0"]))
    again = index.get("/pypi/simple/demo/", accept=JSON, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 200 and again.json["versions"] == ["2.0", "3.0"]
    refused = download(index, upstream, "pypi", "demo-1.0-py3-none-any.whl")
    assert refused.status_code == 403 and "GHSA-crit-ical-0001" in refused.text
    assert "malicious" in download(index, upstream, "pypi", "demo-3.0rc1-py3-none-any.whl").text
    assert versions(index, "/pypi/simple/evil-thing/") == ["1.0"]  # explicitly allowed
    blocked = {v["version"]: v for v in index.client.get("/api/v1/repos/pypi/policy/explain/demo",
                                                         headers=index.auth).json["versions"]}
    assert blocked["1.0"]["files"][0]["blocked"][0]["advisories"] == ["GHSA-crit-ical-0001"]
    assert blocked["3.0rc1"]["files"][0]["blocked"][0]["rule"] == "malicious" and blocked["2.0"]["allowed"]


def test_a_file_whose_metadata_declares_no_licence_follows_licenses_unknown(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"licenses_deny": ["AGPL-3.0-only"]})
    assert versions(index, "/pypi/simple/evil-thing/") == []
    assert "declares no SPDX licence" in download(index, upstream, "pypi", "evil_thing-1.0-py3-none-any.whl").text
    lenient = policed(tmp_path / "lenient", upstream, {"licenses_deny": ["AGPL-3.0-only"], "licenses_unknown": "allow"})
    assert versions(lenient, "/pypi/simple/evil-thing/") == ["1.0"]


def test_the_repository_page_shows_its_policy_to_its_admins_only(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"min_release_age": "3d", "deny": ["secret-*"]})
    shown = index.get("/ui/pypi/", headers=index.auth).text
    assert 'id="policy"' in shown and "min_release_age = &#34;3d&#34;" in shown
    assert 'id="policy"' not in index.get("/ui/pypi/").text and "secret-" not in index.get("/ui/pypi/").text


def test_release_age_holds_back_upstream_files_only(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, None, group_policy={"min_release_age": "3d"})
    assert index.upload("demo-9.0-py3-none-any.whl", wheel_bytes("demo", "9.0")).status_code == 200
    assert versions(index, "/all/simple/demo/") == ["9.0"]  # the hosted member holds the name: its files only
    assert versions(index, "/all/simple/undated/") == []
    assert index.upload("fresh-1.0-py3-none-any.whl", wheel_bytes("fresh", "1.0")).status_code == 200
    assert versions(index, "/all/simple/fresh/") == ["1.0"]


def test_the_api_takes_a_policy_with_a_repository_and_refuses_a_bad_one_in_one_line(index: Index) -> None:
    created = index.client.post("/api/v1/repos", headers=index.auth, json={
        "name": "guarded", "repository_type": "proxy", "remote_url": "http://127.0.0.1:9/simple/",
        "policy": {"deny": ["evil-*"], "mode": "report"}})
    assert created.status_code == 201 and created.json["policy"]["deny"] == ["evil-*"]
    bad = index.client.patch("/api/v1/repos/guarded", headers=index.auth, json={"policy": {"min_release_age": "1w"}})
    assert bad.status_code == 400 and "min_release_age" in bad.json["error"] and "\n" not in bad.json["error"]
    hosted = index.client.put("/api/v1/repos/local/policy", headers=index.auth, json={"block_vulnerable": "high"})
    assert hosted.status_code == 400 and "does not apply to a hosted" in hosted.json["error"]
    assert index.client.delete("/api/v1/repos/guarded/policy", headers=index.auth).status_code == 204
    assert index.client.get("/api/v1/repos/guarded/policy", headers=index.auth).json == {"policy": None}


def test_a_config_policy_other_than_the_database_is_named_at_start_up(tmp_path) -> None:
    served = parse_repository({"name": "pypi", "repository_type": "proxy", "policy": {"min_release_age": "1d"}})
    wanted = parse_repository({"name": "pypi", "repository_type": "proxy", "policy": {"min_release_age": "3d"}})
    [line] = config_drift([wanted], {"pypi": frozenset({"policy"})}, {"pypi": served})
    assert '"min_release_age": "3d"' in line and "policy set pypi --from-config" in line
    assert config_drift([served], {"pypi": frozenset({"policy"})}, {"pypi": served}) == []


def test_known_malicious_versions_are_blocked_without_a_policy_once_advisories_are_imported(tmp_path,
                                                                                             upstream) -> None:
    index = policed(tmp_path, upstream, None)
    assert versions(index, "/pypi/simple/evil-thing/") == ["1.0"]
    assert index.upload("evil_thing-1.0-py3-none-any.whl", wheel_bytes("evil-thing", "1.0")).status_code == 200
    load(index, osv("MAL-2026-9", package="evil-thing", ranges=[ecosystem({"introduced": "0"})]),
         osv("GHSA-crit-ical-0009", package="demo", versions=["1.0"],
             severity=[{"type": "CVSS_V3", "score": CRITICAL_VECTOR}]))
    assert versions(index, "/pypi/simple/evil-thing/") == []
    assert "MAL-2026-9" in download(index, upstream, "pypi", "evil_thing-1.0-py3-none-any.whl").text
    assert versions(index, "/pypi/simple/demo/") == ["1.0", "2.0", "3.0rc1", "3.0"]  # vulnerable: not by default
    assert versions(index, "/local/simple/evil-thing/") == ["1.0"]  # a hosted namesake is not the upstream's
    assert versions(index, "/all/simple/evil-thing/") == ["1.0"]
    out = index.client.put("/api/v1/repos/pypi/policy", json={"block_malicious": False}, headers=index.auth)
    assert out.status_code == 200 and versions(index, "/pypi/simple/evil-thing/") == ["1.0"]
    allowed = index.client.put("/api/v1/repos/pypi/policy", json={"allow": ["evil-thing"]}, headers=index.auth)
    assert allowed.status_code == 200 and versions(index, "/pypi/simple/evil-thing/") == ["1.0"]


def test_a_group_without_a_policy_blocks_known_malicious_versions_too(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"block_malicious": False})
    load(index, osv("MAL-2026-9", package="evil-thing", versions=["1.0"]))
    assert versions(index, "/pypi/simple/evil-thing/") == ["1.0"]
    assert versions(index, "/all/simple/evil-thing/") == []
    index.client.put("/api/v1/repos/all/policy", json={"block_malicious": False}, headers=index.auth)
    assert versions(index, "/all/simple/evil-thing/") == ["1.0"]


def test_explain_in_report_mode_says_offered_and_what_would_block(capsys, config, tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, {"deny": ["demo==1.0"], "mode": "report"})
    found = {v["version"]: v for v in index.client.get("/api/v1/repos/pypi/policy/explain/demo",
                                                       headers=index.auth).json["versions"]}
    first = found["1.0"]
    assert first["allowed"] and first["files"][0]["offered"] and not first["files"][0]["blocked"][0]["enforced"]
    assert found["2.0"]["allowed"] and not found["2.0"]["files"][0]["blocked"]
    code, out, err = call(capsys, "policy", "explain", "pypi", "demo", "1.0", "--config", config)
    assert code == 0, err
    assert out.splitlines()[0] == "1.0: offered; would be blocked by pypi (deny) (report mode)"
    assert "report mode" in out.splitlines()[1] and "deny list" in out


def test_an_upload_through_a_group_meets_the_group_policy_too(tmp_path, upstream) -> None:
    index = policed(tmp_path, upstream, None, group_policy={"deny": ["secret-*"], "licenses_deny": ["GPL-3.0-only"]})
    gpl = wheel_bytes("mine", "1.0", metadata=metadata_text("mine", "1.0", license_expression="GPL-3.0-only"))
    refused = index.upload("mine-1.0-py3-none-any.whl", gpl, repo="all")
    assert refused.status_code == 400 and "'all'" in refused.text and "GPL-3.0-only" in refused.text
    denied = index.upload("secret_x-1.0-py3-none-any.whl", wheel_bytes("secret-x", "1.0"), repo="all")
    assert denied.status_code == 400 and "deny list" in denied.text and "\n" not in denied.text.strip()
    assert index.upload("secret_x-1.0-py3-none-any.whl", wheel_bytes("secret-x", "1.0")).status_code == 200
    mit = wheel_bytes("mine", "2.0", metadata=metadata_text("mine", "2.0", license_expression="MIT"))
    assert index.upload("mine-2.0-py3-none-any.whl", mit, repo="all").status_code == 200
    assert sorted(row.filename for row in index.file_rows()) == ["mine-2.0-py3-none-any.whl",
                                                                 "secret_x-1.0-py3-none-any.whl"]
    events = AuditEvent.select().where(AuditEvent.action == "policy.block")
    assert {e.resource for e in index.run(list, events)} == {"all"}
