"""gunicorn settings for pypilite; the bind address comes from pypilite's own config (file or environment)."""

import multiprocessing

from pypilite.config import ConfigError, load_config

try:
    _server = load_config().server
    bind = f"{_server.host}:{_server.port}"
except ConfigError as exc:
    raise SystemExit(f"pypilite: {exc}") from None

workers = min(2 * multiprocessing.cpu_count() + 1, 8)
# Large uploads stream for minutes on slow links; a sync worker must not be killed halfway through one.
timeout = 600
graceful_timeout = 30
# No access log by default, as gunicorn itself: writing one costs a page request about a tenth of its time, and
# the reverse proxy in front logs every request anyway. `GUNICORN_CMD_ARGS="--access-logfile -"` turns it on.
