"""The package firewall against the real server (python app.py and gunicorn with two workers), real pip and
uv, and a local upstream whose files carry chosen upload times and licences: installs get the newest allowed
version, a blocked file's URL says why in one line, report mode changes nothing but the audit and metrics,
groups apply their own policy, hosted uploads are refused, and a change or a file ageing in shows on the
next request, in every worker."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import requests

from tests.distfactory import metadata_text, wheel_bytes
from tests.integration.conftest import ROOT, LiveServer, new_venv, run, start_server, stop_server, twine_form, uv
from tests.upstream import Upstream, wheel

JSON = {"Accept": "application/vnd.pypi.simple.v1+json"}
# A file this much younger than min_release_age when a test publishes it, so that it ages in during the test.
AGES_IN = timedelta(seconds=10)


def ago(delta: timedelta) -> str:
    return (datetime.now(UTC) - delta).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    old = timedelta(days=30)
    dists = [wheel("fw-lib", "1.0", license_expression="MIT", upload_time=ago(old)),
             wheel("fw-lib", "2.0", license_expression="MIT", upload_time=ago(old)),
             wheel("fw-lib", "3.0", license_expression="MIT", upload_time=ago(timedelta(hours=1))),
             wheel("fw-app", "1.0", requires=("fw-lib",), license_expression="MIT", upload_time=ago(old)),
             wheel("fw-gpl", "1.0", license_expression="MIT", upload_time=ago(old)),
             wheel("fw-gpl", "2.0", license_expression="AGPL-3.0-only", upload_time=ago(old)),
             wheel("evil-pkg", "1.0", license_expression="MIT", upload_time=ago(old)),
             wheel("fw-mal", "1.0", license_expression="MIT", upload_time=ago(old)),
             wheel("fw-mal", "2.0", license_expression="MIT", upload_time=ago(old))]
    server = Upstream(tmp_path_factory.mktemp("fw-upstream"), dists, json_api=True).start()
    yield server
    server.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def live(request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory) -> Iterator[LiveServer]:
    rules = {"min_release_age": "1d", "deny": ["evil-*"], "licenses_deny": ["AGPL-3.0-only"]}
    repositories = [
        {"name": "local", "repository_type": "hosted",
         "policy": {"deny": ["evil-*"], "licenses_allow": ["MIT", "Apache-2.0"]}},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 5,
         "policy": rules},
        {"name": "watch", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 5,
         "policy": {**rules, "mode": "report"}},
        {"name": "all", "repository_type": "group", "members": ["local", "pypi"], "upload_to": "local",
         "policy": {"deny": ["fw-lib==2.0"]}},
        {"name": "open", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 5},
    ]
    server = start_server(request.param, tmp_path_factory.mktemp(f"fw-{request.param}"), repositories)
    yield server
    stop_server(server.process)


def api(live: LiveServer, method: str, path: str, **kwargs) -> requests.Response:
    return requests.request(method, f"{live.url}/api/v1{path}", auth=("admin", live.admin_password), timeout=30,
                            **kwargs)


def versions(live: LiveServer, repo: str, project: str) -> list[str]:
    response = requests.get(f"{live.simple(repo)}{project}/", headers=JSON, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["versions"]


def pip(live: LiveServer, env: dict[str, str], tmp_path: Path, repo: str, *requirements: str):
    python = new_venv(tmp_path / f"venv-{time.monotonic_ns()}", env)
    result = run([python, "-m", "pip", "install", "--no-cache-dir", "--index-url", live.simple(repo), *requirements],
                 env=env, check=False)
    return result.returncode, result.stdout + result.stderr, python


def installed(python: Path, env: dict[str, str], project: str) -> str:
    return run([python, "-c", f"import importlib.metadata as m; print(m.version({project!r}))"], env=env).stdout.strip()


def test_pip_gets_the_newest_allowed_version_and_a_pin_on_a_blocked_one_fails(live, client_env, tmp_path) -> None:
    code, output, python = pip(live, client_env, tmp_path, "pypi", "fw-app")
    assert code == 0, output
    assert installed(python, client_env, "fw-lib") == "2.0"  # 3.0 is an hour old
    code, output, _ = pip(live, client_env, tmp_path, "pypi", "fw-lib==3.0")
    assert code != 0 and "from versions: 1.0, 2.0" in output
    code, output, python = pip(live, client_env, tmp_path, "pypi", "fw-gpl")
    assert code == 0 and installed(python, client_env, "fw-gpl") == "1.0", output  # 2.0 is AGPL
    code, output, _ = pip(live, client_env, tmp_path, "pypi", "evil-pkg")
    assert code != 0 and "No matching distribution" in output


def test_a_blocked_file_url_answers_403_with_the_reason_and_pip_shows_it(live, upstream, client_env,
                                                                         tmp_path) -> None:
    """What a lock file pinned before the block asks for: the file's own URL."""
    listed = requests.get(f"{live.simple('watch')}fw-lib/", headers=JSON, timeout=30).json()
    url = next(f["url"] for f in listed["files"] if f["filename"] == "fw_lib-3.0-py3-none-any.whl")
    blocked = requests.compat.urljoin(f"{live.simple('pypi')}fw-lib/", url.replace("/watch/", "/pypi/"))
    response = requests.get(blocked, timeout=30)
    assert response.status_code == 403 and "min_release_age" in response.text
    assert len(response.text.strip().splitlines()) == 1 and "min_release_age" in response.reason
    code, output, _ = pip(live, client_env, tmp_path, "pypi", f"fw-lib @ {blocked}")
    assert code != 0 and "403" in output and "min_release_age" in output


