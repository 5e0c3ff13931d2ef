"""What the request metrics cost per request, in-process: a cached project page through the Flask test client
with the hooks as built and with the metrics hooks taken out, interleaved, best run of each; then the hook's
body (Metrics.request) alone. CPU time of this process, so other load on the machine blurs it less.

    python bench/metrics_overhead.py            # counts in memory, as `python app.py`
    python bench/metrics_overhead.py --multi    # counts in mmap files, as under gunicorn
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REQUESTS = 3000
ROUNDS = 7


def main() -> None:
    if "--multi" in sys.argv[1:]:  # before anything imports prometheus_client
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="pypilite-bench-metrics-")
    sys.path.insert(0, str(ROOT))
    logging.disable(logging.WARNING)
    from pypilite.database import database
    from pypilite.metrics import Metrics
    from tests.conftest import Index
    from tests.distfactory import wheel_bytes

    index = Index(Path(tempfile.mkdtemp(prefix="pypilite-bench-")) / "data")
    index.upload("demo-1.0-py3-none-any.whl", wheel_bytes("demo", "1.0"))
    app, client = index.app, index.client

    def get() -> None:
        assert client.get("/local/simple/demo/").status_code == 200

    def connect_only() -> None:
        database.connect(reuse_if_open=True)

    before, after = list(app.before_request_funcs[None]), list(app.after_request_funcs[None])
    timings: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(1000):
        get()
    for _ in range(ROUNDS):
        for instrumented in (True, False):
            app.before_request_funcs[None] = before if instrumented else [connect_only]
            app.after_request_funcs[None] = after if instrumented else []
            timings[instrumented].append(timeit.timeit(get, number=REQUESTS, timer=time.process_time) / REQUESTS)
    with_hooks, without = min(timings[True]), min(timings[False])
    print(f"with metrics {with_hooks * 1e6:.1f} us/request, without {without * 1e6:.1f} us/request: "
          f"{(with_hooks - without) * 1e6:.1f} us ({(with_hooks - without) / without:.1%})")
    metrics = Metrics()
    hook = min(timeit.repeat(lambda: metrics.request("simple.project_page", "GET", 200, 0.0004), number=100_000,
                             repeat=ROUNDS, timer=time.process_time)) / 100_000
    print(f"Metrics.request alone (one counter increment, one histogram observation): {hook * 1e6:.2f} us")


if __name__ == "__main__":
    main()
