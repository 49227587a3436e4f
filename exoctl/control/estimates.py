"""Where the control loop gets each tick's estimate: computed in its own thread, or read.

``EstimatorStage`` is one tick of the estimator's work: new samples out of the ring buffer, the
channel monitor, the estimator step, and the rule for refused (non-finite) EMG. It runs in the
control loop's thread (``LocalEstimates``, the in-process mode: ``estimator.process: false``)
or in the estimator process (``exoctl.runtime.estimator_process``), which publishes its
results in shared memory for ``SharedEstimates`` to copy each tick.

Both sources give the loop the same attributes, so that the loop has one code path:
``estimate``, ``activation``, ``synergy`` (views valid until the next tick), ``n`` (new samples
behind this tick's estimate, 0 if none), ``first_arrival`` (host arrival of the oldest of
them), ``newest_stamp`` (LSL time of the newest), ``last_arrival`` (of any sample, for the EMG
watchdog), ``source_refused``, ``bad_input_ticks`` and the channel flags, written in place into
the array the loop hands in.

With the model run on every k-th tick only (``estimator.model_every_ticks``) a tick that holds
the estimate has ``n`` 0 (no new estimate: nothing newer reaches the command), and the tick
that runs the model counts every sample since the previous run, its ``first_arrival`` the
oldest of them: the EMG-to-command latency includes the hold. ``computed_at`` is the model's
run, so the estimate's age (the ``estimate_stale`` watchdog's input) includes the hold too.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import pylsl

from exoctl.acquisition.ringbuffer import RingBuffer, SharedRingBuffer
from exoctl.acquisition.seqlock import SeqlockBlock
from exoctl.control.safety import ChannelMonitor
from exoctl.errors import NonFiniteEmg

if TYPE_CHECKING:  # onnxruntime and scipy load only where the estimator runs
    from exoctl.estimation.estimator import Estimator


class EstimatorStage:
    """Ring -> channel monitor -> estimator, once per tick (see the module docstring)."""

    def __init__(
        self,
        ring: RingBuffer,
        estimator: Estimator,
        channel_monitor: ChannelMonitor | None,
        max_chunk: int = 4096,
    ) -> None:
        self.ring = ring
        self.estimator = estimator
        self.channel_monitor = channel_monitor
        self._buf = np.zeros((max_chunk, ring.n_channels), dtype=np.float32)
        self._stamps = np.zeros(max_chunk)
        self._arrival = np.zeros(max_chunk)
        self.n = 0
        self.bad_input_ticks = 0
        self.steps = 0
        """Estimator steps run (the idle test counts them)."""
        self._input_bad = False
        # Samples read since the model's last run (with it held, they wait for the next run).
        self._pending = 0
        self._first = math.nan
        self._newest = math.nan
        self.ran = False
        """Whether this tick gives a new estimate (False: held, or no step)."""
        self.warmed = False
        """Set by a warm-up: the next step gives the warmed-up estimate as new, run or held."""
        self._idle = True

    @property
    def current(self) -> bool:
        """The estimate is as new as the inputs allow: new this tick, idle (no model runs:
        nothing newer to compute), or no row waits for the model's next run
        (``estimator.model_every_ticks``)."""
        return self.ran or self._idle or not self.estimator.held

    @property
    def estimate(self) -> np.ndarray:
        return self.estimator.estimate

    @property
    def activation(self) -> np.ndarray:
        return self.estimator.activation

    @property
    def synergy(self) -> np.ndarray:
        return self.estimator.synergy

    @property
    def first_arrival(self) -> float:
        return self._first if self.n else math.nan

    @property
    def newest_stamp(self) -> float:
        return self._newest if self.n else math.nan

    @property
    def last_arrival(self) -> float:
        return self.ring.last_arrival

    @property
    def source_refused(self) -> bool:
        return self.ring.source_fault is not None

    def drain(self) -> int:
        """Between sessions: consume new samples for the channel monitor only (no model)."""
        n = self.n = self.ring.read_new(self._buf, self._stamps, self._arrival)
        if self.channel_monitor is not None:
            self.channel_monitor.update(self._buf[:n])
        if n:
            self._first = float(self._arrival[0])
            self._newest = float(self._stamps[n - 1])
        self._pending = 0
        self.ran = False
        self._idle = True
        return n

    @property
    def paired_at(self) -> float:
        """The instant (LSL clock) the estimate is for: EMG and kinematics paired at it."""
        return self.estimator.paired_at

    @property
    def telemetry_at(self) -> float:
        """When the newest telemetry frame's joint state was measured (LSL clock)."""
        return self.estimator.kinematics.newest

    def step(
        self,
        angles: np.ndarray,
        velocities: np.ndarray,
        fw_time: float = math.nan,
        received_at: float = math.nan,
    ) -> np.ndarray:
        """One tick: new samples through the estimator; returns the estimate. ``fw_time`` and
        ``received_at``: the telemetry frame's device time and host arrival, with which the
        estimator pairs the kinematics with the EMG by time (``exoctl.estimation.pairing``)."""
        n = self.ring.read_new(self._buf, self._stamps, self._arrival)
        chunk = self._buf[:n]
        if self.channel_monitor is not None:
            self.channel_monitor.update(chunk)
        if n:
            if not self._pending:
                self._first = float(self._arrival[0])
            self._pending += n
            self._newest = float(self._stamps[n - 1])
        est = self.estimator
        est.ran = False
        self._idle = False
        if n or not self._input_bad:
            try:
                self.steps += 1
                estimate = est.step(
                    chunk,
                    angles,
                    velocities,
                    self._stamps[:n],
                    pylsl.local_clock() if est.needs_time else None,
                    fw_time,
                    received_at,
                )
                self._input_bad = False
            except NonFiniteEmg:
                # The stages refuse it before touching their state. A NaN estimate is what
                # the safety layer's model-output watchdog acts on.
                est.invalidate()
                estimate = est.estimate
                self._input_bad = True
                self.bad_input_ticks += 1
        else:
            # Until good samples arrive the estimate stays NaN, also through ticks that bring
            # none (a window model would otherwise advance and compute a finite one), so the
            # watchdog sees the fault persist.
            estimate = est.estimate
        # A refused chunk's NaN estimate is new too (the model-output watchdog acts on it).
        computed = est.ran or self._input_bad
        if computed:
            self.n, self._pending = self._pending, 0
        else:
            self.n = 0
        self.ran = computed or self.warmed
        self.warmed = False
        return estimate


