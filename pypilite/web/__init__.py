"""The web layer: one blueprint per URL family, wired with the per-request database connection and the
request metrics."""

from __future__ import annotations

import threading
from time import perf_counter

from flask import Flask, Response, request

from pypilite.models import database
from pypilite.web import api, errors, files, ops, simple, ui, upload
from pypilite.web.wrappers import PypiliteRequest


def register(app: Flask) -> None:
    app.request_class = PypiliteRequest
    for blueprint in (ops.bp, api.bp, simple.bp, files.bp, upload.bp, ui.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    metrics = app.extensions["pypilite"].metrics

    # Each pass through a context-local proxy costs about what the whole metrics update does: one pass each.
    @app.before_request
    def _connect() -> None:
        request._get_current_object().started = perf_counter()
        database.connect(reuse_if_open=True)

    @app.after_request
    def _count(response: Response) -> Response:
        current = request._get_current_object()
        started = getattr(current, "started", None)
        if started is not None:
            metrics.request(current.endpoint, current.method, response.status_code, perf_counter() - started)
        return response

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        request.discard_temp_blobs()
        if database.is_closed():
            return
        # A gunicorn sync worker answers every request on its main thread: its connection stays open for
        # the next one, never inside a transaction a failure left behind. Threads of the development server
        # come and go, and close theirs.
        if threading.current_thread() is not threading.main_thread():
            database.close()
        elif getattr(connection := database.connection(), "in_transaction", False):
            connection.rollback()
