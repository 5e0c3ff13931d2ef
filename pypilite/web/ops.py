"""Operational endpoints: /health answers whether this node can serve and store right now."""

from __future__ import annotations

import tempfile

from flask import Blueprint, Response, jsonify

from pypilite import __version__
from pypilite.models import database
from pypilite.web.context import services

bp = Blueprint("ops", __name__)


def _database_ok() -> bool:
    try:
        database.execute_sql("SELECT 1").fetchone()
    except Exception:  # any failure of the driver means the same: not usable
        return False
    return True


def _storage_ok() -> bool:
    try:
        with tempfile.NamedTemporaryFile(dir=services().blobs.tmp, prefix="health-"):
            return services().blobs.root.is_dir()
    except OSError:
        return False


@bp.get("/health")
def health() -> Response:
    checks = {"database": _database_ok(), "storage": _storage_ok()}
    failing = [name for name, ok in checks.items() if not ok]
    body = {"status": "ok" if not failing else "error", "version": __version__,
            **{name: "ok" if ok else "failing" for name, ok in checks.items()}}
    if failing:
        body["failing"] = failing
    response = jsonify(body)
    response.status_code = 503 if failing else 200
    response.headers["Cache-Control"] = "no-store"
    return response
