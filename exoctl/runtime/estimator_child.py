"""The estimator process's own side: what runs in the child ``EstimatorProcess`` starts.

The daemon's side (shared memory, starting and supervising the child) is
``exoctl.runtime.estimator_process``, whose module docstring describes the whole design; this
module is the worker loop (idle turns, session turns, model swaps), the loader thread and the
warm-up over the ring buffer. Kept apart so that each side reads on its own.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import pickle
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from exoctl.acquisition.ringbuffer import SharedRingBuffer
from exoctl.acquisition.seqlock import SeqlockBlock
from exoctl.config.schema import Config
from exoctl.control.estimates import (
    EstimatorStage,
    estimate_layout,
    inputs_layout,
    pack_text,
)
from exoctl.errors import ExoctlError, NonFiniteEmg
from exoctl.signal.dsp import design_apart, filter_designs

log = logging.getLogger("exoctl.runtime.estimator_process")

IDLE_PERIOD_S = 0.04
"""Between sessions the child wakes this often: drains new EMG for the channel monitor and
publishes its heartbeat (well inside estimate_stale's and emg_stale's 0.1 s to degraded)."""


class EstimatorProcessError(ExoctlError, RuntimeError):
    """The estimator process did not start or did not answer; the message says why."""


@dataclass(frozen=True)
class Segments:
    """What the child needs to attach to the daemon's shared memory (picklable)."""

    estimates: str
    inputs: str
    ring: str
    capacity: int
    n_channels: int
    n_joints: int
    k: int