def test_uv_resolves_around_blocked_versions(live, client_env, tmp_path) -> None:
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=client_env)
    run([uv(), "pip", "install", "--no-cache", "--python", venv / "bin" / "python", "--index-url",
         live.simple("pypi"), "fw-app", "fw-gpl"], env=client_env)
    assert installed(venv / "bin" / "python", client_env, "fw-lib") == "2.0"
    assert installed(venv / "bin" / "python", client_env, "fw-gpl") == "1.0"


def test_report_mode_changes_nothing_but_the_audit_and_metrics(live, client_env, tmp_path) -> None:
    code, output, python = pip(live, client_env, tmp_path, "watch", "fw-lib", "evil-pkg", "fw-gpl")
    assert code == 0, output
    assert installed(python, client_env, "fw-lib") == "3.0" and installed(python, client_env, "fw-gpl") == "2.0"
    events = api(live, "GET", "/admin/audit?q=policy.report&limit=1000").json()["items"]
    reported = {(e["resource"], e["detail"]["filename"], e["detail"]["rule"]) for e in events}
    assert {("watch", "fw_lib-3.0-py3-none-any.whl", "release_age"), ("watch", "evil_pkg-1.0-py3-none-any.whl", "deny"),
            ("watch", "fw_gpl-2.0-py3-none-any.whl", "license")} <= reported
    assert len(events) == len(reported)  # once each, however often asked
    metrics = requests.get(f"{live.url}/metrics", timeout=30).text
    assert 'pypilite_policy_blocks_total{mode="report",rule="release_age"' in metrics


def test_a_group_applies_its_own_policy_over_its_members(live, client_env, tmp_path) -> None:
    assert versions(live, "pypi", "fw-lib") == ["1.0", "2.0"]
    assert versions(live, "all", "fw-lib") == ["1.0"]
    code, output, python = pip(live, client_env, tmp_path, "all", "fw-lib")
    assert code == 0 and installed(python, client_env, "fw-lib") == "1.0", output


def test_hosted_uploads_are_refused_by_licence_and_deny_rules(live) -> None:
    for name, licence, reason in (("fw-up", "AGPL-3.0-only", "AGPL-3.0-only"), ("evil-up", "MIT", "deny list")):
        filename = f"{name.replace('-', '_')}-1.0-py3-none-any.whl"
        data = wheel_bytes(name, "1.0", metadata=metadata_text(name, "1.0", license_expression=licence))
        body, content_type = twine_form(filename, data)
        response = requests.post(f"{live.url}/local/", data=body, headers={"Content-Type": content_type},
                                 auth=("admin", live.admin_password), timeout=30)
        assert response.status_code == 400 and reason in response.text and reason in response.reason
        assert requests.get(f"{live.simple('local')}{name}/", timeout=30).status_code == 404


