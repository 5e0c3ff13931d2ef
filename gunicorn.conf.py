"""`gunicorn -c gunicorn.conf.py wsgi:app` in a checkout: the settings `pypilite` itself serves with
(pypilite/serving.py); the bind address comes from pypilite's own config (file or environment)."""

import os
import tempfile

# Named before anything imports prometheus_client, as every pypilite module does (pypilite/serving.py).
# A config reload (SIGHUP) runs this file again in the same master: keep the directory it already made.
if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pypilite-metrics-")
os.makedirs(os.environ["PROMETHEUS_MULTIPROC_DIR"], exist_ok=True)

from pypilite import serving  # noqa: E402

_config = serving.load_config_or_exit()
import pypilite.web  # noqa: E402, F401  (loaded once here: every worker forks with it and boots at once)

globals().update(serving.settings(_config))