# ------------------------------------------------------------------------- the child side
def _child_main(cfg: Config, seg: Segments, conn: Connection, session: bool, known: dict) -> None:
    """The child's entry point (spawned): load, answer "ready", then run until told to stop."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the daemon stops it, not a terminal's ^C
    faulthandler.register(signal.SIGUSR1)  # kill -USR1 PID: every thread's stack, on stderr
    design_apart(known)  # no scipy in this long-lived process (exoctl.signal.dsp)
    try:
        worker = _Worker(cfg, seg, conn)
    except Exception as e:
        _send_error(conn, e)
        return
    worker._beat()
    conn.send(("ready", (worker.describe(), filter_designs())))
    worker.run(session)


def _send_error(conn: Connection, e: BaseException) -> None:
    """Send the exception itself when it pickles (the caller re-raises it unchanged)."""
    try:
        pickle.loads(pickle.dumps(e))
        conn.send(("error", e))
    except Exception:
        conn.send(("error", EstimatorProcessError(f"{type(e).__name__}: {e}")))


class _Worker:
    def __init__(self, cfg: Config, seg: Segments, conn: Connection) -> None:
        from exoctl.control.safety import ChannelMonitor
        from exoctl.estimation.estimator import build_estimator

        self.cfg = cfg
        self.conn = conn
        nm = seg.n_channels
        self.block = SeqlockBlock.attach(seg.estimates, estimate_layout(seg.n_joints, nm, seg.k))
        self.block.recover()  # a predecessor killed mid-write left the counter odd
        self.inputs = SeqlockBlock.attach(seg.inputs, inputs_layout(seg.n_joints))
        self.ring = SharedRingBuffer.attach(seg.ring, seg.capacity, nm)
        estimator = build_estimator(cfg)
        self._check_sizes(estimator, seg)
        self.seg = seg
        monitor = ChannelMonitor(
            nm,
            cfg.emg.sampling_rate_hz,
            cfg.safety,
            # emg_flat_range is in raw EMG units; an enveloped, normalised input is ~1.
            flat_range=1e-6 if cfg.estimator.input == "enveloped" else None,
        )
        self.stage = EstimatorStage(self.ring, estimator, monitor)
        self.acquisition: Any = None
        self.warm_steps = 0
        self.session = False
        self._swap: _Loader | None = None
        self.f = self.block.fields
        self._error: str | None = None
        pack_text(None, self.f["error"])

    @staticmethod
    def _check_sizes(estimator: Any, seg: Segments) -> None:
        if estimator.k != seg.k or estimator.n_muscles != seg.n_channels:
            raise EstimatorProcessError(
                f"the new estimator has {estimator.k} synergies and {estimator.n_muscles} "
                f"muscles, the running one {seg.k} and {seg.n_channels}: restart the daemon "
                "with the new configuration"
            )

    def describe(self) -> dict[str, Any]:
        est = self.stage.estimator
        return {
            "pid": os.getpid(),
            "model_extra": dict(est.model.info.extra),
            "calibration_source": dict(est.calibration.source),
            "assisted": est.assisted,
        }

    # -- requests ---------------------------------------------------------------------
    def _handle(self, msg: tuple) -> bool:
        """Run one request from the daemon; False to stop."""
        kind = msg[0]
        try:
            if kind == "stop":
                return False
            if kind == "acquire":
                self._acquire()
                self.conn.send(("ok", None))
            elif kind == "session":
                if msg[1]:
                    self.conn.send(("ok", self._begin_session()))
                else:
                    self.session = False
                    self.conn.send(("ok", None))
            elif kind == "swap":  # loads in a thread: the idle turns keep publishing meanwhile
                self._swap = _Loader(msg[1])
            elif kind == "reset":
                self.stage.estimator.reset()
                self.conn.send(("ok", None))
            else:
                self.conn.send(("error", EstimatorProcessError(f"unknown request {kind!r}")))
        except Exception as e:
            _send_error(self.conn, e)
        return True

    def _acquire(self) -> None:
        from exoctl.acquisition.sources import make_acquisition

        if self.acquisition is None:
            self.acquisition = make_acquisition(self.cfg.emg, self.ring)
            self.acquisition.idle = lambda: not self.session  # each chunk at once in sessions
            self.acquisition.start()

    def _begin_session(self) -> dict[str, Any]:
        """Warm the estimator up over the ring's recent EMG, then run it every tick."""
        self.warm_steps = warm_up(self.stage, self.cfg, self._beat)
        self.session = True
        self._timer_start = True
        return {"warm_ticks": self.warm_steps}

    def _beat(self) -> None:
        """Alive, and the held estimate still current (no newer one is being computed)."""
        now = time.monotonic()
        self.block.write({"heartbeat": now, "computed_at": now})

    def _finish_swap(self) -> None:
        """Install a model loaded by ``_Loader`` once it is done, and answer the daemon."""
        loader = self._swap
        if loader is None or loader.is_alive():
            return
        self._swap = None
        try:
            if loader.error is not None:
                raise loader.error
            assert loader.estimator is not None
            self._check_sizes(loader.estimator, self.seg)
            self.stage.estimator = loader.estimator
            self.cfg = loader.cfg
            self.conn.send(("ok", self.describe()))
        except Exception as e:
            _send_error(self.conn, e)

    # -- the loop -----------------------------------------------------------------------
    def run(self, session: bool) -> None:
        from exoctl.control.timing import DeadlineTimer, reduce_timer_slack

        reduce_timer_slack()
        if session:  # restarted during a session: acquire and run again straight away
            self._acquire()
            self._begin_session()
        # No spinning before a deadline (the loop spins; this process has no one to be exact
        # for: an estimate a fraction of a tick late is still the newest one the loop copies).
        timer = DeadlineTimer(1.0 / self.cfg.tick_rate_hz, spin_s=0.0)
        self._timer_start = True
        conn = self.conn
        inputs, ang, vel = self.inputs, self.inputs.local["angles"], self.inputs.local["velocities"]
        fw_time, received_at = self.inputs.local["fw_time"], self.inputs.local["received_at"]
        try:
            while True:
                if self.session:
                    if self._timer_start:
                        timer.start()
                        self._timer_start = False
                    timer.wait()
                    if conn.poll() and not self._handle(conn.recv()):
                        return
                elif conn.poll(IDLE_PERIOD_S) and not self._handle(conn.recv()):
                    return
                self._finish_swap()
                if self.session:
                    inputs.read()
                    self.stage.step(ang, vel, float(fw_time[0]), float(received_at[0]))
                else:
                    self.stage.drain()
                self._publish(time.monotonic(), computed=self.stage.ran)
        except (EOFError, OSError):
            return  # the daemon went away
        finally:
            if self.acquisition is not None:
                self.acquisition.stop(timeout=0.5)

    def _publish(self, now: float, computed: bool) -> None:
        """One consistent update of the estimate block. Its time moves with a current estimate
        (idle too: nothing newer to compute), not a held one (``EstimatorStage.current``)."""
        st, f, b = self.stage, self.f, self.block
        acq = self.acquisition
        b.begin()
        if computed:
            f["estimate"][:] = st.estimate
            f["paired"][0] = st.paired_at
        f["activation"][:] = st.estimator.activation  # the chain's: this tick's, also held
        f["synergy"][:] = st.estimator.synergy
        f["telemetry_at"][0] = st.telemetry_at
        f["flags"][:] = st.channel_monitor.flags if st.channel_monitor is not None else 0.0
        f["n"][0] = st.n if computed else 0  # idle: no estimate covers the drained samples
        f["first_arrival"][0] = st.first_arrival
        f["newest_stamp"][0] = st.newest_stamp
        f["computed_at"][0] = now if st.current else f["computed_at"][0]
        f["heartbeat"][0] = now
        f["source_refused"][0] = st.source_refused
        f["bad_input_ticks"][0] = st.bad_input_ticks
        f["steps"][0] = st.steps + self.warm_steps
        f["session"][0] = self.session
        if acq is not None:
            f["chunks"][0] = acq.chunks
            if acq.error != self._error:  # rare: written only when it changes
                self._error = acq.error
                pack_text(acq.error, f["error"])
        f["samples"][0] = self.ring.written
        f["overflow_samples"][0] = self.ring.overflow_samples
        f["overflow_events"][0] = self.ring.overflow_events
        b.end()


