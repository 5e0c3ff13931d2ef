"""gunicorn settings for pypilite; the bind address comes from pypilite's own config (file or environment).

Workers count metrics into files in a private temp directory, named before anything imports
prometheus_client and removed when this master exits: counts are not state, and a restart begins from zero.
"""

from __future__ import annotations

import importlib
import logging
import multiprocessing
import os
import shutil
import tempfile
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pypilite.config import Config

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PREFIX = "pypilite-metrics-"
# A config reload (SIGHUP) runs this file again in the same master: keep the directory it already made.
if METRICS_ENV not in os.environ:
    os.environ[METRICS_ENV] = tempfile.mkdtemp(prefix=METRICS_PREFIX)
os.makedirs(os.environ[METRICS_ENV], exist_ok=True)


def _remove_metrics_dir() -> None:
    """Remove the directory if this master made it; one the operator named stays."""
    directory = os.environ[METRICS_ENV]
    made_here = os.path.dirname(directory) == tempfile.gettempdir()
    if made_here and os.path.basename(directory).startswith(METRICS_PREFIX):
        shutil.rmtree(directory, ignore_errors=True)


def _load_config() -> Config:
    """pypilite's config, imported only now that the metrics directory is set."""
    from pypilite.config import ConfigError, load_config

    try:
        return load_config()
    except ConfigError as exc:
        _remove_metrics_dir()  # gunicorn stops before on_exit could
        raise SystemExit(f"pypilite: {exc}") from None


_config = _load_config()
bind = f"{_config.server.host}:{_config.server.port}"
importlib.import_module("pypilite.web")  # loaded once here, so every worker forks with it and boots at once


workers = min(2 * multiprocessing.cpu_count() + 1, 8)
# gunicorn believes no forwarded header (pypilite/web/forwarded.py does): never add one, "*" trusts every client.
forwarded_allow_ips = "*"
secure_scheme_headers: dict[str, str] = {}
forwarder_headers = ""
# Large uploads stream for minutes on slow links; a sync worker must not be killed halfway through one.
timeout = 600
graceful_timeout = 30
# No access log, as gunicorn's default (the reverse proxy logs): `GUNICORN_CMD_ARGS="--access-logfile -"` adds one.


def on_starting(server) -> None:
    """Once, in the master, before any worker starts: pypilite's own checks (pypilite/preflight.py), and the
    counts an earlier server left in a directory the operator chose, which would be added to this one's."""
    from pypilite.loops import UpstreamLoop
    from pypilite.preflight import preflight

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        preflight(_config)
    except UpstreamLoop as exc:
        on_exit(server)  # gunicorn calls it only once it has started
        raise SystemExit(f"pypilite: {exc}") from None
    directory = os.environ[METRICS_ENV]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def child_exit(server, worker) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server) -> None:
    _remove_metrics_dir()
