"""Pacing for the control socket: a token bucket for requests, a budget for the CPU time that
request work may take, a fair turn, and the gated work section that starts each request just
after a control tick.

Why a CPU budget on top of the request rate: a request's cost varies by a factor of ten or
more (a fresh connection's thread, a cached ``status`` or a built one, a refused batch), so
a rate alone does not bound what clients take from the interpreter that the control loop,
the serial reader and the EMG inlet share. Measured on the 2-core machine: 8 clients
calling ``status`` as fast as answers came took a session's daemon from 0.7 to 1.0 core,
about 1.2 ms of thread CPU per call, and the serial reader's share of the GIL with it."""

from __future__ import annotations

import collections
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
        """Callers are serialised (the server's turn; the acceptor is one thread)."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= min(cost, self.burst):
                self.tokens -= cost  # may go negative for a big one: paid back by waiting
                return
            time.sleep((min(cost, self.burst) - self.tokens) / self.rate)


class CpuBudget:
    """``share`` of one core for request work, measured on each thread's own CPU clock
    (``time.thread_time``) and charged after the fact: ``charge`` never waits, ``wait``
    sleeps while the balance is negative. At most ``burst_s`` is saved up, and a debt is
    counted down to at most ``max_wait_s`` of waiting (one heavy, allowed call such as a
    model load must not shut the socket for minutes). Thread-safe. ``clock`` and ``sleep``
    are time.monotonic and time.sleep; a test hands in a clock its ``sleep`` advances."""

    def __init__(
        self,
        share: float,
        burst_s: float,
        max_wait_s: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.share = float(share)
        self.burst_s = float(burst_s)
        self.floor = -self.share * float(max_wait_s)
        self._clock, self._sleep = clock, sleep
        self._lock = threading.Lock()
        self._balance = self.burst_s
        self._t = clock()
        self.charged_s = 0.0
        """All CPU time charged so far (for diagnosis: what clients cost the daemon)."""

    def _refill(self, now: float) -> None:
        self._balance = min(self.burst_s, self._balance + (now - self._t) * self.share)
        self._t = now

    def charge(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._refill(self._clock())
            self._balance = max(self.floor, self._balance - seconds)
            self.charged_s += seconds

    def wait(self) -> None:
        """Until the balance is no longer negative."""
        while True:
            with self._lock:
                self._refill(self._clock())
                owed = -self._balance
            if owed <= 1e-9:  # paid, to the rounding of the refill
                return
            self._sleep(owed / self.share)


class FairTurn:
    """A lock handed over in arrival order. ``threading.Lock`` makes no promise of order, and
    with fifty clients waiting one of them could wait past its timeout while later ones go
    first; here each waiter sleeps on its own lock and is woken alone (no herd of threads
    woken to find it is not their turn, each taking the interpreter to learn that)."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._held = False
        self._waiters: collections.deque[threading.Lock] = collections.deque()

    def __enter__(self) -> None:
        with self._mutex:
            if not self._held:
                self._held = True
                return
            mine = threading.Lock()
            mine.acquire()
            self._waiters.append(mine)
        mine.acquire()  # released by the holder, who hands the turn over without freeing it

    def __exit__(self, *exc: object) -> None:
        with self._mutex:
            if self._waiters:
                self._waiters.popleft().release()
            else:
                self._held = False


class Pacer:
    """The server's gated work section: one thread at a time, in arrival order, each after the
    CPU budget (``cpu_share`` of a core) is out of debt, after paying its cost to a token
    bucket (``requests_per_s``, ``request_burst``) and then waiting for ``gate``.

    The daemon's gate returns just after a control tick, so work done here fills the loop's
    idle time instead of holding the GIL when a tick is due; and a flood of requests costs the
    process a bounded share of CPU (it waits, it is not refused). The threads doing request
    work ``charge`` what they used; the e-stop never waits here."""

    def __init__(
        self,
        rate: float,
        burst: float,
        gate: Callable[[], None] | None,
        cpu_share: float = 1.0,
        cpu_burst_s: float = 0.05,
    ) -> None:
        self.gate = gate
        self._turn = FairTurn()
        self._bucket = TokenBucket(rate, burst)
        self.cpu = CpuBudget(cpu_share, cpu_burst_s)

    def charge(self, seconds: float) -> None:
        self.cpu.charge(seconds)

    @contextlib.contextmanager
    def work(self, cost: float = 0.0) -> Iterator[None]:
        """Work that holds the interpreter for a while (parsing a long line, building a cached
        reply): one thread at a time, started when ``gate`` returns. ``cost`` is taken from the
        token bucket first."""
        with self._turn:
            self.cpu.wait()
            if cost:
                self._bucket.take(cost)
            if self.gate is not None:
                try:
                    self.gate()
                except Exception:  # a gate that fails must not fail the request
                    log.exception("rpc_gate_failed")
            yield

    def pace(self, cost: float = 1.0) -> None:
        """Wait for the CPU budget, a token and the gate's next moment, one thread at a time:
        requests then start at most one per control tick and ``requests_per_s`` in all, each
        in the loop's idle time (an e-stop never waits here)."""
        with self.work(cost):
            pass
