"""The web layer: one blueprint per URL family, wired with the per-request database connection."""

from __future__ import annotations

import threading

from flask import Flask, request

from pypilite.models import database
from pypilite.web import api, errors, files, ops, simple, ui, upload
from pypilite.web.wrappers import PypiliteRequest


def register(app: Flask) -> None:
    app.request_class = PypiliteRequest
    for blueprint in (ops.bp, api.bp, simple.bp, files.bp, upload.bp, ui.bp):
        app.register_blueprint(blueprint)
    errors.register(app)

    @app.before_request
    def _connect() -> None:
        database.connect(reuse_if_open=True)

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
