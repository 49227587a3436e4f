"""The fixed-rate control loop: EMG -> estimate -> assist -> safety -> wire, once per tick.

Threading: the loop runs in its own thread. Other threads (the control API, the daemon) never
touch the estimator, assist law or safety layer directly; they append requests to a deque that
the loop drains at the start of a tick (deque append/popleft are atomic), so the loop holds no
lock at all. The loop writes nothing to a log: figures go into preallocated arrays
(``TimingStats``, ``TickLog``) that other threads copy out with :meth:`ControlLoop.read_ticks`.

Order inside a tick, and why: requests first (an e-stop is in force for this tick's command);
then telemetry, EMG, estimate and assist; the safety layer is last before the wire, after
every other stage, so nothing can bypass it, and the command it writes is exactly what goes to
the link; bookkeeping comes after the write so that it never adds latency.

The link is anything that provides :class:`firmware_bridge.link_api.Link`: the serial
``HostLink`` in the field, the in-process ``FakeLink`` in tests (tests/control/test_loop.py).
Bad EMG is exactly :class:`exoctl.errors.NonFiniteEmg`; any other exception from a stage is a
bug, ends the loop, and ``_run_guarded`` commands zero and disables the actuators.

Idle (no session): while nothing is requested or commanded (assist law stopped, actuators not
enabled, the last command zero) the loop ticks at ``idle_rate_hz`` instead, blocking on an
event between ticks rather than sleeping and spinning to a deadline. Every tick is a whole
tick: the watchdogs still evaluate every input (their persistence is counted in seconds, so a
fault is still detected, at most one idle period later) and the safety layer still runs. The
link's supervisor, not the loop, keeps the firmware's host timeout away while the actuators
are off (the loop sends no frame then at any rate). A request (``submit``: an e-stop, a
session's start, a fault clear) wakes the loop at once for a tick, so none waits for the next
slow tick; when a tick leaves the loop not idle (a session started) the full rate resumes on a
fresh deadline grid from that tick, without catch-up ticks. Only with the estimator in its own
process: in the in-process mode the loop runs the estimator, whose lags count in ticks.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, TypedDict, cast

import numpy as np
import pylsl

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.config.schema import Config
from exoctl.control.assist import AssistLaw
from exoctl.control.estimates import LocalEstimates, SharedEstimates
from exoctl.control.safety import (
    ChannelMonitor,
    RecordingHealth,
    SafetyInputs,
    SafetyLayer,
    SafetyState,
)
from exoctl.control.timing import DeadlineTimer, TimingStats
from firmware_bridge.link_api import Link

if TYPE_CHECKING:  # onnxruntime and scipy load only where the estimator runs
    from exoctl.estimation.estimator import Estimator

TICK_COLUMNS = (
    "t",
    "stamp",
    "paired",
    "telemetry_at",
    "estimate",
    "command",
    "applied",
    "angles",
    "activation",
    "synergy",
)
TIMING_COLUMNS = ("start_error", "tick_cost", "latency", "sample_age", "telemetry_age")
_NAN = math.nan
_INF = math.inf
_monotonic = time.monotonic

IDLE_RATE_HZ = 20.0
"""The loop's rate without a session (the estimator in its own process). Bounded by what idle
ticks are for: the watchdogs' persistence (0.1 s to degraded, 0.2 s to a fault by default)
is counted in seconds, so an idle period of 50 ms detects a fault at most 50 ms later than a
full-rate loop would, with nothing commanded meanwhile; the firmware's host timeout does not
depend on it (the link's supervisor sends heartbeats while the loop sends no frame), nor does
the e-stop (a request wakes the loop at once)."""


class TickRows(TypedDict):
    """Copies of consecutive ticks' records, oldest first; one row per tick."""

    t: np.ndarray  # monotonic time the command was written
    stamp: np.ndarray  # LSL time of the newest EMG sample used (NaN: none this tick)
    paired: np.ndarray  # LSL time the estimate is for: EMG and telemetry paired at it
    telemetry_at: np.ndarray  # LSL time the newest telemetry frame was measured (device clock)
    estimate: np.ndarray  # (n, joints) N m
    command: np.ndarray  # (n, joints) N m, the safety layer's output as sent
    applied: np.ndarray  # (n, joints) N m, the firmware's applied torque (telemetry)
    angles: np.ndarray  # (n, joints) rad
    activation: np.ndarray  # (n, muscles)
    synergy: np.ndarray  # (n, synergies)
    state: np.ndarray  # int8 SafetyState
    start_error: np.ndarray  # s, tick start after its deadline
    tick_cost: np.ndarray  # s, tick start to command written
    latency: np.ndarray  # s, newest EMG arrival to command written (NaN: no sample)
    sample_age: np.ndarray  # s, newest EMG sample's age on the LSL clock (NaN: no sample)
    telemetry_age: np.ndarray  # s, newest firmware report's age at tick start (inf: none yet)


class TickLog:
    """Per-tick record in a preallocated ring: what was estimated and what was commanded."""

    def __init__(self, capacity: int, n_joints: int, n_muscles: int, n_synergies: int) -> None:
        self.capacity = capacity
        self.t = np.zeros(capacity)  # monotonic time the command was written
        self.stamp = np.full(capacity, np.nan)  # LSL time of the newest EMG sample used
        self.paired = np.full(capacity, np.nan)  # LSL time the estimate is for
        self.telemetry_at = np.full(capacity, np.nan)  # newest telemetry's measured time
        self.estimate = np.zeros((capacity, n_joints))
        self.command = np.zeros((capacity, n_joints))
        self.applied = np.zeros((capacity, n_joints))  # firmware's applied torque (telemetry)
        self.angles = np.zeros((capacity, n_joints))
        self.activation = np.zeros((capacity, n_muscles))
        self.synergy = np.zeros((capacity, n_synergies))
        self.state = np.zeros(capacity, dtype=np.int8)
        # The scalar columns as memoryviews: the loop stores a Python number per tick without
        # numpy's per-element cost (the same memory as the arrays above).
        self.t_v = cast("memoryview[float]", self.t.data)
        self.stamp_v = cast("memoryview[float]", self.stamp.data)
        self.paired_v = cast("memoryview[float]", self.paired.data)
        self.telemetry_at_v = cast("memoryview[float]", self.telemetry_at.data)
        self.state_v: memoryview[int] = self.state.data
        self.n = 0

    def read(self, since: int, end: int | None = None) -> tuple[int, dict[str, np.ndarray]]:
        """Copies of the rows written from counter ``since`` to ``end`` (default: all written so
        far; the oldest rows already overwritten are skipped)."""
        end = self.n if end is None else end
        start = max(since, end - self.capacity)
        idx = np.arange(start, end) % self.capacity
        out = {c: getattr(self, c)[idx] for c in TICK_COLUMNS}  # fancy indexing copies
        out["state"] = self.state[idx]
        return end, out


class ControlLoop:
    def __init__(
        self,
        rate_hz: float,
        ring: RingBuffer,
        estimator: Estimator | None,
        assist: AssistLaw,
        safety: SafetyLayer,
        link: Link,
        log_capacity: int,
        stats_capacity: int | None = None,
        max_chunk: int = 4096,
        channel_monitor: ChannelMonitor | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        recording: RecordingHealth | None = None,
        estimates: SharedEstimates | None = None,
        idle_rate_hz: float | None = None,
    ) -> None:
        """``clock``/``sleep`` default to time.monotonic/time.sleep (the clock the acquisition
        stamps arrivals with and the link stamps telemetry with); tests hand in one they move.
        ``recording``: what the session recorder publishes about its health (by default one
        that never requires a recording, as on the HIL bench). ``estimates``: the estimator
        process's shared-memory handoff (process mode); by default the loop runs ``estimator``
        on ``ring`` in its own thread (in-process mode). ``idle_rate_hz``: the rate without a
        session (see the module's docstring); None ticks at ``rate_hz`` always."""
        self.rate_hz = rate_hz
        self.period = 1.0 / rate_hz
        if idle_rate_hz is not None and not 0.0 < idle_rate_hz <= rate_hz:
            raise ValueError(f"idle_rate_hz must be in (0, {rate_hz}], got {idle_rate_hz!r}")
        self.idle_period = None if idle_rate_hz is None else 1.0 / idle_rate_hz
        self.idle = False
        """True while the loop ticks at the idle rate (read by status and the socket's gate)."""
        self.idle_ticks = 0
        self.idle_s = 0.0  # time spent idle, closed spans (``summary`` adds an open one)
        self._idle_from = float("nan")  # start of the current idle span (NaN: not idle)
        self._wake = threading.Event()
        self.ring = ring
        self.estimator = estimator
        self.assist = assist
        self.safety = safety
        self.link = link
        nj = len(safety.joints)
        self._clock = clock
        self.timer = DeadlineTimer(self.period, clock=clock, sleep=sleep)
        self.stats = TimingStats(stats_capacity or log_capacity)
        self.requests: deque[Callable[[float], None]] = deque()
        self.estimates: LocalEstimates | SharedEstimates
        if estimates is not None:
            self.estimates = estimates
        elif estimator is not None:
            self.estimates = LocalEstimates(ring, estimator, channel_monitor, max_chunk)
        else:
            raise ValueError("the loop needs an estimator (in process) or its shared estimates")
        sizes = estimates if estimates is not None else estimator
        assert sizes is not None
        self.log = TickLog(log_capacity, nj, sizes.n_muscles, sizes.k)
        self._request = np.zeros(nj)
        self._command = np.zeros(nj)
        self._zero = np.zeros(nj)
        self.inputs = SafetyInputs.healthy(nj)
        self.inputs.emg_age_s = float("inf")
        self.inputs.telemetry_age_s = float("inf")
        self.inputs.link_healthy = False
        self._lsl_offset = pylsl.local_clock() - time.monotonic()
        """The LSL clock minus time.monotonic() (the same steady clock on Linux: ~0)."""
        self.recording = recording if recording is not None else RecordingHealth()
        self.channel_monitor = channel_monitor
        if channel_monitor is not None and estimates is None:  # updated in place every tick
            self.inputs.emg_flat_or_saturated = channel_monitor.flags
        elif estimates is not None:  # copied from the estimator process's flags every tick
            self.inputs.emg_flat_or_saturated = np.zeros(ring.n_channels, dtype=bool)
        self.ticks = 0
        self.started_at = float("nan")
        self.stopped_at = float("nan")
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @classmethod
    def from_config(
        cls,
        cfg: Config,
        ring: RingBuffer,
        estimator: Estimator | None,
        link: Link,
        log_capacity: int,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        recording: RecordingHealth | None = None,
        estimates: SharedEstimates | None = None,
    ) -> ControlLoop:
        """The loop as the controller runs it: assist law, safety layer and channel monitor
        built from ``cfg`` around the given ring, estimator and link."""
        rate = cfg.tick_rate_hz
        return cls(
            rate,
            ring,
            estimator,
            AssistLaw(cfg.joint_names, cfg.control, rate),
            SafetyLayer(cfg.device.joints, cfg.safety, rate),
            link,
            log_capacity=log_capacity,
            channel_monitor=ChannelMonitor(
                len(cfg.emg.muscles),
                cfg.emg.sampling_rate_hz,
                cfg.safety,
                # emg_flat_range is in raw EMG units; an enveloped, normalised input is ~1.
                flat_range=1e-6 if cfg.estimator.input == "enveloped" else None,
            ),
            clock=clock,
            sleep=sleep,
            recording=recording,
            estimates=estimates,
            idle_rate_hz=None if estimates is None else IDLE_RATE_HZ,
        )

    @property
    def bad_input_ticks(self) -> int:
        """Ticks whose new EMG the estimator refused (non-finite samples)."""
        return self.estimates.bad_input_ticks

    def use_estimator(self, estimator: Estimator) -> None:
        """Run ``estimator`` from the next tick on. Call it in the loop thread (a request);
        the tick log's columns are sized for the estimator the loop started with."""
        assert self.estimator is not None, "in the process mode the estimator process swaps"
        if (estimator.n_muscles, estimator.k) != (self.estimator.n_muscles, self.estimator.k):
            raise ValueError(
                f"the new estimator has {estimator.k} synergies and {estimator.n_muscles} "
                f"muscles, the running one {self.estimator.k} and {self.estimator.n_muscles}"
            )
        self.estimator = estimator
        if isinstance(self.estimates, LocalEstimates):
            self.estimates.use_estimator(estimator)

    # ---------------------------------------------------------------- thread management
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="control-loop", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        """The loop's thread once started (for real-time set-up by reference)."""
        return self._thread

    def submit(self, request: Callable[[float], None]) -> None:
        """Run ``request(now)`` in the loop thread at the start of the next tick (idle: a tick
        at once)."""
        self.requests.append(request)
        self._wake.set()

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
        self.timer.start(self._clock())
        self.started_at = self.timer.t0
        idle_period = self.idle_period
        while not self._stop.is_set():
            if idle_period is not None and self._nothing_commanded():
                self._idle_wait(idle_period)
                self.tick()
                self.idle_ticks += 1
            else:
                if self.idle:  # the first full-rate tick is due one period after the last one
                    self._end_idle(self.timer.next_deadline)
                self.tick()
        self.stopped_at = self._clock()
        self._end_idle(self.stopped_at)

    def _nothing_commanded(self) -> bool:
        """No session's assistance: actuators off, assist law stopped, last command zero (a
        safe stop's ramp still runs at the full rate). Cheapest test first: in a session the
        actuators are enabled."""
        return not self.link.enabled and not self.assist.active and not self._command.any()

    def _idle_wait(self, idle_period: float) -> None:
        """Block until one idle period after the last tick or until a request or a stop
        arrives, then restart the deadline grid at now: this tick is on time, and the next
        full-rate one (if this tick starts a session) is due one period later."""
        now = self._clock()
        if not self.idle:
            self.idle = True
            self._idle_from = now
        remaining = self.timer.t0 + idle_period - now
        if remaining > 0.0 and not self.requests:
            self._wake.wait(remaining)
        self._wake.clear()  # a request submitted from here on is run by this tick or wakes the next
        self.timer.start(self._clock())

    def _end_idle(self, at: float) -> None:
        if self.idle:
            self.idle_s += at - self._idle_from
            self._idle_from = float("nan")
            self.idle = False

    def tick(self) -> None:
        """One tick (see the module docstring for the order). Written for the interpreter's
        cost: attributes read once into locals, scalars stored through memoryviews, no call
        that releases the interpreter lock before the write except the write itself."""
        tick_start, err = self.timer.wait()
        now = tick_start
        requests = self.requests
        while requests:
            requests.popleft()(now)

        inp = self.inputs
        inp.now = now
        link = self.link
        tel = link.latest_telemetry()
        inp.telemetry = tel  # the whole frame, for any watchdog on what the device reports
        if tel is not None:
            fw_time, received_at = tel.fw_time_s, tel.host_time  # to pair it with the EMG
            inp.telemetry_age_s = now - received_at
            inp.angles[:] = tel.angles
            inp.velocities[:] = tel.velocities
            inp.firmware_fault_bits = tel.fault_bits
        else:
            fw_time = received_at = _NAN
            inp.telemetry_age_s = _INF

        src = self.estimates
        estimate = src.step(inp.angles, inp.velocities, fw_time, received_at)
        n = src.n
        src.flags_into(inp.emg_flat_or_saturated)
        # When the estimate in use was computed, on the loop's clock: this tick when the
        # estimator runs in this thread, the estimator process's time stamp otherwise (a hung
        # or crashed process makes it age, which the estimate_stale watchdog acts on).
        estimate_t = src.computed_at(now)
        request = self._request
        self.assist.update(estimate, now, request)
        inp.emg_age_s = now - src.last_arrival
        inp.emg_source_refused = src.source_refused
        inp.link_healthy = link.healthy
        inp.actuators_enabled = link.enabled
        inp.overrun_streak = inp.overrun_streak + 1 if err > self.period else 0
        inp.recording_age_s = now - self.recording.ok_at
        inp.estimate_age_s = now - estimate_t
        safety = self.safety
        command = safety.apply(request, estimate, inp, self._command)

        if link.enabled:
            link.send_torque(command)
        t_write = self._clock()

        # Bookkeeping after the command is on its way.
        if n:
            latency = t_write - src.first_arrival
            newest = src.newest_stamp
            # The LSL clock without a call into liblsl (a ctypes call releases the interpreter
            # lock, and taking it back can wait for another thread's turn).
            sample_age = _monotonic() + self._lsl_offset - newest
        else:
            latency = sample_age = newest = _NAN
        self.stats.record(err, t_write - tick_start, latency, sample_age, inp.telemetry_age_s)
        log = self.log
        i = log.n % log.capacity
        log.t_v[i] = t_write
        log.stamp_v[i] = newest
        log.paired_v[i] = src.paired_at
        log.telemetry_at_v[i] = src.telemetry_at
        log.estimate[i] = estimate
        log.command[i] = command
        if tel is not None:
            log.applied[i] = tel.torques
            log.angles[i] = tel.angles
        log.activation[i] = src.activation
        log.synergy[i] = src.synergy
        log.state_v[i] = safety.state
        log.n += 1
        self.ticks += 1

    # ---------------------------------------------------------------- figures
    @property
    def ticks_written(self) -> int:
        """Counter of tick records written so far (a cursor for ``read_ticks``)."""
        return self.log.n

    def read_ticks(self, since: int) -> tuple[int, TickRows]:
        """Copies of every tick record from counter ``since`` on, with each tick's timing;
        returns (the counter to pass next time, the rows). Any thread may call it: it copies
        preallocated arrays and takes no lock (ticks lost to the ring's wrap are skipped)."""
        end = self.log.n
        start = max(since, end - self.stats.capacity)
        end, rows = self.log.read(start, end)
        st = self.stats
        idx = np.arange(end - len(rows["t"]), end) % st.capacity
        for c in TIMING_COLUMNS:
            rows[c] = getattr(st, c)[idx]
        return end, rows  # type: ignore[return-value]  # the keys are exactly TickRows'

    def summary(self, window_s: float | None = None) -> dict:
        """Rates and counts over the whole run; percentiles over it or the last ``window_s``."""
        end = self.stopped_at if np.isfinite(self.stopped_at) else self._clock()
        idle_s, from_ = self.idle_s, self._idle_from
        if from_ == from_:  # an idle span still open
            idle_s += max(end - from_, 0.0)
        # The rate at which the loop ran while not idle (every session's ticks over their time):
        # idle ticks run at idle_rate_hz by design and would hide a late full-rate loop.
        elapsed = end - self.started_at - idle_s
        active = self.ticks - self.idle_ticks
        out: dict = {
            "target_rate_hz": self.rate_hz,
            "control_rate_hz": round(active / elapsed, 2) if elapsed > 0 and active else 0.0,
            "idle": self.idle,
            "idle_rate_hz": None if self.idle_period is None else 1.0 / self.idle_period,
            "idle_ticks": self.idle_ticks,
            "idle_s": round(idle_s, 3),
            "ticks": self.ticks,
            "deadline_misses": self.timer.misses,
            "bad_input_ticks": self.bad_input_ticks,
            "safety_state": SafetyState(self.safety.state).name,
        }
        if window_s is not None:
            out["window_s"] = window_s
        out.update(self.stats.summary(None if window_s is None else int(window_s * self.rate_hz)))
        return out