class _Loader(threading.Thread):
    """Builds an estimator (model and calibration files, seconds for a large model) beside
    the idle turns, which go on publishing so the estimate never looks stale meanwhile."""

    def __init__(self, cfg: Config) -> None:
        super().__init__(name="estimator-loader", daemon=True)
        self.cfg = cfg
        self.estimator: Any = None
        self.error: BaseException | None = None
        self.start()

    def run(self) -> None:
        from exoctl.estimation.estimator import build_estimator

        try:
            self.estimator = build_estimator(self.cfg)
        except Exception as e:
            self.error = e


def warm_up(stage: EstimatorStage, cfg: Config, beat: Callable[[], None] | None = None) -> int:
    """Reset the estimator and run it over the ring's last ``estimator.warmup_s`` of EMG in
    tick-sized chunks (filters, activation dynamics, synergies and the model's own window
    see it as if it had run all along); returns the ticks run. The stage's reader cursor then
    moves past those samples, so no sample is fed twice."""
    est = stage.estimator
    ring = stage.ring
    est.reset()
    fs, rate = cfg.emg.sampling_rate_hz, cfg.tick_rate_hz
    want = int(cfg.estimator.warmup_s * fs)
    cursor, data, stamps, _ = ring.copy_since(max(0, ring.written - want))
    ring._read = cursor  # noqa: SLF001 - the stage's own cursor, in this process
    per_tick = max(1, round(fs / rate))
    angles = np.zeros(len(est.estimate))
    ticks = 0
    for i in range(0, data.shape[0], per_tick):
        chunk, st = data[i : i + per_tick], stamps[i : i + per_tick]
        try:
            est.step(chunk, angles, angles, st, float(st[-1]) if est.needs_time else None)
        except NonFiniteEmg:
            est.reset()  # warm up on what follows the bad samples
        ticks += 1
        if beat is not None and ticks % 8 == 0:
            beat()  # a long warm-up is not a hang
    stage.warmed = True  # the first live tick publishes the warmed-up estimate, run or held
    return ticks
