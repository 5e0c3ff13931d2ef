"""The composition root: a data dir opened, migrated and seeded, and the services wired on it. The web app
(pypilite.create_app) and every CLI command start here; nothing in it knows HTTP."""

from __future__ import annotations

import fcntl
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from pypilite import locks, loops, migrations, models
from pypilite.auth import Authenticator
from pypilite.config import Config, ConfigError
from pypilite.database import bind, close_pool, database, make_database
from pypilite.errors import UserError
from pypilite.metrics import Metrics
from pypilite.repositories import Repositories
from pypilite.repository_admin import ensure_configured
from pypilite.storage import BlobStore, LocalBlobStore
from pypilite.users import ensure_initial_admin


class StartupError(Exception):
    """pypilite cannot start; the message says why in one line."""


@dataclass(frozen=True)
class Services:
    config: Config
    blobs: BlobStore
    repositories: Repositories
    authenticator: Authenticator
    metrics: Metrics
    loop_marker: str  # what this index's own upstream requests carry (pypilite/loops.py)


def open_services(config: Config) -> Services:
    """The data dir prepared (`prepare_data_dir`) and the blob store, repositories and authenticator wired on
    it; StartupError says what stands in the way."""
    blobs, etag_key = prepare_data_dir(config)
    data_dir = config.data_dir
    metrics = Metrics()
    loop_marker = loops.marker(etag_key)
    repositories = Repositories(blobs, etag_key, locks=data_dir / "locks", metrics=metrics,
                                max_upstream_page_bytes=config.max_upstream_page_bytes,
                                upstream_headers={loops.HEADER: loop_marker}, breakers=data_dir / "breakers",
                                upstream_backoff=config.server.upstream_backoff)
    return Services(config=config, blobs=blobs, repositories=repositories,
                    authenticator=Authenticator(on_failure=metrics.failed_login), metrics=metrics,
                    loop_marker=loop_marker)


def prepare_data_dir(config: Config) -> tuple[BlobStore, bytes]:
    """Prepare the data dir once (sweep, migrate, seed the configured repositories and the first admin), with
    no connection left open: a gunicorn master does this before it forks its workers."""
    data_dir = config.data_dir
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        blobs = open_blob_store(config)
        bind(make_database(config.database.url, data_dir))
        with _startup_lock(data_dir), database.connection_context():
            blobs.sweep_temp()  # what uploads and downloads killed with their process left behind
            locks.sweep(data_dir / "locks")
            migrations.migrate(blobs)
            ensure_configured(config.repositories)
            ensure_initial_admin(data_dir)
            etag_key = models.etag_key()
            _remove_public_tree(data_dir)
        close_pool()
    except (ConfigError, migrations.SchemaError) as exc:
        raise StartupError(str(exc)) from None
    except UserError as exc:
        raise StartupError(f"configured repositories: {exc.message}") from None
    except OSError as exc:
        raise StartupError(f"data dir {config.storage.data_dir!r}: {exc.strerror or exc}") from None
    return blobs, etag_key


def open_blob_store(config: Config) -> BlobStore:
    """The configured backend; boto3 is imported only for S3 (the `s3` extra)."""
    storage = config.storage
    if storage.backend == "local":
        return LocalBlobStore(config.data_dir, min_free=config.min_free_bytes)
    try:
        from pypilite.storage_s3 import S3BlobStore
    except ImportError:
        raise ConfigError("storage.backend = \"s3\" needs boto3: pip install 'pypilite[s3]'") from None
    return S3BlobStore(config.data_dir, storage.bucket, prefix=storage.prefix, endpoint=storage.endpoint,
                       region=storage.region, access_key_id=storage.access_key_id,
                       secret_access_key=storage.secret_access_key, presigned=storage.redirect == "presigned",
                       min_free=config.min_free_bytes)


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
