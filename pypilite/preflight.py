"""What a server checks once before it serves: in gunicorn's master (pypilite/serving.py), which starts no
worker when it fails, or before `pypilite --dev` serves. Workers do not repeat it, so each warning is said
once a start."""

from __future__ import annotations

import logging

import peewee

from pypilite import loops, models
from pypilite.config import Config, RepositoryConfig
from pypilite.database import bind, close_pool, database, make_database
from pypilite.repository_admin import config_drift, describe

log = logging.getLogger(__name__)


def preflight(config: Config) -> None:
    """Raise loops.UpstreamLoop for a proxy that would ask this server itself; warn of each key a config file
    sets otherwise than the database has it."""
    stored = _stored_repositories(config)
    # The database's settings are the ones served: they come last and win.
    proxies = {spec.name: spec.remote_url for spec in (*config.repositories, *stored.values())
               if spec.repository_type == "proxy"}
    loops.refuse_self_proxies(proxies, config.server)
    for line in config_drift(config.repositories, config.written, stored):
        log.warning("%s", line)


def _stored_repositories(config: Config) -> dict[str, RepositoryConfig]:
    """The repositories the database holds; none before the first start, or while its schema is older than
    this pypilite's (the workers migrate it, and the next start compares)."""
    if not config.database.url and not (config.data_dir / "pypilite.db").is_file():
        return {}
    if database.obj is None:
        bind(make_database(config.database.url, config.data_dir))
    try:
        with database.connection_context():
            return {row.name: describe(row) for row in models.Repository.select()}
    except peewee.DatabaseError:
        return {}
    finally:
        close_pool()
