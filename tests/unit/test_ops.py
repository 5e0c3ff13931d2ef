"""/metrics and /health in-process: counters move with what happens, the gauges read the database, the
health check names each failing part."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections import namedtuple

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pypilite import tokens, users
from pypilite.audit import Actor
from pypilite.metrics import UNMATCHED
from tests.conftest import Index, basic
from tests.distfactory import sdist_bytes, wheel_bytes
from tests.upstream import Upstream, wheel

ACTOR = Actor("test", "local")


def samples(index: Index, auth: dict[str, str] | None = None) -> dict[tuple[str, frozenset], float]:
    response = index.get("/metrics", headers=auth or {})
    assert response.status_code == 200, response.get_data(as_text=True)
    assert response.content_type.startswith("text/plain; version=0.0.4")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(response.get_data(as_text=True)) for s in family.samples}


def value(found: dict, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def test_requests_count_by_endpoint_never_by_path(index: Index) -> None:
    before = samples(index)
    for project in ("a", "b", "c"):
        assert index.get(f"/local/simple/{project}/").status_code == 404
    assert index.get("/no/such/route/at/all").status_code == 404
    assert index.client.open("/local/simple/", method="BREW").status_code == 405
    after = samples(index)
    moved = {key: after[key] - before.get(key, 0.0) for key in after if after[key] != before.get(key, 0.0)}
    assert value(moved, "pypilite_http_requests_total", endpoint="simple.project_page", method="GET",
                 status="404") == 3
    assert value(moved, "pypilite_http_requests_total", endpoint=UNMATCHED, method="GET", status="404") == 1
    assert value(moved, "pypilite_http_requests_total", endpoint=UNMATCHED, method="other", status="405") == 1
    assert value(moved, "pypilite_http_request_duration_seconds_count", endpoint="simple.project_page") == 3
    # the scrape before this one counted too, under its own endpoint; no label carries a path
    assert value(moved, "pypilite_http_requests_total", endpoint="ops.metrics", method="GET", status="200") == 1
    assert not any("/" in dict(labels).get("endpoint", "") for _, labels in after)


def test_uploads_count_by_outcome_with_bytes(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"max_upload_mb": 1}})
    data = wheel_bytes("demo", "1.0")
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    assert index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0", requires_python=">=3")
                        ).status_code == 409
    assert index.upload("demo-2.0.tar.gz", b"not a tarball").status_code == 400
    assert index.upload("demo-3.0.tar.gz", b"\0" * (2 * 2**20)).status_code == 413
    found = samples(index)
    assert value(found, "pypilite_uploads_total", outcome="stored") == 1
    assert value(found, "pypilite_uploads_total", outcome="identical") == 1
    assert value(found, "pypilite_uploads_total", outcome="rejected") == 3
    assert value(found, "pypilite_upload_bytes_total", outcome="stored") == len(data)
    assert value(found, "pypilite_upload_bytes_total", outcome="identical") == len(data)


def test_stored_bytes_count_distinct_hosted_files(index: Index) -> None:
    data = sdist_bytes("demo", "1.0")
    assert index.upload("demo-1.0.tar.gz", data).status_code == 200
    index.run(_add_hosted, "copy")
    assert index.upload("demo-1.0.tar.gz", data, repo="copy").status_code == 200  # same bytes, one blob
    found = samples(index)
    assert value(found, "pypilite_hosted_files") == 1
    assert value(found, "pypilite_hosted_bytes") == len(data)
    assert value(found, "pypilite_disk_free_bytes") > 0


def _add_hosted(name: str) -> None:
    from pypilite import repository_admin
    from pypilite.config import parse_repository
    repository_admin.create_repository(parse_repository({"name": name, "repository_type": "hosted"}), ACTOR)


def test_failed_logins_count_but_good_ones_do_not(index: Index) -> None:
    assert index.get("/local/simple/", headers=basic("admin", "wrong")).status_code == 401
    assert index.get("/local/simple/", headers=basic("nobody", "x")).status_code == 401
    assert index.get("/local/simple/", headers=basic("__token__", "pypl_forged")).status_code == 401
    assert index.get("/local/simple/", headers=index.auth).status_code == 200
    assert value(samples(index), "pypilite_failed_logins_total") == 3


@pytest.fixture
def upstream(tmp_path):
    server = Upstream(tmp_path / "upstream", [wheel("demo", "1.0")], json_api=True).start()
    yield server
    server.stop()


def test_proxy_hits_misses_stale_serves_and_upstream_errors(tmp_path, upstream: Upstream) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1,
         "cache_ttl": 0}], "server": {"default_repository": "pypi"}})
    page = index.get("/pypi/simple/demo/", accept="application/vnd.pypi.simple.v1+json")
    url = "/" + page.json["files"][0]["url"].lstrip("./")
    assert index.get(url).status_code == 200
    assert index.get(url).status_code == 200
    found = samples(index)
    assert value(found, "pypilite_proxy_cache_total", kind="page", result="miss") == 1
    assert value(found, "pypilite_proxy_cache_total", kind="file", result="miss") == 1
    assert value(found, "pypilite_proxy_cache_total", kind="file", result="hit") == 1
    assert value(found, "pypilite_hosted_files") == 0  # a proxy's cache is not hosted storage

    upstream.fail_status = 503
    assert index.get("/pypi/simple/demo/").status_code == 200  # ttl 0: revalidation fails, cache served
    assert index.get("/pypi/simple/other/").status_code == 502  # at once: the breaker is open
    found = samples(index)
    assert value(found, "pypilite_proxy_cache_total", kind="page", result="stale") == 1
    assert value(found, "pypilite_proxy_upstream_errors_total", kind="page") == 1
    assert value(found, "pypilite_proxy_breaker_changes_total", change="open") == 1


def test_private_metrics_want_a_global_admin(tmp_path) -> None:
    index = Index(tmp_path / "data", {"server": {"public_metrics": False}})
    index.run(users.create_user, "dev", "dev-password", ACTOR)
    assert index.get("/metrics").status_code == 401
    assert "Basic" in index.get("/metrics").headers["WWW-Authenticate"]
    assert index.get("/metrics", headers=basic("dev", "dev-password")).status_code == 403
    _row, secret = index.run(tokens.create_token, "admin", ACTOR, read_only=True)
    assert samples(index, basic("__token__", secret))
    _row, narrowed = index.run(tokens.create_token, "admin", ACTOR, repos=("local",))
    assert index.get("/metrics", headers=basic("__token__", narrowed)).status_code == 403


def test_health_is_ok_with_room_to_spare(index: Index) -> None:
    response = index.get("/health")
    assert response.status_code == 200
    body = response.json
    assert (body["status"], body["database"], body["storage"], body["disk"]) == ("ok", "ok", "ok", "ok")
    assert body["free_bytes"] > body["min_free_bytes"] == 100 * 2**20


Usage = namedtuple("Usage", "total used free")


def test_health_fails_below_the_free_disk_floor(tmp_path, monkeypatch) -> None:
    index = Index(tmp_path / "data", {"storage": {"data_dir": str(tmp_path / "data"), "min_free_mb": 500}})
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**12, 10**12 - 400 * 2**20, 400 * 2**20))
    response = index.get("/health")
    assert response.status_code == 503
    body = response.json
    assert body["failing"] == ["disk"] and body["disk"] == "failing"
    assert (body["free_bytes"], body["min_free_bytes"]) == (400 * 2**20, 500 * 2**20)


def test_health_names_unusable_storage(index: Index, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr("tempfile.NamedTemporaryFile", broken)
    monkeypatch.setattr(shutil, "disk_usage", broken)
    response = index.get("/health")
    assert response.status_code == 503
    assert response.json["failing"] == ["storage", "disk"] and response.json["free_bytes"] is None


def test_health_names_an_unusable_database(index: Index, monkeypatch) -> None:
    def broken(*args, **kwargs):
        raise RuntimeError("database is locked")
    monkeypatch.setattr(index.database, "execute_sql", broken)
    response = index.get("/health")
    assert response.status_code == 503 and response.json["failing"] == ["database"]


@pytest.mark.parametrize("raw, words", [
    ({"storage": {"min_free_mb": -1}}, "must not be negative"),
    ({"storage": {"min_free_mb": "lots"}}, "storage.min_free_mb must be an integer"),
    ({"server": {"public_metrics": "no"}}, "server.public_metrics must be true or false"),
])
def test_bad_settings_are_named(raw, words) -> None:
    from pypilite.config import ConfigError, build_config
    with pytest.raises(ConfigError, match=words):
        build_config(raw, {})


def test_environment_switches_metrics_to_private() -> None:
    from pypilite.config import ConfigError, build_config
    assert build_config({}, {"PYPILITE_SERVER_PUBLIC_METRICS": "false"}).server.public_metrics is False
    with pytest.raises(ConfigError, match="PYPILITE_SERVER_PUBLIC_METRICS must be true or false"):
        build_config({}, {"PYPILITE_SERVER_PUBLIC_METRICS": "maybe"})


def test_a_scrape_that_meets_a_half_created_worker_file_reads_again(tmp_path, monkeypatch) -> None:
    """client_python issue 604: a worker's file exists, still empty, while a scrape reads the directory."""
    from pypilite import metrics as metrics_module
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    half_made = tmp_path / "counter_4242.db"
    half_made.write_bytes(b"")
    waits = []

    def worker_finishes(seconds: float) -> None:  # while the scrape waits, the worker's file comes to be
        waits.append(seconds)
        half_made.unlink()

    monkeypatch.setattr(metrics_module.time, "sleep", worker_finishes)
    text = metrics_module.Metrics().exposition([metrics_module.GaugeMetricFamily("pypilite_test", "t", value=1)])
    assert b"pypilite_test 1.0" in text and len(waits) == 1


FORKED_COUNTS = """
import os, sys
from pypilite import metrics
counted = metrics.Metrics()
counted.request("files.download", "GET", 200, 0.001)
child = os.fork()
if child == 0:
    counted.request("files.download", "GET", 200, 0.001)
    os._exit(0)
os.waitpid(child, 0)
print(os.getpid(), child)
sys.stdout.flush()
sys.stdout.buffer.write(counted.exposition())
"""


def test_worker_counts_keep_to_their_own_files_across_a_fork(tmp_path) -> None:
    """The process id prometheus_client names a worker's files by is pypilite's, cached: a forked child must
    get its own, or two workers would write the same file."""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    run = subprocess.run([sys.executable, "-c", FORKED_COUNTS], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    parent, child = run.stdout.splitlines()[0].split()
    assert sorted(p.name for p in tmp_path.glob("counter_*.db")) == sorted([f"counter_{parent}.db",
                                                                          f"counter_{child}.db"])
    families = {f.name: f for f in text_string_to_metric_families(run.stdout.split("\n", 1)[1])}
    [sample] = [s for s in families["pypilite_http_requests"].samples if s.name.endswith("_total")]
    assert sample.value == 2.0
