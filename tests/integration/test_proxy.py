"""Proxy repositories against local upstreams (a static PEP 503 tree and a PEP 691 JSON index), with the
real pip and uv: install through the proxy, keep installing when the upstream is gone, refuse bytes the
upstream did not vouch for, revalidate old pages, and download a file once however many ask."""

from __future__ import annotations

import hashlib
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests

from tests.integration.conftest import LiveServer, new_venv, run, start_server, stop_server, uv
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
TTL_SHORT = 1


def corpus():
    return [wheel("upstream-lib", "1.0"), wheel("upstream-lib", "2.0", requires_python=">=3.8"),
            wheel("upstream-app", "1.0", requires=("upstream-lib>=2",)),
            wheel("parallel-pkg", "1.0"), wheel("broken-pkg", "1.0"), wheel("only-json", "1.0"),
            wheel("never-asked", "1.0"), wheel("static-only", "1.0"), wheel("drifting", "1.0")]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    tmp = tmp_path_factory.mktemp("upstreams")
    found = {"json": Upstream(tmp / "json", corpus(), json_api=True).start(),
             "static": Upstream(tmp / "static", corpus(), json_api=False).start()}
    yield found
    for upstream in found.values():
        upstream.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def proxy(request: pytest.FixtureRequest, upstreams, tmp_path_factory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"proxy-{request.param}")
    repositories = [
        {"name": "local", "repository_type": "hosted"},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstreams["json"].url, "remote_timeout": 2},
        {"name": "html", "repository_type": "proxy", "remote_url": upstreams["static"].url,
         "cache_ttl": TTL_SHORT, "remote_timeout": 2},
        {"name": "fast", "repository_type": "proxy", "remote_url": upstreams["json"].url,
         "cache_ttl": TTL_SHORT, "remote_timeout": 2},
        {"name": "all", "repository_type": "group", "members": ["local", "pypi"], "upload_to": "local"},
    ]
    server = start_server(request.param, tmp, repositories)
    server.repositories = repositories  # type: ignore[attr-defined]
    yield server
    stop_server(server.process)


def page(server: LiveServer, repo: str, project: str) -> requests.Response:
    return requests.get(f"{server.simple(repo)}{project}/", headers={"Accept": JSON}, timeout=30)


def pip_install(server: LiveServer, env, tmp_path: Path, repo: str, *requirements: str):
    python = new_venv(tmp_path / f"venv-{repo}-{time.monotonic_ns()}", env)
    return run([python, "-m", "pip", "install", "--index-url", server.simple(repo), *requirements],
               env=env, check=False)


def test_pip_installs_through_the_proxy_with_links_rewritten(proxy, upstreams, client_env, tmp_path) -> None:
    result = pip_install(proxy, client_env, tmp_path, "all", "upstream-app")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "upstream-lib-2.0" in result.stdout.replace("_", "-")
    body = page(proxy, "pypi", "upstream-lib").json()
    assert {f["url"].split("/files/")[0] for f in body["files"]} == {"../.."}  # /pypi/files/pypi/…
    assert all(f["url"].startswith("../../files/pypi/") for f in body["files"])
    assert all(upstreams["json"].url.split("/simple/")[0] not in f["url"] for f in body["files"])
    newest = body["files"][-1]
    assert (newest["requires-python"], newest["size"], newest["upload-time"]) == (
        ">=3.8", len(upstreams["json"].dists[1].data), "2024-05-06T07:08:09.123456Z")
    assert newest["core-metadata"]["sha256"] == hashlib.sha256(upstreams["json"].dists[1].metadata).hexdigest()


def test_uv_installs_through_a_static_html_upstream(proxy, upstreams, client_env, tmp_path) -> None:
    venv = tmp_path / "uv-venv"
    run([uv(), "venv", "--python", sys.executable, venv], env=client_env)
    run([uv(), "pip", "install", "--python", venv / "bin" / "python", "--index-url", proxy.simple("html"),
         "static-only"], env=client_env)
    body = page(proxy, "html", "static-only").json()
    [file] = body["files"]
    assert file["url"].startswith("../../files/html/") and file["size"] > 0  # learned on download


def test_metadata_is_served_and_matches(proxy, upstreams) -> None:
    url = f"{proxy.simple('pypi')}upstream-lib/"
    file = page(proxy, "pypi", "upstream-lib").json()["files"][0]
    metadata = requests.get(requests.compat.urljoin(url, file["url"]) + ".metadata", timeout=30)
    assert metadata.status_code == 200
    assert hashlib.sha256(metadata.content).hexdigest() == file["core-metadata"]["sha256"]


def test_never_fetched_project_with_the_upstream_down_is_502(proxy, upstreams) -> None:
    upstreams["json"].stop()
    try:
        response = page(proxy, "pypi", "never-asked")
        assert response.status_code in (502, 504)
        assert response.text.count("\n") == 1 and "not cached" in response.text
    finally:
        upstreams["json"].start()


