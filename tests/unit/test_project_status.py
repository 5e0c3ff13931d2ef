"""PEP 792 on hosted projects: set through the API and the CLI, shown by pages, enforced on uploads and
downloads; and how a group's page says what its members say (statuses merged, PEP 708 alternate-locations)."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import pytest

from pypilite.models import AuditEvent
from tests.conftest import Index, basic, call
from tests.distfactory import wheel_bytes

JSON = "application/vnd.pypi.simple.v1+json"
WHEEL = wheel_bytes("demo", "1.0")


def _status(index: Index, status: str, reason: str = "", repo: str = "local", project: str = "demo", **kwargs):
    body = {"status": status, **({"reason": reason} if reason else {})}
    return index.client.put(f"/api/v1/repos/{repo}/projects/{project}/status", json=body,
                            headers=kwargs.get("headers", index.auth))


@pytest.fixture
def demo(index: Index) -> Index:
    assert index.upload("demo-1.0-py3-none-any.whl", WHEEL).status_code == 200
    return index


def test_a_new_project_says_nothing_and_stays_at_api_version_1_1(demo: Index) -> None:
    page = demo.get("/local/simple/demo/", JSON).json
    assert "project-status" not in page and page["meta"] == {"api-version": "1.1"}
    assert demo.client.get("/api/v1/repos/local/projects/demo", headers=demo.auth).json["status"] == "active"


@pytest.mark.parametrize("status", ["archived", "deprecated"])
def test_archived_and_deprecated_projects_keep_their_files_and_say_so(demo: Index, status: str) -> None:
    response = _status(demo, status, "use demo2")
    assert response.status_code == 200
    assert response.json == {"project": "demo", "status": status, "status_reason": "use demo2"}
    page = demo.get("/local/simple/demo/", JSON).json
    assert page["meta"]["api-version"] == "1.4"
    assert page["project-status"] == {"status": status, "reason": "use demo2"}
    assert [f["filename"] for f in page["files"]] == ["demo-1.0-py3-none-any.whl"]
    html = demo.get("/local/simple/demo/", "text/html").get_data(as_text=True)
    assert f'<meta name="pypi:project-status" content="{status}">' in html
    assert '<meta name="pypi:project-status-reason" content="use demo2">' in html
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert demo.get(urljoin("/local/simple/demo/", page["files"][0]["url"])).status_code == 200
    events = demo.run(lambda: [(e.action, e.resource) for e in AuditEvent.select()
                                .where(AuditEvent.action == "project.status")])
    assert events == [("project.status", "local/demo")]


def test_uploads_to_archived_and_quarantined_projects_are_refused_in_one_line(demo: Index) -> None:
    for status in ("archived", "quarantined"):
        assert _status(demo, status, "frozen").status_code == 200
        response = demo.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"))
        assert response.status_code == 400
        message = response.get_data(as_text=True)
        assert f"Project demo is {status} in repository 'local' and takes no new files: frozen" in message
        assert "\n" not in message.strip()
        # Even the same bytes again: a re-upload must not read as a success.
        assert demo.upload("demo-1.0-py3-none-any.whl", WHEEL).status_code == 400
    for status in ("deprecated", "active"):
        assert _status(demo, status).status_code == 200
    assert demo.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0")).status_code == 200


def test_a_quarantined_project_offers_no_files_and_serves_none(demo: Index) -> None:
    url = urljoin("/local/simple/demo/", demo.get("/local/simple/demo/", JSON).json["files"][0]["url"])
    assert _status(demo, "quarantined", "malware").status_code == 200
    for path in ("/local/simple/demo/", "/simple/demo/", "/all/simple/demo/"):
        page = demo.get(path, JSON).json
        assert page["files"] == [] and page["versions"] == []
        assert page["project-status"] == {"status": "quarantined", "reason": "malware"}
    assert demo.get(url).status_code == 404
    assert demo.get(url + ".metadata").status_code == 404
    # The name stays held: a group never falls through to an upstream namesake for it.
    assert demo.get("/all/simple/demo/", JSON).json["name"] == "demo"
    assert _status(demo, "active").status_code == 200
    assert demo.get(url).status_code == 200


@pytest.mark.parametrize("body, words", [
    ({"status": "gone"}, "status must be one of active, archived, deprecated, quarantined"),
    ({"status": "archived", "reason": "x" * 501}, "at most 500"),
    ({"status": "archived", "reason": "two\nlines"}, "one line"),
    ({"status": 3}, "wrong type"),
    ({"reason": "x"}, "missing field 'status'"),
])
def test_bad_statuses_are_refused(demo: Index, body: dict, words: str) -> None:
    response = demo.client.put("/api/v1/repos/local/projects/demo/status", json=body, headers=demo.auth)
    assert response.status_code == 400 and words in response.get_data(as_text=True)


def test_only_hosted_projects_that_exist_take_a_status_from_those_who_may_upload(demo: Index) -> None:
    assert _status(demo, "archived", project="ghost").status_code == 404
    assert _status(demo, "archived", repo="all").status_code == 400
    assert _status(demo, "archived", headers={}).status_code == 401


def test_the_command_line_sets_a_status(capsys, config: str, tmp_path) -> None:
    index = Index(tmp_path / "data")
    assert index.upload("demo-1.0-py3-none-any.whl", WHEEL).status_code == 200
    code, out, _ = call(capsys, "project", "status", "local", "demo", "deprecated", "--reason", "use demo2",
                        "--config", config)
    assert code == 0 and "is deprecated" in out
    assert index.get("/local/simple/demo/", JSON).json["project-status"] == {"status": "deprecated",
                                                                             "reason": "use demo2"}
    code, _, err = call(capsys, "project", "status", "local", "ghost", "archived", "--config", config)
    assert code != 0 and len(err.strip().splitlines()) == 1


def test_an_import_into_a_quarantined_project_is_refused(capsys, config: str, tmp_path) -> None:
    index = Index(tmp_path / "data")
    assert index.upload("demo-1.0-py3-none-any.whl", WHEEL).status_code == 200
    assert call(capsys, "project", "status", "local", "demo", "quarantined", "--config", config)[0] == 0
    (tmp_path / "dl").mkdir()
    (tmp_path / "dl" / "demo-2.0-py3-none-any.whl").write_bytes(wheel_bytes("demo", "2.0"))
    code, out, _ = call(capsys, "import", str(tmp_path / "dl"), "--repo", "local", "--config", config)
    assert code == 1 and "rejected demo-2.0-py3-none-any.whl: Project demo is quarantined" in out


def test_a_group_shows_a_pass_through_merge_with_alternate_locations(tmp_path) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"}, {"name": "team", "repository_type": "hosted"},
        {"name": "both", "repository_type": "group", "members": ["local", "team"], "upload_to": "local",
         "pass_through": ["demo"]},
        {"name": "plain", "repository_type": "group", "members": ["local", "team"], "upload_to": "local"}]})
    assert index.upload("demo-1.0-py3-none-any.whl", WHEEL).status_code == 200
    assert index.upload("demo-2.0-py3-none-any.whl", wheel_bytes("demo", "2.0"), repo="team").status_code == 200
    page = index.get("/both/simple/demo/", JSON).json
    team_file = urljoin("/both/simple/demo/", next(f["url"] for f in page["files"] if "2.0" in f["filename"]))
    assert index.get(team_file).status_code == 200
    assert page["alternate-locations"] == ["../../../local/simple/demo/", "../../../team/simple/demo/"]
    assert page["meta"]["api-version"] == "1.2" and len(page["files"]) == 2
    html = index.get("/both/simple/demo/", "text/html").get_data(as_text=True)
    assert re.findall(r'<meta name="pypi:alternate-locations" content="([^"]+)">', html) == [
        "../../../local/simple/demo/", "../../../team/simple/demo/"]
    assert "alternate-locations" not in index.get("/plain/simple/demo/", JSON).json
    # The most severe status of the merged pages is the group's; a quarantine takes every file away.
    assert _status(index, "deprecated", "old", repo="team").status_code == 200
    assert index.get("/both/simple/demo/", JSON).json["project-status"] == {"status": "deprecated", "reason": "old"}
    assert _status(index, "quarantined", "bad", repo="local").status_code == 200
    page = index.get("/both/simple/demo/", JSON).json
    assert page["project-status"] == {"status": "quarantined", "reason": "bad"} and page["files"] == []
    # Nor do the group's file URLs serve the other member's files, recorded before the quarantine.
    assert index.get(team_file).status_code == 404
    assert index.get(team_file.replace("/both/", "/plain/")).status_code == 404
    assert index.get(team_file.replace("/both/files/", "/team/files/")).status_code == 200  # team's own index


def test_the_ui_and_the_json_api_say_a_quarantined_project_offers_nothing(demo: Index) -> None:
    assert _status(demo, "quarantined", "malware found").status_code == 200
    page = demo.client.get("/ui/local/demo/", headers=demo.auth)
    text = page.get_data(as_text=True)
    assert page.status_code == 200 and "This project is quarantined: malware found." in text
    assert "No files are offered." in text and "demo-1.0-py3-none-any.whl" not in text
    document = demo.client.get("/local/pypi/demo/json", headers=demo.auth)
    assert document.status_code == 404 and "offers no files (quarantined)" in document.json["error"]
    assert _status(demo, "archived").status_code == 200
    assert "This project is archived. It takes no new files." in demo.client.get(
        "/ui/local/demo/", headers=demo.auth).get_data(as_text=True)


def test_a_quarantine_is_put_on_and_lifted_by_administrators_only(demo: Index) -> None:
    assert demo.client.post("/api/v1/users", json={"name": "dev", "password": "a long password 1"},
                            headers=demo.auth).status_code == 201
    assert demo.client.put("/api/v1/repos/local/permissions/dev", json={"level": "upload"},
                           headers=demo.auth).status_code == 201
    dev = basic("dev", "a long password 1")
    assert _status(demo, "deprecated", headers=dev).status_code == 200  # a maintainer's call
    refused = _status(demo, "quarantined", headers=dev)
    assert refused.status_code == 403 and "'dev' may not administer repository 'local'" in refused.json["error"]
    assert _status(demo, "quarantined", "malware").status_code == 200
    assert _status(demo, "active", headers=dev).status_code == 403  # nor lift one
    assert demo.client.get("/api/v1/repos/local/projects/demo", headers=demo.auth).json["status"] == "quarantined"
    assert _status(demo, "active").status_code == 200
