"""`gunicorn -c gunicorn.conf.py wsgi:app` in a checkout; `pypilite` serves the same app by itself."""

from pypilite.serving import worker_app

app = worker_app()