def test_install_keeps_working_with_the_upstream_stopped(proxy, upstreams, client_env, tmp_path) -> None:
    first = pip_install(proxy, client_env, tmp_path, "fast", "upstream-app")
    assert first.returncode == 0, first.stderr
    upstreams["json"].stop()
    try:
        time.sleep(TTL_SHORT + 0.5)  # the pages are now older than the TTL: revalidation fails, cache serves
        stale = page(proxy, "fast", "upstream-lib")
        assert stale.status_code == 200 and "X-Pypilite-Stale" in stale.headers
        again = pip_install(proxy, client_env, tmp_path, "fast", "upstream-app")
        assert again.returncode == 0, again.stdout + again.stderr
    finally:
        upstreams["json"].start()


def test_old_page_is_revalidated_with_a_conditional_request(proxy, upstreams) -> None:
    for kind, repo, project, validator in (("json", "fast", "only-json", "If-None-Match"),
                                           ("static", "html", "drifting", "If-Modified-Since")):
        log = upstreams[kind].log
        assert page(proxy, repo, project).status_code == 200
        asked = log.count(f"/simple/{project}/")
        time.sleep(TTL_SHORT + 0.5)
        assert page(proxy, repo, project).status_code == 200
        assert log.count(f"/simple/{project}/") == asked + 1
        assert validator in log.conditional(f"/simple/{project}/")[-1]


def test_fresh_page_is_served_without_asking(proxy, upstreams) -> None:
    log = upstreams["json"].log
    page(proxy, "pypi", "upstream-lib")
    asked = log.count("/simple/upstream-lib/")
    for _ in range(5):
        assert page(proxy, "pypi", "upstream-lib").status_code == 200
    assert log.count("/simple/upstream-lib/") == asked


def test_corrupted_upstream_file_is_refused_and_not_kept(proxy, upstreams, client_env, tmp_path) -> None:
    [dist] = [d for d in upstreams["json"].dists if d.project == "broken-pkg"]
    upstreams["json"].corrupt.add(dist.filename)
    try:
        result = pip_install(proxy, client_env, tmp_path, "pypi", "broken-pkg")
        assert result.returncode != 0
        file = page(proxy, "pypi", "broken-pkg").json()["files"][0]
        url = requests.compat.urljoin(f"{proxy.simple('pypi')}broken-pkg/", file["url"])
        with pytest.raises(requests.RequestException):
            requests.get(url, timeout=30).raise_for_status()
        assert not list(proxy.data_dir.glob(f"blobs/*/*/{dist.sha256}"))
        assert list((proxy.data_dir / "tmp").glob("upload-*")) == []
    finally:
        upstreams["json"].corrupt.clear()
    repaired = requests.get(url, timeout=30)
    assert repaired.status_code == 200 and hashlib.sha256(repaired.content).hexdigest() == dist.sha256


def test_parallel_requests_for_one_uncached_file_download_it_once(proxy, upstreams) -> None:
    [dist] = [d for d in upstreams["json"].dists if d.project == "parallel-pkg"]
    file = page(proxy, "pypi", "parallel-pkg").json()["files"][0]
    url = requests.compat.urljoin(f"{proxy.simple('pypi')}parallel-pkg/", file["url"])
    before = upstreams["json"].log.count(f"/files/{dist.filename}")
    with ThreadPoolExecutor(max_workers=20) as pool:
        bodies = list(pool.map(lambda _: requests.get(url, timeout=60).content, range(20)))
    assert all(hashlib.sha256(body).hexdigest() == dist.sha256 for body in bodies)
    assert upstreams["json"].log.count(f"/files/{dist.filename}") == before + 1


def test_cache_survives_a_restart_with_the_upstream_down(proxy, upstreams, client_env, tmp_path) -> None:
    first = pip_install(proxy, client_env, tmp_path, "pypi", "upstream-app")
    assert first.returncode == 0, first.stderr
    upstreams["json"].stop()
    mode = "gunicorn" if "gunicorn" in " ".join(proxy.process.args) else "app"
    restarted = None
    try:
        stop_server(proxy.process)
        restarted = start_server(mode, tmp_path, proxy.repositories, data_dir=proxy.data_dir)
        again = pip_install(restarted, client_env, tmp_path, "pypi", "upstream-app")
        assert again.returncode == 0, again.stdout + again.stderr
        assert requests.get(restarted.simple("pypi"), headers={"Accept": JSON}, timeout=10).json()["projects"]
    finally:
        if restarted is not None:
            proxy.url, proxy.process = restarted.url, restarted.process
        upstreams["json"].start()


def test_refresh_and_forget_from_the_command_line(proxy, upstreams, tmp_path) -> None:
    from tests.integration.conftest import ROOT, isolated_env
    page(proxy, "pypi", "upstream-lib")
    env = isolated_env(tmp_path / "cli-home", PYPILITE_STORAGE_DATA_DIR=str(proxy.data_dir))
    config = next(proxy.data_dir.parent.glob("pypilite-*.toml"))
    asked = upstreams["json"].log.count("/simple/upstream-lib/")
    run([sys.executable, "app.py", "cache", "refresh", "pypi", "upstream-lib", "--config", config], env=env, cwd=ROOT)
    assert upstreams["json"].log.count("/simple/upstream-lib/") == asked + 1
    run([sys.executable, "app.py", "cache", "forget", "pypi", "upstream-lib", "--config", config], env=env, cwd=ROOT)
    names = [p["name"] for p in requests.get(proxy.simple("pypi"), headers={"Accept": JSON}, timeout=10)
             .json()["projects"]]
    assert "upstream-lib" not in names
