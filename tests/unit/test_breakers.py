"""The upstream's circuit breaker and a proxy's offline switch, in-process against a loopback upstream: after a
failure the cache is served without asking the upstream, an uncached name is refused at once, one request
probes after the back-off and its success closes the breaker; offline, nothing is asked upstream."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pypilite.audit import Actor
from pypilite.breakers import HALF_OPEN, MAX_BACKOFF_FACTOR, OPEN, Breaker, summary
from pypilite.config import RepositoryConfig, build_config
from pypilite.errors import UserError
from pypilite.metrics import Metrics
from pypilite.repository_admin import config_drift, refresh_cached_project, update_repository
from pypilite.upstream import UpstreamError
from tests.conftest import Index
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"
STALE = "X-Pypilite-Stale"


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    server = Upstream(tmp_path / "upstream", [wheel("demo", "1.0"), wheel("other", "1.0")], json_api=True).start()
    yield server
    server.delay = 0
    server.stop()


def proxy_index(tmp_path: Path, upstream: Upstream, backoff: int = 30, **settings: object) -> Index:
    proxy = {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1,
             "cache_ttl": 0, **settings}
    return Index(tmp_path / "data", {"repository": [{"name": "local", "repository_type": "hosted"}, proxy,
                                                    {"name": "all", "repository_type": "group",
                                                     "members": ["local", "pypi"], "upload_to": "local"}],
                                     "server": {"default_repository": "pypi", "upstream_backoff": backoff}})


def asked(upstream: Upstream) -> int:
    return len(upstream.log.requests)


def file_url(index: Index, project: str) -> str:
    return "/" + index.get(f"/pypi/simple/{project}/", accept=JSON).json["files"][0]["url"].lstrip("./")


def test_a_hung_upstream_is_waited_for_once_then_the_cache_is_served_at_once(tmp_path, upstream, caplog) -> None:
    index = proxy_index(tmp_path, upstream)
    fresh = index.get("/pypi/simple/demo/", accept=JSON)
    other_file = file_url(index, "other")
    upstream.delay = 3  # accepts, never answers within remote_timeout
    first = index.get("/pypi/simple/demo/", accept=JSON)
    assert first.status_code == 200 and first.json == fresh.json and "did not answer" in first.headers[STALE]
    before = asked(upstream)
    for _ in range(3):
        again = index.get("/pypi/simple/demo/", accept=JSON)
        assert again.status_code == 200 and again.json == fresh.json
        assert "asked again in" in again.headers[STALE]
    uncached = index.get("/pypi/simple/newer/")
    assert uncached.status_code == 504 and uncached.get_data(as_text=True).count("\n") == 1
    assert "'newer' is not cached" in uncached.get_data(as_text=True)
    refused = index.get(other_file)
    assert refused.status_code == 504 and "asked again in" in refused.get_data(as_text=True)
    assert asked(upstream) == before  # none of them went to the upstream
    logged = [record.getMessage() for record in caplog.records if record.levelname == "WARNING"]
    assert sum("breaker open" in line for line in logged) == 1
    assert sum("serving the page fetched" in line for line in logged) == 1  # the first request's, not one each


def test_after_the_back_off_one_request_probes_and_a_success_closes_the_breaker(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream, backoff=1)
    fresh = index.get("/pypi/simple/demo/", accept=JSON)
    upstream.fail_status = 503
    assert STALE in index.get("/pypi/simple/demo/", accept=JSON).headers
    before = asked(upstream)
    assert STALE in index.get("/pypi/simple/demo/", accept=JSON).headers
    assert asked(upstream) == before
    upstream.fail_status = None
    upstream.dists.append(wheel("demo", "2.0"))
    time.sleep(1.2)  # the back-off passes
    probed = index.get("/pypi/simple/demo/", accept=JSON)
    assert probed.status_code == 200 and STALE not in probed.headers
    assert probed.json["versions"] == ["1.0", "2.0"] != fresh.json["versions"]
    assert list((index.data_dir / "breakers").glob("*.json")) == []


def test_a_bad_answer_from_a_live_upstream_opens_nothing(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    assert index.get("/pypi/simple/missing/").status_code == 404
    upstream.redirects["/simple/demo/"] = "ftp://elsewhere/"
    assert index.get("/pypi/simple/demo/").status_code == 502
    upstream.redirects.clear()
    assert index.get("/pypi/simple/demo/").status_code == 200


def test_a_back_off_of_zero_asks_the_upstream_every_time(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream, backoff=0)
    index.get("/pypi/simple/demo/")
    upstream.fail_status = 503
    index.get("/pypi/simple/demo/")
    before = asked(upstream)
    index.get("/pypi/simple/demo/")
    assert asked(upstream) > before


def test_the_api_and_repo_list_show_the_breaker(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    shown = index.get("/api/v1/repos/pypi", headers=index.auth).json
    assert shown["upstream"] == {"breaker": "closed"} and shown["offline"] is False
    assert index.get("/health").json["upstreams_not_answering"] == 0
    upstream.stop()
    index.get("/pypi/simple/demo/")
    shown = index.get("/api/v1/repos/pypi", headers=index.auth).json["upstream"]
    assert shown["breaker"] == OPEN and shown["failures"] == 1 and 0 < shown["retry_in"] <= 30
    assert "is unreachable" in shown["reason"] and "127.0.0.1" not in shown["reason"]
    assert "The upstream is not answering" in index.get("/ui/pypi/").get_data(as_text=True)
    health = index.get("/health")
    assert health.status_code == 200 and health.json["upstreams_not_answering"] == 1  # the node itself serves


def breaker(tmp_path: Path, backoff: float = 10) -> Breaker:
    return Breaker(tmp_path / "breakers", tmp_path / "locks", "pypi", ("upstream.test", 443), backoff, 5, Metrics())


def test_the_back_off_doubles_while_failures_go_on_and_is_capped(tmp_path) -> None:
    subject = breaker(tmp_path)
    down = UpstreamError("upstream of repository 'pypi' is unreachable", down=True)
    waits = []
    for _ in range(8):
        subject.failed(down)
        state = subject.state()
        assert state is not None
        waits.append(round(state.retry_at - time.time()))
        subject.failed(down)  # while open, another failure adds nothing
        assert subject.state().failures == state.failures
        subject._write(state.__class__(state.failures, time.time() - 1, state.reason, state.timeout))
    assert waits == [10, 20, 40, 80, 160, 160, 160, 160] and MAX_BACKOFF_FACTOR == 16


def test_half_open_lets_one_probe_through(tmp_path) -> None:
    subject = breaker(tmp_path)
    subject.failed(UpstreamError("slow", timeout=True))
    refused = subject.refusal()
    assert refused is not None and refused.timeout
    state = subject.state()
    subject._write(state.__class__(state.failures, time.time() - 1, state.reason, state.timeout))
    assert summary(subject.state())["breaker"] == HALF_OPEN
    assert subject.refusal() is None  # the probe
    assert "being asked again" in str(subject.refusal())  # everyone else, meanwhile
    subject.succeeded()
    assert subject.state() is None and subject.refusal() is None


def test_a_bad_answer_is_no_failure(tmp_path) -> None:
    subject = breaker(tmp_path)
    subject.failed(UpstreamError("sent a page that cannot be parsed"))
    assert subject.state() is None


def test_an_unreadable_state_counts_as_closed(tmp_path) -> None:
    subject = breaker(tmp_path)
    subject.path.parent.mkdir(parents=True)
    subject.path.write_text(json.dumps({"failures": "many"}))
    assert subject.refusal() is None


def test_offline_serves_the_cache_alone(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream)
    fresh = index.get("/pypi/simple/demo/", accept=JSON)
    cached_file = file_url(index, "demo")
    assert index.get(cached_file).status_code == 200
    uncached_file = file_url(index, "other")
    index.run(update_repository, "pypi", {"offline": True}, Actor("test", "local"))
    before = asked(upstream)

    page = index.get("/pypi/simple/demo/", accept=JSON)
    assert page.status_code == 200 and page.json == fresh.json and "is offline" in page.headers[STALE]
    assert index.get(cached_file).status_code == 200
    missing = index.get("/pypi/simple/newer/")
    assert missing.status_code == 404 and missing.get_data(as_text=True).count("\n") == 1
    assert "repository 'pypi' is offline" in missing.get_data(as_text=True)
    missing_file = index.get(uncached_file)
    assert missing_file.status_code == 404 and "is offline" in missing_file.get_data(as_text=True)
    repositories = index.app.extensions["pypilite"].repositories
    with pytest.raises(UserError, match="is offline"):
        index.run(refresh_cached_project, repositories, "pypi", "demo", Actor("test", "local"))
    assert asked(upstream) == before

    index.upload("mine-1.0-py3-none-any.whl", wheel("mine", "1.0").data)
    assert index.get("/all/simple/mine/").status_code == 200  # the group still serves its hosted member
    assert index.get("/all/simple/newer/").status_code == 404
    assert index.get("/api/v1/repos/pypi", headers=index.auth).json["offline"] is True
    assert "Offline: this proxy serves only" in index.get("/ui/pypi/").get_data(as_text=True)
    assert 'id="upstream"' not in index.get("/ui/local/").get_data(as_text=True)


def test_offline_is_a_config_key_and_its_drift_is_reported(tmp_path, upstream) -> None:
    index = proxy_index(tmp_path, upstream, offline=True)
    before = asked(upstream)
    assert index.get("/pypi/simple/demo/").status_code == 404
    assert asked(upstream) == before
    config = build_config({"repository": [{"name": "pypi", "repository_type": "proxy", "offline": False}]}, {})
    [line] = config_drift(config.repositories, config.written,
                          {"pypi": RepositoryConfig("pypi", "proxy", offline=True)})
    assert "offline = false" in line and "repo update pypi --offline false" in line


def test_proxies_of_one_upstream_share_its_breaker_and_no_name_crosses(tmp_path, upstream) -> None:
    """A failure met by a private proxy opens the breaker of a public proxy of the same upstream host; what the
    public one's readers are told names their repository alone."""
    hidden = {"name": "hidden", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1,
              "public": False}
    index = Index(tmp_path / "data", {"repository": [
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1}, hidden],
        "server": {"default_repository": "pypi"}})
    upstream.delay = 3
    assert index.get("/hidden/simple/demo/", headers=index.auth).status_code == 504
    before = asked(upstream)
    refused = index.get("/pypi/simple/demo/")
    assert refused.status_code == 504 and asked(upstream) == before
    text = refused.get_data(as_text=True)
    assert "repository 'pypi'" in text and "hidden" not in text
    assert "hidden" not in index.get("/api/v1/repos/pypi", headers=index.auth).json["upstream"]["reason"]


def test_a_wheel_fetched_without_its_metadata_serves_that_too_without_the_upstream(tmp_path, upstream) -> None:
    """A client that downloaded the wheel alone (no PEP 658 request) leaves the proxy its METADATA, the same bytes
    as the upstream's declared .metadata: a resolve while the upstream hangs reads it from the cache."""
    index = proxy_index(tmp_path, upstream)
    url = file_url(index, "demo")
    [dist] = [d for d in upstream.dists if d.filename == url.rsplit("/", 1)[1]]
    assert index.get(url).data == dist.data
    upstream.delay = 3
    assert STALE in index.get("/pypi/simple/demo/").headers  # the breaker opens
    before = asked(upstream)
    metadata = index.get(f"{url}.metadata")
    assert metadata.status_code == 200 and metadata.data == dist.metadata
    assert asked(upstream) == before
