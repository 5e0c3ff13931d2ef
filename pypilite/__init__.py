"""pypilite: a private Python package index on one box."""

from __future__ import annotations

import sys

# Here, first: every way in (app.py, the `pypilite` script, wsgi.py) imports this package before anything else.
if sys.version_info < (3, 11):  # noqa: UP036 (the point is to run on older ones)
    raise SystemExit("pypilite: needs Python 3.11 or newer; this is Python {}.{}".format(*sys.version_info))

import ipaddress  # noqa: E402
import logging  # noqa: E402
from typing import TYPE_CHECKING  # noqa: E402

from pypilite.config import Config, ConfigError, load_config  # noqa: E402
from pypilite.services import StartupError, open_services  # noqa: E402
from pypilite.version import __version__  # noqa: E402

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["StartupError", "__version__", "create_app", "open_services"]

log = logging.getLogger(__name__)


def create_app(config: Config | None = None) -> Flask:
    """Flask on top of the services: what gunicorn and `serve` run."""
    try:
        config = config or load_config()
    except ConfigError as exc:
        raise StartupError(str(exc)) from None
    services = open_services(config)
    _warn_if_reachable_past_the_proxy(config)
    from pypilite.web import build_app  # here, so that importing pypilite (as the CLI does) loads no web layer

    return build_app(services)


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
