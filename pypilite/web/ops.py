"""Operational endpoints: /health answers whether this node can serve and store right now (and warns of old
advisories); /metrics is the Prometheus scrape target. With server.public_metrics false, numbers about the
machine (free disk, every metric) are for global administrators only; whether each part is ok stays public,
for load balancers."""

from __future__ import annotations

import shutil
from typing import Any

from flask import Blueprint, Response, jsonify

from pypilite import access, advisories, breakers, maintenance
from pypilite.auth import ANONYMOUS, Principal
from pypilite.database import database
from pypilite.errors import UserError
from pypilite.metrics import CONTENT_TYPE, storage_gauges
from pypilite.models import utcnow
from pypilite.version import __version__
from pypilite.web.context import principal, services

bp = Blueprint("ops", __name__)


def _database_ok() -> bool:
    try:
        database.execute_sql("SELECT 1").fetchone()
    except Exception:  # any failure of the driver means the same: not usable
        return False
    return True


def _free_bytes() -> int | None:
    """Of the data dir's file system, where uploads are spooled (and stored, on the local backend)."""
    try:
        return shutil.disk_usage(services().config.data_dir).free
    except OSError:
        return None


@bp.get("/health")
def health() -> Response:
    floor = services().config.min_free_bytes
    free = _free_bytes()
    checks = {"database": _database_ok(), "storage": services().blobs.healthy(),
              "disk": free is not None and free >= floor}
    failing = [name for name, ok in checks.items() if not ok]
    body: dict[str, Any] = {"status": "ok" if not failing else "error", "version": __version__,
            **{name: "ok" if ok else "failing" for name, ok in checks.items()}}
    advisories_state, advisories_age = _advisories() if "database" not in failing else ("unknown", None)
    body["advisories"] = advisories_state
    if services().config.server.public_metrics or access.may_read_metrics(_caller()):
        body.update(free_bytes=free, min_free_bytes=floor,
                    upstreams_not_answering=breakers.not_closed(services().repositories.breakers),
                    advisories_age_seconds=advisories_age)
    if failing:
        body["failing"] = failing
    if advisories_state == "stale":  # a warning: the node still serves and stores
        body["warnings"] = ["advisories"]
    response = jsonify(body)
    response.status_code = 503 if failing else 200
    response.headers["Cache-Control"] = "no-store"
    return response


def _advisories() -> tuple[str, int | None]:
    """"none" before the first import, "stale" when older than advisories.max_age, else "ok"; and the age."""
    imported = advisories.last_import()
    if imported is None:
        return "none", None
    age = max(0, int((utcnow() - imported).total_seconds()))
    limit = services().config.advisories_max_age
    return ("stale" if limit and age > limit else "ok"), age


@bp.get("/metrics")
def metrics() -> Response:
    ctx = services()
    if not ctx.config.server.public_metrics:  # public: credentials are not even tried
        access.require_metrics_reader(principal())
    files, stored_bytes = maintenance.hosted_usage()
    body = ctx.metrics.exposition(storage_gauges(files, stored_bytes, ctx.config.data_dir))
    response = Response(body, content_type=CONTENT_TYPE)
    response.headers["Cache-Control"] = "no-store"
    return response


def _caller() -> Principal:
    """Who asks for /health: credentials that fail make it anonymous, never a 401 a load balancer would take
    for the node being down."""
    try:
        return principal()
    except UserError:
        return ANONYMOUS
