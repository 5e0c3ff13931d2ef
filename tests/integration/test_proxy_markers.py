"""What a proxy passes on from an upstream that speaks API 1.4 (JSON, and HTML with the matching meta elements
and data- attributes): PEP 792 status, PEP 708 tracks and alternate-locations, PEP 740 provenance; the page's
api-version says what it carries. And a proxied wheel whose upstream offers no PEP 658 metadata gets it from
pypilite once the wheel is cached, so pip's next resolve does not download the wheel."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from tests.distfactory import metadata_text
from tests.integration.conftest import LiveServer, described, new_venv, run, start_server, stop_server, uv
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
PROVENANCE = json.dumps({"version": 1, "attestation_bundles": []}).encode()
INSIDE_PORT = 9  # discard: nothing may connect to a loopback port other than the upstream's own
SAID = {
    "marked": {"status": "archived", "reason": "moved to marked2",
               "tracks": ["https://elsewhere.example/simple/marked/"],
               "alternate-locations": ["https://mirror.example/simple/marked/", "/simple/marked/",
                                       "https://user:s3cret@leak.example/simple/marked/"]},
    "poisoned": {"status": "quarantined", "reason": "malware"},
    "bogus": {"status": "retired", "reason": "not a PEP 792 status"},
}


def corpus():
    marked = wheel("marked", "1.0")
    marked.provenance = PROVENANCE
    bare = wheel("bare", "1.0")
    bare.metadata = None  # the upstream offers no PEP 658 file for it
    huge = wheel("huge", "1.0")
    huge.provenance = b"[" + b" " * (2 * 1024 * 1024) + b"]"
    inside = wheel("inside", "1.0")
    inside.provenance_url = f"http://127.0.0.1:{INSIDE_PORT}/secret"  # a private address that is not the upstream
    return [marked, bare, huge, inside, wheel("poisoned", "1.0"), wheel("bogus", "1.0"), wheel("plain", "1.0")]


@pytest.fixture(scope="module")
def upstreams(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Upstream]]:
    tmp = tmp_path_factory.mktemp("upstreams")
    found = {"json": Upstream(tmp / "json", corpus(), json_api=True, said=SAID).start(),
             "html": Upstream(tmp / "html", corpus(), json_api=False, said=SAID).start()}
    yield found
    for upstream in found.values():
        upstream.stop()


@pytest.fixture(scope="module", params=["app", "gunicorn"])
def server(request: pytest.FixtureRequest, upstreams, tmp_path_factory) -> Iterator[LiveServer]:
    tmp = tmp_path_factory.mktemp(f"markers-{request.param}")
    repositories = [
        {"name": "local", "repository_type": "hosted"},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstreams["json"].url, "remote_timeout": 2},
        {"name": "html", "repository_type": "proxy", "remote_url": upstreams["html"].url, "remote_timeout": 2},
    ]
    # The access log says which files pip asked for.
    live = start_server(request.param, tmp, repositories, settings={"GUNICORN_CMD_ARGS": "--access-logfile -"})
    yield live
    stop_server(live.process)


def page(server: LiveServer, repo: str, project: str, accept: str = JSON) -> requests.Response:
    response = requests.get(f"{server.simple(repo)}{project}/", headers={"Accept": accept}, timeout=30)
    assert response.status_code == 200, response.text
    return response


def absolute(server: LiveServer, repo: str, project: str, url: str) -> str:
    return requests.compat.urljoin(f"{server.simple(repo)}{project}/", url)


@pytest.mark.parametrize("repo", ["pypi", "html"])
def test_status_tracks_and_alternate_locations_are_passed_on(server, upstreams, repo: str) -> None:
    body = page(server, repo, "marked").json()
    assert body["meta"] == {"api-version": "1.4", "tracks": ["https://elsewhere.example/simple/marked/"]}
    assert body["project-status"] == {"status": "archived", "reason": "moved to marked2"}
    # The upstream's own address ("/simple/marked/" made absolute) and credentials are never shown.
    assert body["alternate-locations"] == ["https://mirror.example/simple/marked/"]
    html = page(server, repo, "marked", "text/html").text
    assert '<meta name="pypi:repository-version" content="1.4">' in html
    assert '<meta name="pypi:project-status" content="archived">' in html
    assert '<meta name="pypi:project-status-reason" content="moved to marked2">' in html
    assert '<meta name="pypi:tracks" content="https://elsewhere.example/simple/marked/">' in html
    assert '<meta name="pypi:alternate-locations" content="https://mirror.example/simple/marked/">' in html
    assert f"127.0.0.1:{upstreams['json'].port}" not in html and f"127.0.0.1:{upstreams['html'].port}" not in html


@pytest.mark.parametrize("repo", ["pypi", "html"])
def test_provenance_is_served_from_under_the_file_url(server, upstreams, repo: str) -> None:
    (entry,) = page(server, repo, "marked").json()["files"]
    assert entry["provenance"] == entry["url"] + ".provenance"
    response = requests.get(absolute(server, repo, "marked", entry["provenance"]), timeout=30)
    assert response.status_code == 200 and response.content == PROVENANCE
    assert response.headers["Content-Type"] == "application/json"
    html = page(server, repo, "marked", "text/html").text
    assert f'data-provenance="{entry["provenance"]}"' in html
    # A file the upstream names no provenance for has none here either.
    (plain,) = page(server, repo, "plain").json()["files"]
    assert "provenance" not in plain
    assert requests.get(absolute(server, repo, "plain", plain["url"] + ".provenance"), timeout=30).status_code == 404


@pytest.mark.parametrize("repo", ["pypi", "html"])
@pytest.mark.parametrize("project, words", [
    ("huge", "sent a provenance over 1024 KB"),
    ("inside", "named a private or local address, which is never fetched"),
])
def test_a_hostile_provenance_is_refused_in_one_line(server, upstreams, repo: str, project: str, words: str) -> None:
    (entry,) = page(server, repo, project).json()["files"]
    response = requests.get(absolute(server, repo, project, entry["provenance"]), timeout=60)
    assert response.status_code == 502 and words in response.text
    assert len(response.text.strip().splitlines()) == 1 and "127.0.0.1" not in response.text


@pytest.mark.parametrize("repo", ["pypi", "html"])
def test_api_version_says_what_the_page_carries(server, repo: str) -> None:
    assert page(server, repo, "plain").json()["meta"] == {"api-version": "1.1"}
    assert '<meta name="pypi:repository-version" content="1.1">' in page(server, repo, "plain", "text/html").text
    # A status PEP 792 does not name is none said.
    body = page(server, repo, "bogus").json()
    assert "project-status" not in body and body["meta"]["api-version"] == "1.1"


@pytest.mark.parametrize("repo", ["pypi", "html"])
def test_an_upstream_quarantine_offers_no_files_even_when_its_page_lists_some(server, client_env, tmp_path,
                                                                               repo: str) -> None:
    body = page(server, repo, "poisoned").json()
    assert body["files"] == [] and body["project-status"] == {"status": "quarantined", "reason": "malware"}
    python = new_venv(tmp_path / "venv", client_env)
    result = run([python, "-m", "pip", "install", "--index-url", server.simple(repo), "poisoned"],
                 env=client_env, check=False)
    assert result.returncode != 0 and "No matching distribution found for poisoned" in result.stderr


def test_a_cached_wheel_without_upstream_metadata_gets_it_from_pypilite(server, upstreams, client_env,
                                                                        tmp_path: Path) -> None:
    bare = next(d for d in upstreams["json"].dists if d.project == "bare")
    (entry,) = page(server, "pypi", "bare").json()["files"]
    assert entry["core-metadata"] is False
    python = new_venv(tmp_path / "venv", client_env)
    install = [python, "-m", "pip", "install", "--no-cache-dir", "--index-url", server.simple("pypi"), "bare"]
    run(install, env=client_env)
    # Taken out of the cached wheel once, after pip had its last byte.
    info = described(server, bare.sha256)
    assert info == hashlib.sha256(metadata_text("bare", "1.0").encode()).hexdigest()
    (entry,) = page(server, "pypi", "bare").json()["files"]
    assert entry["core-metadata"] == {"sha256": info}
    assert f'data-core-metadata="sha256={info}"' in page(server, "pypi", "bare", "text/html").text
    metadata = requests.get(absolute(server, "pypi", "bare", entry["url"] + ".metadata"), timeout=30)
    assert metadata.status_code == 200 and hashlib.sha256(metadata.content).hexdigest() == info
    assert metadata.content.startswith(b"Metadata-Version:") and b"Name: bare" in metadata.content
    # The next resolve (a lock: uv pip compile, without a cache) reads the metadata and downloads no wheel.
    asked_before = _wheel_requests(server, bare.filename)
    assert asked_before >= 1  # pip downloaded it once, and the log says so
    (tmp_path / "requirements.in").write_text("bare\n")
    result = run([uv(), "pip", "compile", "--no-cache", "--index-url", server.simple("pypi"),
                  str(tmp_path / "requirements.in")], env=client_env)
    assert "bare==1.0" in result.stdout
    time.sleep(0.5)  # the access log line follows the answer
    assert _wheel_requests(server, bare.filename) == asked_before
    assert _wheel_requests(server, bare.filename + ".metadata") > 0


def _wheel_requests(server: LiveServer, filename: str) -> int:
    """How many times the server was asked for the wheel itself (not its .metadata), by its access log."""
    return len(re.findall(rf'"GET /pypi/files/pypi/[0-9a-f]{{64}}/{re.escape(filename)} HTTP', server.log.read_text()))