class LocalEstimates(EstimatorStage):
    """The in-process mode: the loop's own thread runs the estimator each tick."""

    _computed_at = -math.inf

    def computed_at(self, now: float) -> float:
        """When the estimate in use was computed, on the loop's clock: this tick when this
        tick's step ran the model (the loop's thread ran it) or had nothing newer to run it
        on, else the tick that last ran it (the estimate held, ``estimator.model_every_ticks``)."""
        if self.current:
            self._computed_at = now
        return self._computed_at

    def flags_into(self, out: np.ndarray | None) -> None:
        pass  # the loop's flags array *is* the channel monitor's (set once, updated in place)

    def use_estimator(self, estimator: Estimator) -> None:
        self.estimator = estimator


def estimate_layout(n_joints: int, n_muscles: int, k: int) -> dict[str, int]:
    """The estimator process's block: what the loop and the status read each tick."""
    return {
        "estimate": n_joints,
        "activation": n_muscles,
        "synergy": k,
        "flags": n_muscles,  # channel monitor: flat or saturated
        "n": 1,  # new samples behind this estimate (0: none)
        "first_arrival": 1,  # host arrival of the oldest of them
        "newest_stamp": 1,  # LSL time of the newest of them
        "computed_at": 1,  # time.monotonic() when this estimate was written
        "paired": 1,  # the instant (LSL clock) the estimate is for
        "telemetry_at": 1,  # when the newest telemetry's joint state was measured
        "heartbeat": 1,  # time.monotonic() of the process's last turn, idle or not
        "source_refused": 1,
        "bad_input_ticks": 1,
        "steps": 1,  # estimator steps run so far (model runs)
        "session": 1,  # 1 while the estimator runs (a session), 0 idle
        "samples": 1,  # acquisition figures for status
        "chunks": 1,
        "overflow_samples": 1,
        "overflow_events": 1,
        "error": ERROR_BYTES // 8,  # the acquisition's error, UTF-8 packed, NUL-padded
    }


ERROR_BYTES = 512


