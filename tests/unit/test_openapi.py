"""The OpenAPI description: complete (every /api/v1 route is in it), valid enough for a schema-driven fuzz
run, and that run (bounded) finds no request that makes the API answer 500."""

from __future__ import annotations

import re

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from pypilite.web.openapi import DOCUMENT
from tests.conftest import TEST_REPOSITORIES, Index
from tests.upstream import Upstream

METHODS = {"GET", "POST", "PUT", "PATCH", "DELETE"}
FUZZ_EXAMPLES = 100


def test_every_api_route_is_described(index: Index) -> None:
    described = {(path, method.upper()) for path, operations in DOCUMENT["paths"].items() for method in operations}
    routes = set()
    for rule in index.app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1"):
            continue
        path = re.sub(r"<(?:[^:>]+:)?([^>]+)>", r"{\1}", rule.rule)
        routes |= {(path, method) for method in rule.methods & METHODS}
    assert routes and routes == described


def test_the_description_is_served(index: Index) -> None:
    response = index.client.get("/api/v1/openapi.json")
    assert response.status_code == 200 and response.json["openapi"].startswith("3.1")


def test_fuzz_finds_no_server_error(tmp_path) -> None:
    """Every operation, with bodies and parameters generated from the description, as the global admin (so
    requests get past authentication); bounded by the example count, well under a minute. The proxy has an
    upstream that knows no project, so an honest 502 for an unreachable upstream is not what is counted."""
    upstream = Upstream(tmp_path / "upstream", [], json_api=True).start()
    try:
        repositories = [{**r, "remote_url": upstream.url} if r["repository_type"] == "proxy" else r
                        for r in TEST_REPOSITORIES]
        index = Index(tmp_path / "data", {"repository": repositories})
        index.client  # binds the database for the calls schemathesis makes straight into the app
        schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", index.app)
        operations = [result.ok() for result in schema.get_all_operations()]
        # schemathesis leaves out the operation that serves the description itself
        assert len(operations) == sum(len(methods) for methods in DOCUMENT["paths"].values()) - 1
        for operation in operations:
            _fuzz(operation, index.auth)
    finally:
        upstream.stop()


def _fuzz(operation, auth: dict[str, str]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def no_server_error(case) -> None:
        case.call_and_validate(headers=auth, checks=[not_a_server_error])

    no_server_error()
