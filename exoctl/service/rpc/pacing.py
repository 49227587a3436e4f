"""Pacing for the control socket: a token bucket, and the gated work section that starts
each request just after a control tick."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import structlog

log = structlog.get_logger("exoctl.rpc")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` sleeps until enough."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self.t = time.monotonic()

    def take(self, cost: float) -> None:
        """Callers are serialised (the server's work lock; the acceptor is one thread)."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= min(cost, self.burst):
                self.tokens -= cost  # may go negative for a big one: paid back by waiting
                return
            time.sleep((min(cost, self.burst) - self.tokens) / self.rate)


class Pacer:
    """The server's gated work section: one thread at a time, each after paying its cost to a
    token bucket (``requests_per_s``, ``request_burst``) and then waiting for ``gate``.

    The daemon's gate returns just after a control tick, so work done here fills the loop's
    idle time instead of holding the GIL when a tick is due; and a flood of requests costs the
    process a bounded share of CPU (it waits, it is not refused)."""

    def __init__(self, rate: float, burst: float, gate: Callable[[], None] | None) -> None:
        self.gate = gate
        self._lock = threading.Lock()
        self._bucket = TokenBucket(rate, burst)

    @contextlib.contextmanager
    def work(self, cost: float = 0.0) -> Iterator[None]:
        """Work that holds the interpreter for a while (parsing a long line, building a cached
        reply): one thread at a time, started when ``gate`` returns. ``cost`` is taken from the
        token bucket first."""
        with self._lock:
            if cost:
                self._bucket.take(cost)
            if self.gate is not None:
                try:
                    self.gate()
                except Exception:  # a gate that fails must not fail the request
                    log.exception("rpc_gate_failed")
            yield

    def pace(self, cost: float = 1.0) -> None:
        """Wait for a token and the gate's next moment, one thread at a time: requests then
        start at most one per control tick and ``requests_per_s`` in all, each in the loop's
        idle time (an e-stop never waits here)."""
        with self.work(cost):
            pass
