"""What a replayed request costs in-process: the memo's answer to a repeated project page and to a repeated small
file, called as a gunicorn sync worker calls the app (a WSGI environ, on the main thread, no test client). CPU
time of this process, best of ROUNDS, so other load on the machine blurs it less. Run it in two checkouts, in
turns, to compare them.

    python bench/replay.py
"""

from __future__ import annotations

import hashlib
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 20_000
ROUNDS = 7


def main() -> None:
    sys.path.insert(0, str(ROOT))
    logging.disable(logging.WARNING)
    from werkzeug.test import EnvironBuilder

    from tests.conftest import Index
    from tests.distfactory import wheel_bytes

    index = Index(Path(tempfile.mkdtemp(prefix="pypilite-bench-")) / "data")
    data = wheel_bytes("demo", "1.0")
    assert index.upload("demo-1.0-py3-none-any.whl", data).status_code == 200
    memo = index.app.wsgi_app
    flask_road = memo.app
    reached: list[str] = []

    def counted(environ: dict[str, Any], start_response: Any) -> Any:
        reached.append(environ["PATH_INFO"])
        return flask_road(environ, start_response)

    memo.app = counted
    urls = {"project page": "/local/simple/demo/",
            "small file": f"/files/local/{hashlib.sha256(data).hexdigest()}/demo-1.0-py3-none-any.whl"}
    for name, url in urls.items():
        environ = EnvironBuilder(path=url, headers={"Accept": "text/html", "User-Agent": "pip/24.0"}).get_environ()

        def call() -> None:
            body = memo(dict(environ), lambda status, headers, exc_info=None: None)
            for _ in body:
                pass
            getattr(body, "close", lambda: None)()

        call()
        reached.clear()
        best = min(timed(call) for _ in range(ROUNDS))
        assert not reached, f"{url} reached Flask: not a replay"
        print(f"{name:14} {best * 1e6:6.1f} µs CPU per replayed request (best of {ROUNDS} x {REQUESTS})")


def timed(call: Any) -> float:
    started = time.process_time()
    for _ in range(REQUESTS):
        call()
    return (time.process_time() - started) / REQUESTS


if __name__ == "__main__":
    main()
