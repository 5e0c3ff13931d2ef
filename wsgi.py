"""`gunicorn -c gunicorn.conf.py wsgi:app`: the production entry point."""

import logging
import sys

from pypilite import StartupError, create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
try:
    app = create_app()
except StartupError as exc:
    sys.exit(f"pypilite: {exc}")
