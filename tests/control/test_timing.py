"""Deadlines are absolute: lateness is counted, never accumulated."""

from __future__ import annotations

import time

from exoctl.control.timing import DeadlineTimer, TimingStats


def test_a_late_tick_is_a_miss_and_later_deadlines_stay_on_the_grid():
    timer = DeadlineTimer(0.002)
    t0 = timer.start()
    for _ in range(5):
        timer.wait()
    before = timer.misses  # a loaded machine may already have missed some
    time.sleep(0.011)  # a stall of more than five periods
    late_start, err = timer.wait()
    assert timer.misses == before + 1 and err > 0.002
    start, err = timer.wait()
    deadline = start - err
    # Back on the original grid: the deadline is a whole number of periods after t0 ...
    k = round((deadline - t0) / 0.002)
    assert abs(deadline - (t0 + k * 0.002)) < 1e-9
    # ... and the missed deadlines were skipped, not made up in a burst.
    assert deadline > late_start


def test_stats_percentiles_ignore_ticks_without_samples():
    s = TimingStats(10)
    for i in range(4):
        s.record(1e-6 * i, 1e-4, float("nan") if i % 2 else 1e-3, 2e-3)
    out = s.summary()
    assert out["latency_ms"]["p50"] == 1.0
    assert out["loop_jitter_us"]["max"] == 3.0


def test_summary_over_the_last_ticks_only():
    s = TimingStats(8)
    for i in range(12):  # wraps: holds ticks 4..11
        s.record(1e-6 * i, 0.0, float("nan"), float("nan"))
    assert s.summary()["loop_jitter_us"]["max"] == 11.0
    last3 = s.summary(last=3)["loop_jitter_us"]
    assert last3["max"] == 11.0 and last3["p50"] == 10.0
