"""How pypilite serves: gunicorn's pre-fork server by default, werkzeug's with `--dev`.

`pypilite` (or `python app.py`, or `python3 pypilite.pyz`) runs gunicorn in its own process with the settings
below; `gunicorn -c gunicorn.conf.py wsgi:app` in a checkout names the same settings. Workers count metrics
into files in a private temp directory, which must be named before anything imports prometheus_client (every
pypilite module does): the command makes it, then runs itself again with the name in its environment.
"""

from __future__ import annotations

import gc
import logging
import multiprocessing
import os
import shutil
import socket
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from pypilite import StartupError, create_app, loops
from pypilite.config import Config, ConfigError, load_config
from pypilite.preflight import preflight
from pypilite.services import prepare_data_dir
from pypilite.users import INITIAL_ADMIN, INITIAL_PASSWORD_FILE
from pypilite.version import __version__

if TYPE_CHECKING:
    from flask import Flask

METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"
METRICS_PREFIX = "pypilite-metrics-"  # gunicorn.conf.py names its directory the same way
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The exit status that stops gunicorn's master; any other and it boots workers again, failing each time.
WORKER_BOOT_ERROR = 3

log = logging.getLogger(__name__)


def settings(config: Config) -> dict[str, Any]:
    """gunicorn's settings for pypilite; `GUNICORN_CMD_ARGS` may override any of them."""
    return {
        "bind": f"{config.server.host}:{config.server.port}",
        "workers": min(2 * multiprocessing.cpu_count() + 1, 8),
        # gunicorn believes no forwarded header (pypilite/web/forwarded.py does): "*" then trusts nobody's.
        "forwarded_allow_ips": "*",
        "secure_scheme_headers": {},
        "forwarder_headers": "",
        # Large uploads stream for minutes on slow links; a sync worker must not be killed halfway through one.
        "timeout": 600,
        "graceful_timeout": 30,
        # gunicorn 25.1+ opens a control socket under $HOME, one per user: the second server would take the
        # first one's; signals (and systemd) do its work.
        "control_socket_disable": True,
        # No access log, as gunicorn's default (the reverse proxy logs): `--access-logfile -` adds one.
        "on_starting": lambda server: on_starting(config, server),
        "child_exit": child_exit,
        "on_exit": on_exit,
    }


def load_config_or_exit() -> Config:
    """The config for a gunicorn master: an error stops it with one line, leaving no metrics directory."""
    try:
        return load_config()
    except ConfigError as exc:
        remove_metrics_dir()
        raise SystemExit(f"pypilite: {exc}") from None


def on_starting(config: Config, server: Any) -> None:
    """Once, in the master, before any worker: pypilite's own checks (pypilite/preflight.py), and the counts
    an earlier server left in a directory the operator chose, which would be added to this one's."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    try:
        preflight(config)
    except loops.UpstreamLoop as exc:
        on_exit(server)  # gunicorn calls it only once it has started
        raise SystemExit(f"pypilite: {exc}") from None
    directory = os.environ[METRICS_ENV]
    for name in os.listdir(directory):
        if name.endswith(".db"):
            os.unlink(os.path.join(directory, name))


def child_exit(server: Any, worker: Any) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    remove_metrics_dir()


def remove_metrics_dir() -> None:
    """Remove the metrics directory if a pypilite master made it; one the operator named stays."""
    directory = os.environ.get(METRICS_ENV, "")
    made_here = os.path.dirname(directory) == tempfile.gettempdir()
    if made_here and os.path.basename(directory).startswith(METRICS_PREFIX):
        shutil.rmtree(directory, ignore_errors=True)


def worker_app(config: Config | None = None) -> Flask:
    """The app a worker serves; a start-up error stops the whole server with one line."""
    try:
        app = create_app(config)
    except StartupError as exc:
        print(f"pypilite: {exc}", file=sys.stderr)
        sys.exit(WORKER_BOOT_ERROR)
    # What start-up built lives as long as the process: out of the collector's way.
    gc.freeze()
    return app


def serve(config: Config, dev: bool = False) -> None:
    """Serve until Ctrl-C or SIGTERM: gunicorn, or werkzeug's single-process server with `dev`."""
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    if dev:
        _serve_dev(config)
    elif METRICS_ENV not in os.environ:
        os.environ[METRICS_ENV] = tempfile.mkdtemp(prefix=METRICS_PREFIX)
        # Run again from the start, so prometheus_client is imported knowing the directory (same process id).
        os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])
    else:
        _serve_gunicorn(config)


def _serve_dev(config: Config) -> None:
    from werkzeug.serving import run_simple

    app = create_app(config)
    try:
        preflight(config)
    except loops.UpstreamLoop as exc:
        raise StartupError(str(exc)) from None
    _announce(config, "werkzeug's development server (one process; not for production)")
    run_simple(config.server.host, config.server.port, app, threaded=True)


def _serve_gunicorn(config: Config) -> None:
    from gunicorn.app.base import BaseApplication

    os.makedirs(os.environ[METRICS_ENV], exist_ok=True)
    try:
        prepare_data_dir(config)  # here, so the first admin's password file exists before the URLs are shown
    except StartupError:
        remove_metrics_dir()
        raise
    import pypilite.web  # noqa: F401  (loaded once here: every worker forks with it and boots at once)

    class Application(BaseApplication):
        def load_config(self) -> None:
            for key, value in settings(config).items():
                if key in self.cfg.settings:  # an older gunicorn lacks some
                    self.cfg.set(key, value)
            overrides = self.cfg.parser().parse_args(self.cfg.get_cmd_args_from_env())
            for key, value in vars(overrides).items():
                if value is not None and key in self.cfg.settings and key != "args":
                    self.cfg.set(key.lower(), value)

        def load(self) -> Flask:
            return worker_app(config)

    application = Application()
    _announce(config, f"gunicorn ({application.cfg.workers} workers)")
    application.run()


def _announce(config: Config, server: str) -> None:
    """What to point clients at, and where the first admin's password is while nobody has changed it."""
    base = config.server.public_url.rstrip("/") or f"http://{_reachable_host(config.server.host)}:{config.server.port}"
    lines = [
        f"pypilite {__version__} serving {config.data_dir} on {config.server.host}:{config.server.port} "
        f"with {server}",
        f"  pip, uv:    --index-url {base}/simple/",
        f"  twine:      --repository-url {base}/{config.server.default_repository}/",
        f"  web UI:     {base}/",
    ]
    password_file = config.data_dir / INITIAL_PASSWORD_FILE
    if password_file.exists():
        lines.append(f"  first admin: user {INITIAL_ADMIN!r}, password in {password_file} (change it in the web UI)")
    print("\n".join(lines), file=sys.stderr, flush=True)


def _reachable_host(host: str) -> str:
    """A name clients can use: this machine's own for an address that listens on every interface."""
    if host in ("0.0.0.0", "::", ""):
        return socket.gethostname()
    return f"[{host}]" if ":" in host else host
