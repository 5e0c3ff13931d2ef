"""The web layer: one blueprint per URL family, wired with the per-request database connection, the request
metrics and the rules every request meets (body size, cross-site writes, JSON to the API), behind the memo of
answers given before."""

from __future__ import annotations

from time import perf_counter

import peewee as pw
from flask import Flask, Response

from pypilite import loops
from pypilite.database import database, release_connection
from pypilite.errors import DatabaseUnavailable
from pypilite.services import Services
from pypilite.web import account, api, crosssite, errors, files, maintainers, ops, pypijson, simple, ui, upload
from pypilite.web.context import PAGES, SERVICES
from pypilite.web.memo import Memo
from pypilite.web.pagecache import PageCache
from pypilite.web.wrappers import MAX_BODY, MAX_FORM_MEMORY, PypiliteRequest, current_request, request


def build_app(services: Services) -> Flask:
    """The Flask app over opened services: its blueprints, its per-request rules and the memo in front."""
    app = Flask("pypilite", template_folder="web/templates")
    app.config.update(
        MAX_CONTENT_LENGTH=services.config.max_upload_bytes + MAX_FORM_MEMORY,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY,
    )
    app.extensions[SERVICES] = services
    app.extensions[PAGES] = PageCache()
    register(app)
    return app


def register(app: Flask) -> None:
    app.request_class = PypiliteRequest
    app.url_map.converters["repository"] = ui.RepositoryName
    for blueprint in (ops.bp, api.bp, simple.bp, pypijson.bp, files.bp, upload.bp, ui.bp, account.bp,
                      maintainers.bp):
        app.register_blueprint(blueprint)
    errors.register(app)
    metrics = app.extensions[SERVICES].metrics
    public_url = app.extensions[SERVICES].config.server.public_url
    loop_marker = app.extensions[SERVICES].loop_marker

    # Each hook goes through the context-local request proxy once (why: bench/README.md).
    @app.before_request
    def _connect() -> None:
        current = current_request()
        current.started = perf_counter()
        try:
            database.connect(reuse_if_open=True)
        except pw.OperationalError:
            if current.endpoint != "ops.health":  # which names the failing part itself
                raise DatabaseUnavailable() from None

    # Before any view reads a byte of the body, whatever the route: one written later is covered too.
    @app.before_request
    def _guard() -> None:
        current = current_request()
        loops.refuse_own(current.headers.get(loops.HEADER), loop_marker)
        crosssite.refuse_cross_site_write(current, public_url)
        if current.blueprint != upload.bp.name:  # uploads keep their own, larger limit
            current.limit_body(MAX_BODY)
        crosssite.require_json_api_body(current)

    @app.after_request
    def _count(response: Response) -> Response:
        current = current_request()
        started = getattr(current, "started", None)
        if started is not None:
            metrics.request(current.endpoint, current.method, response.status_code, perf_counter() - started)
        return response

    @app.teardown_request
    def _close(_exc: BaseException | None) -> None:
        request.discard_temp_blobs()
        release_connection()

    app.wsgi_app = Memo(app.wsgi_app, metrics)  # type: ignore[method-assign]
