"""`gunicorn -c gunicorn.conf.py wsgi:app`: the production entry point."""

import gc
import logging
import sys

from gunicorn.arbiter import Arbiter

from pypilite import StartupError, create_app

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
try:
    app = create_app()
except StartupError as exc:
    print(f"pypilite: {exc}", file=sys.stderr)
    # This code stops gunicorn's master; any other exit and it boots workers again, failing each time.
    sys.exit(Arbiter.WORKER_BOOT_ERROR)
# What start-up built lives as long as the process: out of the collector's way, and shared copy-on-write.
gc.freeze()
