"""Prometheus metrics: what /metrics shows, counted per process and summed over gunicorn's workers.

Under gunicorn, pypilite/serving.py (or gunicorn.conf.py) points PROMETHEUS_MULTIPROC_DIR at a fresh private
directory before anything imports prometheus_client; every worker then writes its counts to memory-mapped
files there and a scrape (whichever worker answers it) adds them up. Without it (`pypilite --dev`, one
process) the counts live in memory. Labels are bounded: a request counts under its Flask endpoint, never
its path, so a scanner walking random URLs cannot grow the series without limit.
"""

from __future__ import annotations

import os
import shutil
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# From a cached page to a large upload.
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   120.0)
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "(unmatched)"
# A scrape that meets a worker's file half-created reads the directory again, this often at most.
SCRAPE_TRIES = 3
SCRAPE_RETRY_SECONDS = 0.01


_recorded: ContextVar[list[tuple[str, str]] | None] = ContextVar("pypilite_recorded_lookups", default=None)


def multiprocess_dir() -> str | None:
    path = os.environ.get(MULTIPROC_ENV)
    return path if path and os.path.isdir(path) else None


class Metrics:
    """The app's instruments; one per app, created by the app factory."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter("pypilite_http_requests", "HTTP requests answered, by Flask endpoint, "
                                 "method and status", ("endpoint", "method", "status"), registry=self.registry)
        self._latency = Histogram("pypilite_http_request_duration_seconds", "Time from routing to the response "
                                  "object, by Flask endpoint (a streamed body's transfer is not included)",
                                  ("endpoint",), buckets=LATENCY_BUCKETS, registry=self.registry)
        self._uploads = Counter("pypilite_uploads", "Uploads by outcome: stored, replaced, identical (nothing "
                                "changed) or rejected", ("outcome",), registry=self.registry)
        self._upload_bytes = Counter("pypilite_upload_bytes", "Bytes of uploaded files by outcome",
                                     ("outcome",), registry=self.registry)
        self._proxy = Counter("pypilite_proxy_cache", "Proxy lookups: hit (fresh cache or stored file), miss "
                              "(asked the upstream) or stale (served the cache because the upstream failed)",
                              ("kind", "result"), registry=self.registry)
        self._upstream_errors = Counter("pypilite_proxy_upstream_errors", "Upstream requests that failed "
                                        "(timeouts, connection errors, 5xx, bad bytes)", ("kind",),
                                        registry=self.registry)
        self._breakers = Counter("pypilite_proxy_breaker_changes", "Upstream circuit breakers opened (the "
                                 "cache alone served after a failure) and closed (the upstream answers again)",
                                 ("change",), registry=self.registry)
        self._failed_logins = Counter("pypilite_failed_logins", "Credentials refused (wrong password, unknown "
                                      "user or token, revoked or expired token)", registry=self.registry)
        self._policy_blocks = Counter("pypilite_policy_blocks", "Files a repository's policy withheld from a page "
                                      "built, or refused as a download or an upload, by rule and mode (report: "
                                      "would have)", ("rule", "mode", "where"), registry=self.registry)
        # Decided once, as prometheus_client decided how to keep the values when it was imported.
        self._multiprocess_dir = multiprocess_dir()
        self._request_children: dict[tuple[str, str, int], Callable[[], None]] = {}
        self._latency_children: dict[str, Callable[[float], None]] = {}
        self._proxy_children: dict[tuple[str, str], Callable[[], None]] = {}

    def request(self, endpoint: str | None, method: str, status: int, seconds: float) -> None:
        endpoint = endpoint or UNMATCHED
        key = (endpoint, method if method in _METHODS else "other", status)  # a client picks the method
        inc = self._request_children.get(key)
        if inc is None:
            inc = self._request_children[key] = self._requests.labels(key[0], key[1], str(status)).inc
        inc()
        observe = self._latency_children.get(endpoint)
        if observe is None:
            observe = self._latency_children[endpoint] = self._latency.labels(endpoint).observe
        observe(seconds)

    def upload(self, outcome: str, size: int) -> None:
        self._uploads.labels(outcome).inc()
        self._upload_bytes.labels(outcome).inc(size)

    def proxy(self, kind: str, result: str) -> None:
        inc = self._proxy_children.get((kind, result))
        if inc is None:
            inc = self._proxy_children[kind, result] = self._proxy.labels(kind, result).inc
        inc()
        recorded = _recorded.get()
        if recorded is not None:
            recorded.append((kind, result))

    @contextmanager
    def recording(self) -> Iterator[list[tuple[str, str]]]:
        """The proxy lookups counted inside, so that an answer given again without them counts them again."""
        recorded: list[tuple[str, str]] = []
        token = _recorded.set(recorded)
        try:
            yield recorded
        finally:
            _recorded.reset(token)

    def upstream_error(self, kind: str) -> None:
        self._upstream_errors.labels(kind).inc()

    def breaker(self, change: str) -> None:
        self._breakers.labels(change).inc()

    def policy_block(self, rule: str, mode: str, where: str, count: int = 1) -> None:
        self._policy_blocks.labels(rule, mode, where).inc(count)

    def failed_login(self) -> None:
        self._failed_logins.inc()

    def exposition(self, extra: Iterable[Metric] = ()) -> bytes:
        """The text a scrape gets: every worker's counts (or this process's), then the gauges read now."""
        if self._multiprocess_dir is not None:
            counted = CollectorRegistry()
            MultiProcessCollector(counted, path=self._multiprocess_dir)
        else:
            counted = self.registry
        gauges = list(extra)
        for _ in range(SCRAPE_TRIES - 1):
            try:
                return generate_latest(_Scrape(counted, gauges))
            except struct.error:  # a worker creating its file this very moment (client_python issue 604)
                time.sleep(SCRAPE_RETRY_SECONDS)
        return generate_latest(_Scrape(counted, gauges))


class _Scrape:
    """What generate_latest needs from a registry: one collect(), here the counts and then the gauges."""

    def __init__(self, counted: CollectorRegistry, gauges: Iterable[Metric]) -> None:
        self.counted = counted
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from self.counted.collect()
        yield from self.gauges


def storage_gauges(files: int, stored_bytes: int, data_dir: Path) -> list[Metric]:
    """Gauges read at scrape time from numbers the database already holds and one statvfs call."""
    count = GaugeMetricFamily("pypilite_hosted_files", "Distinct distribution files stored in hosted "
                              "repositories (identical bytes count once)", value=files)
    size = GaugeMetricFamily("pypilite_hosted_bytes", "Bytes of the distinct distribution files stored in "
                             "hosted repositories (proxy caches not included)", value=stored_bytes)
    free = GaugeMetricFamily("pypilite_disk_free_bytes", "Free bytes on the data dir's filesystem",
                             value=shutil.disk_usage(data_dir).free)
    return [count, size, free]