def test_a_policy_change_shows_on_the_next_request_in_every_worker(live) -> None:
    before = requests.get(f"{live.simple('all')}fw-lib/", headers=JSON, timeout=30)
    assert before.json()["versions"] == ["1.0"]
    assert api(live, "PUT", "/repos/all/policy", json={"deny": ["fw-lib==1.0"]}).status_code == 200
    try:
        for _ in range(8):  # enough to meet both workers
            after = requests.get(f"{live.simple('all')}fw-lib/", timeout=30,
                                 headers={**JSON, "If-None-Match": before.headers["ETag"]})
            assert after.status_code == 200 and after.json()["versions"] == ["2.0"]
    finally:
        assert api(live, "PUT", "/repos/all/policy", json={"deny": ["fw-lib==2.0"]}).status_code == 200
    explained = api(live, "GET", "/repos/pypi/policy/explain/fw-lib").json()["versions"]
    assert [(v["version"], v["allowed"]) for v in explained] == [("1.0", True), ("2.0", True), ("3.0", False)]
    assert explained[2]["files"][0]["blocked"][0]["rule"] == "release_age"


def test_a_young_file_is_offered_once_it_ages_in(live, upstream) -> None:
    project = f"fw-soon-{time.monotonic_ns()}"
    upstream.dists += [wheel(project, "1.0", license_expression="MIT", upload_time=ago(timedelta(days=30))),
                       wheel(project, "2.0", license_expression="MIT", upload_time=ago(timedelta(days=1) - AGES_IN))]
    upstream._write_tree()
    assert versions(live, "pypi", project) == ["1.0"]
    deadline = time.monotonic() + AGES_IN.total_seconds() + 30
    while time.monotonic() < deadline:
        for _ in range(4):  # both workers, each with its page cache and memo
            found = versions(live, "pypi", project)
            if found == ["1.0", "2.0"]:
                break
        else:
            time.sleep(1)
            continue
        break
    assert found == ["1.0", "2.0"]
    assert all(versions(live, "pypi", project) == ["1.0", "2.0"] for _ in range(4))


def test_explain_says_a_file_report_mode_would_block_is_still_offered(live) -> None:
    explained = {v["version"]: v for v in api(live, "GET", "/repos/watch/policy/explain/fw-lib").json()["versions"]}
    young = explained["3.0"]
    assert young["allowed"] and young["files"][0]["offered"]
    assert [(d["rule"], d["enforced"]) for d in young["files"][0]["blocked"]] == [("release_age", False)]


def test_an_upload_through_a_group_meets_the_group_policy(live) -> None:
    """The group's deny list refuses what its upload_to repository's own policy would accept."""
    data = wheel_bytes("fw-lib", "2.0", metadata=metadata_text("fw-lib", "2.0", license_expression="MIT"))
    body, content_type = twine_form("fw_lib-2.0-py3-none-any.whl", data)
    response = requests.post(f"{live.url}/all/", data=body, headers={"Content-Type": content_type},
                             auth=("admin", live.admin_password), timeout=30)
    assert response.status_code == 400 and "deny list" in response.reason and "'all'" in response.text
    assert len(response.text.strip().splitlines()) == 1
    assert requests.get(f"{live.simple('local')}fw-lib/", timeout=30).status_code == 404


def test_a_malicious_version_leaves_a_proxy_without_a_policy_once_advisories_are_imported(
        live, client_env, tmp_path) -> None:
    code, output, python = pip(live, client_env, tmp_path, "open", "fw-mal")
    assert code == 0 and installed(python, client_env, "fw-mal") == "2.0", output
    dump = tmp_path / "osv"
    dump.mkdir()
    (dump / "MAL-2026-77.json").write_text(json.dumps({
        "id": "MAL-2026-77", "modified": "2026-11-01T00:00:00Z", "summary": "malicious code in fw-mal",
        "affected": [{"package": {"ecosystem": "PyPI", "name": "fw-mal"}, "versions": ["2.0"]}]}))
    imported = subprocess.run([sys.executable, "app.py", "advisories", "import", str(dump)], env=live.env, cwd=ROOT,
                              capture_output=True, text=True, timeout=300)
    assert imported.returncode == 0, imported.stderr
    assert all(versions(live, "open", "fw-mal") == ["1.0"] for _ in range(4))  # every worker
    code, output, python = pip(live, client_env, tmp_path, "open", "fw-mal")
    assert code == 0 and installed(python, client_env, "fw-mal") == "1.0", output
    code, output, _ = pip(live, client_env, tmp_path, "open", "fw-mal==2.0")
    assert code != 0 and "from versions: 1.0)" in output
