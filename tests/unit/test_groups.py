"""Groups in-process: the guard, pass-through (also when the upstream fails), nesting, and configuration."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from pypilite.config import ConfigError, build_config
from tests.conftest import Index
from tests.distfactory import wheel_bytes
from tests.upstream import Upstream, wheel

JSON = "application/vnd.pypi.simple.v1+json"


@pytest.fixture
def upstream(tmp_path) -> Iterator[Upstream]:
    server = Upstream(tmp_path / "up", [wheel("tool", "9.0"), wheel("only-up", "1.0")], json_api=True).start()
    yield server
    server.stop()


def group_index(tmp_path, upstream: Upstream, pass_through=()) -> Index:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "pypi", "repository_type": "proxy", "remote_url": upstream.url, "remote_timeout": 1},
        {"name": "inner", "repository_type": "group", "members": ["local"], "upload_to": "local"},
        {"name": "all", "repository_type": "group", "members": ["inner", "pypi"], "upload_to": "local",
         "pass_through": list(pass_through)}]})
    assert index.upload("tool-1.0-py3-none-any.whl", wheel_bytes("tool", "1.0")).status_code == 200
    return index


def versions(index: Index, url: str) -> list[str]:
    return index.get(url, accept=JSON).json["versions"]


def test_guard_through_a_nested_group(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    assert versions(index, "/all/simple/tool/") == ["1.0"]
    assert upstream.log.count("/simple/tool/") == 0  # the upstream is not even asked
    assert versions(index, "/all/simple/only-up/") == ["1.0"]
    assert [p["name"] for p in index.get("/all/simple/", accept=JSON).json["projects"]] == ["only-up", "tool"]


def test_pass_through_merges_and_survives_a_failing_upstream(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream, pass_through=["Tool"])
    assert versions(index, "/all/simple/tool/") == ["1.0", "9.0"]
    upstream.stop()
    from pypilite.models import UpstreamPage
    index.run(lambda: UpstreamPage.delete().execute())  # forget the cache: the upstream is now simply down
    response = index.get("/all/simple/tool/", accept=JSON)
    assert response.status_code == 200 and response.json["versions"] == ["1.0"]
    assert "not cached" in response.headers["X-Pypilite-Stale"]


def test_upload_to_a_nested_group_lands_in_its_upload_to(tmp_path, upstream) -> None:
    index = group_index(tmp_path, upstream)
    assert index.upload("fresh-1.0-py3-none-any.whl", wheel_bytes("fresh", "1.0"), repo="inner").status_code == 200
    assert versions(index, "/local/simple/fresh/") == ["1.0"]


def test_group_without_upload_to_refuses_uploads(tmp_path, upstream) -> None:
    index = Index(tmp_path / "data", {"repository": [
        {"name": "local", "repository_type": "hosted"},
        {"name": "readonly", "repository_type": "group", "members": ["local"]}],
        "server": {"default_repository": "local"}})
    response = index.upload("x-1.0-py3-none-any.whl", wheel_bytes("x", "1.0"), repo="readonly")
    assert response.status_code == 400 and "upload to a hosted repository" in response.get_data(as_text=True)


def test_pass_through_names_are_normalized_and_checked() -> None:
    entry = {"name": "g", "repository_type": "group", "members": [], "pass_through": ["Foo_Bar", "foo.bar"]}
    assert build_config({"repository": [entry], "server": {"default_repository": "g"}}, {}).repositories[0] \
        .pass_through == ("foo-bar",)
    with pytest.raises(ConfigError, match="pass_through"):
        build_config({"repository": [{**entry, "pass_through": ["-bad-"]}]}, {})
    with pytest.raises(ConfigError, match="pass_through"):
        build_config({"repository": [{**entry, "pass_through": "foo"}]}, {})