def pack_text(text: str | None, out: np.ndarray) -> None:
    """Write ``text`` (None: empty) into a float64 field as NUL-padded UTF-8 bytes."""
    raw = out.view(np.uint8)
    data = (text or "").encode()[: raw.size]
    raw[:] = 0
    raw[: len(data)] = np.frombuffer(data, dtype=np.uint8)


def unpack_text(field: np.ndarray) -> str | None:
    text = field.view(np.uint8).tobytes().rstrip(b"\0").decode(errors="replace")
    return text or None


def inputs_layout(n_joints: int) -> dict[str, int]:
    """The loop's block: the device's joint state that the model's features may use."""
    return {
        "angles": n_joints,
        "velocities": n_joints,
        "fw_time": 1,  # the telemetry frame's device time (s), NaN: none
        "received_at": 1,  # its host arrival (time.monotonic), NaN: none
    }


class SharedEstimates:
    """The process mode: each tick the loop publishes the joint state and copies the newest
    estimate the estimator process published (see ``exoctl.acquisition.seqlock``)."""

    def __init__(self, estimates: SeqlockBlock, inputs: SeqlockBlock, ring: SharedRingBuffer):
        self.block = estimates
        self.inputs = inputs
        self.ring = ring
        loc = estimates.local
        self.estimate = loc["estimate"]
        self.activation = loc["activation"]
        self.synergy = loc["synergy"]
        self._flags = loc["flags"]
        self._f = estimates.local
        # Scalars are read (and written) per tick as memoryview items by their offsets: a
        # Python float each, without numpy's per-element cost.
        self._v = estimates.local_values
        at = estimates.offsets
        self._i_n, self._i_first = at["n"], at["first_arrival"]
        self._i_newest, self._i_computed = at["newest_stamp"], at["computed_at"]
        self._i_paired, self._i_telemetry = at["paired"], at["telemetry_at"]
        self._i_refused, self._i_bad = at["source_refused"], at["bad_input_ticks"]
        self._angles = inputs.fields["angles"]
        self._velocities = inputs.fields["velocities"]
        self._iv = inputs.shared_values
        self._i_fw, self._i_rx = inputs.offsets["fw_time"], inputs.offsets["received_at"]
        self._flags_out: np.ndarray | None = None  # the array flags_into last wrote
        self._copied = True  # the local copy may have changed since flags_into last ran
        self.n = 0
        self.n_muscles = len(self.activation)
        self.k = len(self.synergy)

    def step(
        self,
        angles: np.ndarray,
        velocities: np.ndarray,
        fw_time: float = math.nan,
        received_at: float = math.nan,
    ) -> np.ndarray:
        inp = self.inputs
        inp.begin()
        self._angles[:] = angles
        self._velocities[:] = velocities
        iv = self._iv
        iv[self._i_fw] = fw_time
        iv[self._i_rx] = received_at
        inp.end()
        block = self.block
        new = block.read()  # False: the local copy is the last consistent one, unchanged
        if new:
            self._copied = True
        self.n = int(self._v[self._i_n]) if new else 0
        return self.estimate

    def drain(self) -> int:
        return 0

    def flags_into(self, out: np.ndarray | None) -> None:
        """Write the channel flags into ``out``; skipped when ``out`` already holds the flags of
        the local copy (the copy has not changed since)."""
        if out is not None and (self._copied or out is not self._flags_out):
            np.not_equal(self._flags, 0.0, out=out)
            self._flags_out = out
            self._copied = False

    @property
    def first_arrival(self) -> float:
        return self._v[self._i_first] if self.n else math.nan

    @property
    def newest_stamp(self) -> float:
        return self._v[self._i_newest] if self.n else math.nan

    @property
    def paired_at(self) -> float:
        return self._v[self._i_paired]

    @property
    def telemetry_at(self) -> float:
        return self._v[self._i_telemetry]

    def computed_at(self, now: float) -> float:
        """time.monotonic() at which the estimator process published the estimate copied
        (-inf: none yet); ``now`` is unused (the loop's clock is time.monotonic here)."""
        t: float = self._v[self._i_computed]
        return t if t > 0 else -math.inf

    @property
    def last_arrival(self) -> float:
        return self.ring.last_arrival  # the ring's own cell: fresher than the block

    @property
    def source_refused(self) -> bool:
        return bool(self._v[self._i_refused])

    @property
    def bad_input_ticks(self) -> int:
        return int(self._v[self._i_bad])
