"""The web layer: one blueprint per URL family, wired with the per-request database connection and the
request metrics."""

from __future__ import annotations

from time import perf_counter

from flask import Flask, Response, g, request

from pypilite.models import database
from pypilite.web import api, errors, files, ops, simple, upload
from pypilite.web.wrappers import PypiliteRequest


def register(app: Flask) -> None:
    app.request_class = PypiliteRequest
    for blueprint in (ops.bp, api.bp, simple.bp, files.bp, upload.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    metrics = app.extensions["pypilite"].metrics

    @app.before_request
    def _connect() -> None:
        g.started = perf_counter()
        database.connect(reuse_if_open=True)

    @app.after_request
    def _count(response: Response) -> Response:
        started = g.get("started")
        if started is not None:
            metrics.request(request.endpoint, request.method, response.status_code, perf_counter() - started)
        return response

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        request.discard_temp_blobs()
        if not database.is_closed():
            database.close()
