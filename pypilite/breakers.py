"""Circuit breakers for upstream indexes, one per upstream origin, shared by every worker of one node.

An upstream that hangs would make each stale page wait the full remote_timeout before its cache is served.
After one failure (a timeout, no connection, a 5xx) the breaker opens: proxies serve their cache at once and
answer an uncached name at once, for a back-off that doubles with each failure that follows (capped). Then
one request probes the upstream (half-open) while the others go on with the cache; its success closes the
breaker. The state is a small file per origin under the data dir, so every gunicorn worker sees it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from pypilite.locks import FileLock, LockTimeout
from pypilite.metrics import Metrics
from pypilite.upstream import Origin, UpstreamError

log = logging.getLogger(__name__)

# The back-off grows to this many times the first one at most.
MAX_BACKOFF_FACTOR = 16
# The state's lock is held for one small file's read and write.
LOCK_WAIT = 1.0
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half-open"


class Refused(UpstreamError):
    """The upstream was not asked: its breaker is open. Logged once, when it opened, not for each request."""


@dataclass(frozen=True)
class BreakerState:
    failures: int  # in a row, the one that opened the breaker included
    retry_at: float  # epoch seconds: nobody asks the upstream before then
    reason: str  # how the upstream last failed, naming no repository: proxies of one host share it
    timeout: bool  # whether that failure was a timeout (504) rather than a broken upstream (502)
    probing_until: float = 0.0  # a worker is probing the upstream until then

    def status(self, now: float) -> str:
        return OPEN if now < self.retry_at else HALF_OPEN


def summary(state: BreakerState | None) -> dict[str, object]:
    """The state as the API's repository view and `repo list` show it."""
    if state is None:
        return {"breaker": CLOSED}
    now = time.time()
    return {"breaker": state.status(now), "failures": state.failures, "retry_in": max(0, round(state.retry_at - now)),
            "reason": state.reason}


def not_closed(directory: Path) -> int:
    """How many upstreams have their breaker open or half-open: a file each, removed when it closes."""
    return sum(1 for _ in directory.glob("*.json")) if directory.is_dir() else 0


class Breaker:
    """One upstream origin's breaker, as the proxy `repository` sees it. `backoff` (seconds) 0 turns it off:
    every request asks the upstream."""

    def __init__(self, directory: Path, locks: Path, repository: str, upstream: Origin, backoff: float,
                 probe_seconds: float, metrics: Metrics) -> None:
        self.repository = repository
        key = hashlib.sha256(f"{upstream[0]}:{upstream[1]}".encode()).hexdigest()[:32]
        self.path = directory / f"{key}.json"
        self.locks = locks
        self.lock_name = f"breaker/{key}"
        self.backoff = backoff
        self.probe_seconds = probe_seconds
        self.metrics = metrics

    def state(self) -> BreakerState | None:
        """The breaker's state, None while closed."""
        try:
            return BreakerState(**json.loads(self.path.read_text()))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, TypeError):
            return None  # unreadable: as if closed, and the next failure writes it afresh

    def refusal(self) -> UpstreamError | None:
        """None when this request may ask the upstream now: the breaker is closed, or half-open and this
        request is the one probe; else the error it meets instead."""
        if self.backoff <= 0:
            return None
        state = self.state()
        if state is None:
            return None
        now = time.time()
        if now < state.retry_at or now < state.probing_until:
            return self._refused(state)
        try:
            lock = FileLock(self.locks, self.lock_name).acquire(LOCK_WAIT)
        except LockTimeout:
            return self._refused(state)
        with lock:
            state = self.state()
            if state is None:
                return None
            if now < state.retry_at or now < state.probing_until:
                return self._refused(state)
            self._write(BreakerState(state.failures, state.retry_at, state.reason, state.timeout,
                                     now + self.probe_seconds))
        return None

    def opened(self) -> UpstreamError | None:
        """The error for a request that waited while another asked the upstream, if that opened the breaker."""
        state = self.state() if self.backoff > 0 else None
        return self._refused(state) if state is not None and time.time() < state.retry_at else None

    def succeeded(self) -> None:
        if not self.path.exists():
            return
        try:
            with FileLock(self.locks, self.lock_name).acquire(LOCK_WAIT):  # not undone by a probe's claim
                self.path.unlink()
        except (FileNotFoundError, LockTimeout):
            return  # closed by another worker's success just now, or that worker is closing it
        log.warning("%s: upstream answers again; breaker closed", self.repository)
        self.metrics.breaker("close")

    def failed(self, exc: UpstreamError) -> None:
        """Count a failure of an upstream that is down; a bad answer from a live one opens nothing."""
        if self.backoff <= 0 or not exc.down:
            return
        try:
            lock = FileLock(self.locks, self.lock_name).acquire(LOCK_WAIT)
        except LockTimeout:
            return  # another worker is writing the breaker's state this moment
        with lock:
            state = self.state()
            now = time.time()
            if state is not None and now < state.retry_at:
                return  # already open: a request started before it opened adds no failure
            failures = 1 if state is None else state.failures + 1
            wait = min(self.backoff * 2 ** (failures - 1), self.backoff * MAX_BACKOFF_FACTOR)
            how = str(exc).removeprefix(f"upstream of repository {self.repository!r} ")
            self._write(BreakerState(failures, now + wait, how, exc.timeout))
        if state is None:
            log.warning("%s: %s; breaker open: the cache alone is served for %g s", self.repository, exc, wait)
            self.metrics.breaker("open")

    def _refused(self, state: BreakerState) -> Refused:
        wait = round(state.retry_at - time.time())
        when = f"asked again in {wait} s" if wait > 0 else "being asked again"
        return Refused(f"upstream of repository {self.repository!r} {state.reason} ({when})", state.timeout,
                       down=True)

    def _write(self, state: BreakerState) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temp = self.path.with_suffix(f".{os.getpid()}.tmp")
        temp.write_text(json.dumps(asdict(state)))
        os.replace(temp, self.path)
