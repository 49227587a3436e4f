"""Absolute-deadline tick timing and preallocated timing statistics.

The loop's deadlines are ``t0 + k * period``: a late tick never shifts the ones after it (no
drift). Waiting sleeps until shortly before the deadline, then spins for the remainder, as
opensourceleg's SoftRealtimeLoop does; the spin calls ``time.sleep(0)`` so that the GIL is
released to the acquisition and serial threads while it waits. A tick that starts more than
one period late is a deadline miss; the deadlines it missed are skipped, not made up in a burst.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import time
from collections.abc import Callable
from typing import cast

import numpy as np

_PR_SET_TIMERSLACK = 29


def reduce_timer_slack(ns: int = 1000) -> bool:
    """Ask Linux for a small timer slack (default 50 us) so sleeps end closer to their target."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(_PR_SET_TIMERSLACK, ns, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


class DeadlineTimer:
    """``clock`` and ``sleep`` are time.monotonic and time.sleep; a test hands in a clock it
    moves by hand (its ``sleep`` advancing it), so that ticks are deterministic."""

    def __init__(
        self,
        period_s: float,
        spin_s: float = 0.0003,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.period = period_s
        self.spin = spin_s
        self._clock = clock
        self._sleep = sleep
        self.t0 = 0.0
        self.k = 0
        self.misses = 0

    def start(self, now: float | None = None) -> float:
        self.t0 = self._clock() if now is None else now
        self.k = 0
        return self.t0

    @property
    def next_deadline(self) -> float:
        return self.t0 + self.k * self.period

    def wait(self) -> tuple[float, float]:
        """Wait for the next deadline; return (tick start time, start error in seconds)."""
        deadline = self.t0 + self.k * self.period
        clock, sleep = self._clock, self._sleep
        now = clock()
        remaining = deadline - now
        if remaining > self.spin:
            sleep(remaining - self.spin)
        while True:
            now = clock()
            if now >= deadline:
                break
            sleep(0)
        err = now - deadline
        if err > self.period:
            skipped = int(err // self.period)
            self.misses += 1
            self.k += skipped
        self.k += 1
        return now, err


def percentiles(a: np.ndarray, scale: float = 1.0, digits: int = 3) -> dict[str, float]:
    """p50, p99 and max of ``a`` times ``scale`` (NaN when empty), the figures quoted everywhere."""
    if a.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    p50, p99 = np.percentile(a, [50, 99])
    return {
        "p50": round(float(p50) * scale, digits),
        "p99": round(float(p99) * scale, digits),
        "max": round(float(a.max()) * scale, digits),
    }


class TimingStats:
    """Fixed-size record of per-tick figures; percentiles computed off the hot path."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.start_error = np.zeros(capacity)
        self.tick_cost = np.zeros(capacity)
        self.latency = np.full(capacity, np.nan)
        self.sample_age = np.full(capacity, np.nan)
        self.telemetry_age = np.full(capacity, np.nan)
        """The firmware report's age when the tick read it: what the serial reader's delivery
        looks like from the loop (the link watchdog's input), recorded beside the tick's own
        timing so that a ``link_down`` can be told apart from a late reader."""
        # The same memory as memoryviews: ``record`` stores Python floats without numpy's
        # per-element cost (it runs every tick).
        self._views = tuple(
            cast("memoryview[float]", a.data)
            for a in (
                self.start_error,
                self.tick_cost,
                self.latency,
                self.sample_age,
                self.telemetry_age,
            )
        )
        self.n = 0

    def record(
        self,
        start_error: float,
        cost: float,
        latency: float,
        sample_age: float,
        telemetry_age: float = float("nan"),
    ) -> None:
        i = self.n % self.capacity
        err_v, cost_v, latency_v, age_v, telemetry_v = self._views
        err_v[i] = start_error
        cost_v[i] = cost
        latency_v[i] = latency
        age_v[i] = sample_age
        telemetry_v[i] = telemetry_age
        self.n += 1

    def _valid(self, arr: np.ndarray, last: int | None) -> np.ndarray:
        held = min(self.n, self.capacity)
        k = held if last is None else min(held, max(1, last))
        a = arr[:held] if k == held else arr[np.arange(self.n - k, self.n) % self.capacity]
        return a[np.isfinite(a)]

    def summary(self, last: int | None = None) -> dict[str, dict[str, float]]:
        """Percentiles over all held ticks, or the ``last`` ones (cheap for a live status:
        percentiles over a long record hold the GIL for tens of milliseconds)."""
        return {
            "loop_jitter_us": percentiles(self._valid(self.start_error, last), 1e6),
            "tick_cost_us": percentiles(self._valid(self.tick_cost, last), 1e6),
            "latency_ms": percentiles(self._valid(self.latency, last), 1e3),
            "sample_age_ms": percentiles(self._valid(self.sample_age, last), 1e3),
            "telemetry_age_ms": percentiles(self._valid(self.telemetry_age, last), 1e3),
        }
