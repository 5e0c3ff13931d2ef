"""pypilite: a private Python package index on one box."""

from __future__ import annotations

__version__ = "0.1.0"

import fcntl  # noqa: E402  (the version comes first: submodules import it)
import ipaddress  # noqa: E402
import logging  # noqa: E402
import shutil  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from pathlib import Path  # noqa: E402

from flask import Flask  # noqa: E402

from pypilite import locks, loops, models  # noqa: E402
from pypilite.auth import Authenticator  # noqa: E402
from pypilite.config import Config, ConfigError, load_config  # noqa: E402
from pypilite.errors import UserError  # noqa: E402
from pypilite.metrics import Metrics  # noqa: E402
from pypilite.repositories import Repositories  # noqa: E402
from pypilite.repositories.manage import ensure_configured  # noqa: E402
from pypilite.storage import BlobStore  # noqa: E402
from pypilite.users import ensure_initial_admin  # noqa: E402
from pypilite.web import register  # noqa: E402
from pypilite.web.context import Services  # noqa: E402
from pypilite.web.pagecache import PageCache  # noqa: E402
from pypilite.web.wrappers import MAX_FORM_MEMORY  # noqa: E402


log = logging.getLogger(__name__)


class StartupError(Exception):
    """pypilite cannot start; the message says why in one line."""


def create_app(config: Config | None = None) -> Flask:
    """Wire config, database, blob store, repositories and blueprints; prepare the data dir once."""
    try:
        config = config or load_config()
        data_dir = config.data_dir
        data_dir.mkdir(parents=True, exist_ok=True)
        blobs = BlobStore(data_dir, min_free=config.min_free_bytes)
        models.bind(models.make_database(config.database.url, data_dir))
        with _startup_lock(data_dir), models.database.connection_context():
            blobs.sweep_temp()  # what uploads and downloads killed with their process left behind
            locks.sweep(data_dir / "locks")
            models.migrate(blobs)
            ensure_configured(config.repositories)
            ensure_initial_admin(data_dir)
            etag_key = models.etag_key()
            _remove_public_tree(data_dir)
        models.close_pool()
    except (ConfigError, models.SchemaError) as exc:
        raise StartupError(str(exc)) from None
    except UserError as exc:
        raise StartupError(f"configured repositories: {exc.message}") from None
    except OSError as exc:
        raise StartupError(f"data dir {config.storage.data_dir!r}: {exc.strerror or exc}") from None

    _warn_if_reachable_past_the_proxy(config)
    app = Flask(__name__, template_folder="web/templates")
    app.config.update(
        MAX_CONTENT_LENGTH=config.max_upload_bytes + MAX_FORM_MEMORY,
        MAX_FORM_MEMORY_SIZE=MAX_FORM_MEMORY,
    )
    metrics = Metrics()
    loop_marker = loops.marker(etag_key)
    repositories = Repositories(blobs, etag_key, locks=data_dir / "locks", metrics=metrics,
                                max_upstream_page_bytes=config.max_upstream_page_bytes,
                                upstream_headers={loops.HEADER: loop_marker})
    app.extensions["pypilite"] = Services(config=config, blobs=blobs, repositories=repositories,
                                          authenticator=Authenticator(on_failure=metrics.failed_login),
                                          pages=PageCache(), metrics=metrics,
                                          loop_marker=loop_marker)
    register(app)
    return app


def _warn_if_reachable_past_the_proxy(config: Config) -> None:
    """Behind nginx (x_accel_redirect set), a port open to other machines lets clients go around it: past its
    buffering, and to downloads it would have sent."""
    if not config.server.x_accel_redirect:
        return
    try:
        local = ipaddress.ip_address(config.server.host).is_loopback
    except ValueError:
        local = config.server.host == "localhost"
    if not local:
        log.warning("server.host is %s while x_accel_redirect is set: clients can reach pypilite past the reverse "
                    "proxy; set server.host = \"127.0.0.1\"", config.server.host)


def _remove_public_tree(data_dir: Path) -> None:
    """Older versions kept links to public files in `public/` for nginx to send without asking; nothing
    updates them any more, so an older nginx site must not find them."""
    if (data_dir / "public").exists():
        shutil.rmtree(data_dir / "public")


@contextmanager
def _startup_lock(data_dir: Path) -> Iterator[None]:
    """gunicorn workers start together; one at a time migrates, seeds and creates the first admin."""
    with open(data_dir / ".startup.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
