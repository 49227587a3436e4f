"""The fixed-rate control loop: EMG -> estimate -> assist -> safety -> wire, once per tick.

Threading: the loop runs in its own thread. Other threads (the control API, the daemon) never
touch the estimator, assist law or safety layer directly; they append requests to a deque that
the loop drains at the start of a tick (deque append/popleft are atomic), so the loop holds no
lock at all. The loop writes nothing to a log: figures go into preallocated arrays
(``TimingStats``, ``TickLog``) that other threads read after the fact.

Order inside a tick, and why: the safety layer is last before the wire, after every other
stage, so nothing can bypass it; the command is written before any bookkeeping so that
bookkeeping never adds latency.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pylsl

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.control.assist import AssistLaw
from exoctl.control.safety import ChannelMonitor, SafetyInputs, SafetyLayer, SafetyState
from exoctl.estimation.estimator import Estimator
from exoctl.runtime.timing import DeadlineTimer, TimingStats

if TYPE_CHECKING:
    from firmware_bridge.link import HostLink


class TickLog:
    """Per-tick record in a preallocated ring: what was estimated and what was commanded."""

    def __init__(self, capacity: int, n_joints: int, n_muscles: int, n_synergies: int) -> None:
        self.capacity = capacity
        self.t = np.zeros(capacity)  # monotonic time the command was written
        self.stamp = np.full(capacity, np.nan)  # LSL time of the newest EMG sample used
        self.estimate = np.zeros((capacity, n_joints))
        self.command = np.zeros((capacity, n_joints))
        self.applied = np.zeros((capacity, n_joints))  # firmware's applied torque (telemetry)
        self.angles = np.zeros((capacity, n_joints))
        self.activation = np.zeros((capacity, n_muscles))
        self.synergy = np.zeros((capacity, n_synergies))
        self.state = np.zeros(capacity, dtype=np.int8)
        self.n = 0

    def read(self, since: int) -> tuple[int, dict[str, np.ndarray]]:
        """Copies of the rows written since counter ``since`` (oldest lost rows skipped)."""
        end = self.n
        start = max(since, end - self.capacity)
        idx = np.arange(start, end) % self.capacity
        cols = ("t", "stamp", "estimate", "command", "applied", "angles", "activation", "synergy")
        out = {c: getattr(self, c)[idx].copy() for c in cols}
        out["state"] = self.state[idx].copy()
        return end, out


class ControlLoop:
    def __init__(
        self,
        rate_hz: float,
        ring: RingBuffer,
        estimator: Estimator,
        assist: AssistLaw,
        safety: SafetyLayer,
        link: HostLink,
        log_capacity: int,
        stats_capacity: int | None = None,
        max_chunk: int = 4096,
        channel_monitor: ChannelMonitor | None = None,
    ) -> None:
        self.rate_hz = rate_hz
        self.period = 1.0 / rate_hz
        self.ring = ring
        self.estimator = estimator
        self.assist = assist
        self.safety = safety
        self.link = link
        nj = len(safety.joints)
        self.timer = DeadlineTimer(self.period)
        self.stats = TimingStats(stats_capacity or log_capacity)
        self.log = TickLog(log_capacity, nj, estimator.n_muscles, estimator.k)
        self.requests: deque[Callable[[float], None]] = deque()
        self._buf = np.zeros((max_chunk, ring.n_channels), dtype=np.float32)
        self._stamps = np.zeros(max_chunk)
        self._arrival = np.zeros(max_chunk)
        self._request = np.zeros(nj)
        self._command = np.zeros(nj)
        self._zero = np.zeros(nj)
        self.bad_input_ticks = 0
        self._input_bad = False
        self.inputs = SafetyInputs.healthy(nj)
        self.inputs.emg_age_s = float("inf")
        self.inputs.telemetry_age_s = float("inf")
        self.inputs.link_healthy = False
        self.channel_monitor = channel_monitor
        if channel_monitor is not None:  # the flags array is updated in place every tick
            self.inputs.emg_flat_or_saturated = channel_monitor.flags
        self.ticks = 0
        self.started_at = float("nan")
        self.stopped_at = float("nan")
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- thread management
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="control-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def submit(self, request: Callable[[float], None]) -> None:
        """Run ``request(now)`` in the loop thread at the start of the next tick."""
        self.requests.append(request)

    def _run_guarded(self) -> None:
        try:
            self.run()
        except Exception as e:  # the loop dying is a fault: the firmware timeout zeroes torque
            self.error = f"{type(e).__name__}: {e}"
            try:
                self.link.send_torque(self._zero)
                self.link.disable(timeout_s=0.1)
            except Exception:
                pass

    # ---------------------------------------------------------------- the loop
    def run(self) -> None:
        self.timer.start(time.monotonic())
        self.started_at = self.timer.t0
        while not self._stop.is_set():
            self.tick()
        self.stopped_at = time.monotonic()

    def tick(self) -> None:
        tick_start, err = self.timer.wait()
        now = tick_start
        while self.requests:
            self.requests.popleft()(now)

        inp = self.inputs
        inp.now = now
        tel = self.link.latest_telemetry()
        if tel is not None:
            inp.telemetry_age_s = now - tel.host_time
            inp.angles[:] = tel.angles
            inp.velocities[:] = tel.velocities
            inp.firmware_fault_bits = tel.fault_bits
        else:
            inp.telemetry_age_s = float("inf")

        n = self.ring.read_new(self._buf, self._stamps, self._arrival)
        chunk = self._buf[:n]
        if self.channel_monitor is not None:
            self.channel_monitor.update(chunk)
        if n or not self._input_bad:
            try:
                estimate = self.estimator.step(chunk, inp.angles, inp.velocities)
                self._input_bad = False
            except ValueError:
                # Non-finite EMG: the stages refuse it before touching their state. A NaN
                # estimate is what the safety layer's model-output watchdog acts on.
                self.estimator.estimate.fill(np.nan)
                estimate = self.estimator.estimate
                self._input_bad = True
                self.bad_input_ticks += 1
        else:
            # Until good samples arrive the estimate stays NaN, also through ticks that bring
            # none (a window model would otherwise advance and compute a finite one), so the
            # watchdog sees the fault persist.
            estimate = self.estimator.estimate
        self.assist.update(estimate, now, self._request)
        inp.emg_age_s = now - self.ring.last_arrival
        inp.link_healthy = self.link.healthy
        inp.actuators_enabled = self.link.enabled
        inp.overrun_streak = inp.overrun_streak + 1 if err > self.period else 0
        command = self.safety.apply(self._request, estimate, inp, self._command)

        if self.link.enabled:
            self.link.send_torque(command)
        t_write = time.monotonic()

        # Bookkeeping after the command is on its way.
        latency = t_write - self._arrival[0] if n else float("nan")
        sample_age = pylsl.local_clock() - self._stamps[n - 1] if n else float("nan")
        self.stats.record(err, t_write - tick_start, latency, sample_age)
        log = self.log
        i = log.n % log.capacity
        log.t[i] = t_write
        log.stamp[i] = self._stamps[n - 1] if n else np.nan
        log.estimate[i] = estimate
        log.command[i] = command
        if tel is not None:
            log.applied[i] = tel.torques
            log.angles[i] = tel.angles
        log.activation[i] = self.estimator.activation
        log.synergy[i] = self.estimator.synergy
        log.state[i] = int(self.safety.state)
        log.n += 1
        self.ticks += 1

    # ---------------------------------------------------------------- figures
    def summary(self, window_s: float | None = None) -> dict:
        """Rates and counts over the whole run; percentiles over it or the last ``window_s``."""
        end = self.stopped_at if np.isfinite(self.stopped_at) else time.monotonic()
        elapsed = end - self.started_at
        out: dict = {
            "target_rate_hz": self.rate_hz,
            "control_rate_hz": round(self.ticks / elapsed, 2) if elapsed > 0 else 0.0,
            "ticks": self.ticks,
            "deadline_misses": self.timer.misses,
            "bad_input_ticks": self.bad_input_ticks,
            "safety_state": SafetyState(self.safety.state).name,
        }
        if window_s is not None:
            out["window_s"] = window_s
        out.update(self.stats.summary(None if window_s is None else int(window_s * self.rate_hz)))
        return out
