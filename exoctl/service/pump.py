"""The daemon's pump: the one reader of the control loop's preallocated logs.

Every ``PUMP_PERIOD_S`` (``PUMP_IDLE_PERIOD_S`` between sessions) it copies the new rows (estimate, command, telemetry, activations,
synergies, loop timing, raw EMG) into the recorder and the LSL outlets and drains the safety
layer's fault events; then it calls the daemon back (the watchdog ping). Nothing here runs on,
or takes a lock shared with, the control thread; recording problems are logged, never raised
into the controller. ``stream_meta`` describes what it writes.
"""

from __future__ import annotations

import collections
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np
import structlog

from exoctl.config.schema import Config
from exoctl.control.loop import TIMING_COLUMNS
from exoctl.jsonout import jsonable
from exoctl.recordings import recorder as R
from exoctl.service.lsl_outlets import LslPublisher

if TYPE_CHECKING:
    from exoctl.runtime.controller import Controller

log = structlog.get_logger("exoctl.daemon")

PUMP_PERIOD_S = 0.05
PUMP_IDLE_PERIOD_S = 0.2
"""The period while the loop idles and nothing records (no session): the loop writes 20 rows a
second then and nothing waits on them; the systemd watchdog ping (every quarter of
``WatchdogSec``) and a fault's record (drained by ``status`` too) are not held back by it."""


class Pump:
    """Copies the loop's new rows out every period, on its own thread (``start``/``stop``).

    ``lock`` is held for each copy; whoever else drains the same queues (the daemon's status,
    a session's stop) takes it too. ``recent_faults`` are the last 50 fault events, for
    ``status``; ``error`` the last copy's failure, if any."""

    def __init__(
        self, controller: Controller, recorder: R.Recorder, on_period: Callable[[], None]
    ) -> None:
        self._controller = controller
        self._recorder = recorder
        self._on_period = on_period
        self.lsl: LslPublisher | None = None
        self.lock = threading.Lock()
        self.recent_faults: collections.deque[dict[str, Any]] = collections.deque(maxlen=50)
        self.error: str | None = None
        self._log_cursor = 0
        self._ring_cursor = 0
        self._emg_lost = 0
        self._write_errors = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def skip_to_now(self) -> None:
        """Copy only the rows written from now on (called once the controller has started)."""
        self._log_cursor = self._controller.ticks_written
        self._ring_cursor = self._controller.emg_written

    def start(self, lsl: LslPublisher | None) -> None:
        """Run on its own thread, publishing to ``lsl`` too when there is one."""
        self.lsl = lsl
        self._thread = threading.Thread(target=self._loop, name="exoctl-pump", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self._period()):
            try:
                with self.lock:
                    self.pump_once()
            except Exception as e:  # never let recording problems touch the controller
                if self.error != str(e):
                    log.exception("pump_failed")
                self.error = str(e)
            self._on_period()

    def _period(self) -> float:
        idle = self._controller.loop_idle and self._recorder.active_session is None
        return PUMP_IDLE_PERIOD_S if idle else PUMP_PERIOD_S

    def stop(self) -> None:
        """Stop the thread, then copy out what is left (a no-op if never started)."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join(2.0)
            with self.lock, contextlib.suppress(Exception):
                self.pump_once()

    def pump_once(self) -> None:
        """Copy out what the loop wrote since the last call (the caller holds ``lock``)."""
        c = self._controller
        rec = self._recorder
        recording = rec.active_session is not None
        end, rows = c.read_ticks(self._log_cursor)  # each tick's record and timing
        self._log_cursor = end
        t = rows["t"]
        if len(t):
            if self.lsl is not None:
                self.lsl.push("estimate", t, rows["estimate"])
                self.lsl.push("command", t, rows["command"])
                self.lsl.push(
                    "joint_state", t, np.concatenate([rows["angles"], rows["applied"]], 1)
                )
            if recording:
                t0 = float(t[0])
                rec.submit_chunk("torque_estimated", t0, rows["estimate"], t=t, copy=False)
                rec.submit_chunk("torque_command", t0, rows["command"], t=t, copy=False)
                tel = np.concatenate([rows["angles"], rows["applied"]], 1)
                rec.submit_chunk("telemetry", t0, tel, t=t, copy=False)
                rec.submit_chunk("safety_state", t0, rows["state"], t=t, copy=False)
                rec.submit_chunk("activation", t0, rows["activation"], t=t, copy=False)
                rec.submit_chunk("synergy", t0, rows["synergy"], t=t, copy=False)
                timing = np.stack(
                    [rows["start_error"], rows["tick_cost"], rows["latency"],
                     rows["sample_age"], rows["telemetry_age"]],
                    1,
                )  # fmt: skip  # the order of TIMING_COLUMNS
                rec.submit_chunk("loop_timing", t0, timing, t=t, copy=False)
        if recording:
            self._ring_cursor, emg, stamps, lost = c.read_emg(self._ring_cursor)
            if lost:
                self._emg_lost += lost
                rec.submit_event("emg_record_gap", {"samples": lost})
            if len(stamps):
                rec.submit_chunk("emg_raw", float(stamps[0]), emg, t=stamps, copy=False)
        else:  # nothing takes raw EMG between sessions: no copy, only the cursor moves
            self._ring_cursor = c.emg_written
        self.drain_faults()
        errors = rec.stats()["write_errors"]
        if errors != self._write_errors:
            self._write_errors = errors
            log.error("recording_write_error", errors=errors, last=rec.stats()["last_error"])

    def drain_faults(self) -> list[dict[str, Any]]:
        """Move the safety layer's fault events into the recording and the recent list.

        Called with ``lock`` held (the daemon's status takes it too): the layer's event queue
        is drained by whoever reads it, so only one reader at a time.
        """
        out = self._controller.collect_events(include_pending=True)  # in the loop thread
        now_wall, now_mono = time.time(), time.monotonic()
        for d in out:
            if d["kind"] == "recording_stalled":  # the disk's own words, for a person
                last = self._recorder.stats()["last_error"]
                if last:
                    d["detail"] += f" (last error: {last})"
            self.recent_faults.append(
                {**d, "wall_time": now_wall - (now_mono - d["t_detected"]), "cleared_at": None}
            )
            self._recorder.submit_event("fault", d, t=d["t_detected"])
            if self.lsl is not None:
                self.lsl.marker("fault", d, t=d["t_detected"])
            log.warning("fault", **jsonable(d))
        for r in self._controller.estimator_restarts():  # why its inputs went stale, if so
            self._recorder.submit_event("estimator_restart", r, t=r["t"])
            if self.lsl is not None:
                self.lsl.marker("estimator_restart", r, t=r["t"])
        return out


def recording_bytes_needed(cfg: Config, n_synergies: int, seconds: float) -> float:
    """Disk space a recording of ``seconds`` needs: its data plus the write-ahead log, which
    SQLite checkpoints (and then reuses) at 1000 pages, 4.1 MB (``WAL_ALLOWANCE``)."""
    return recording_bytes_per_s(cfg, n_synergies) * seconds + WAL_ALLOWANCE


WAL_ALLOWANCE = 5e6


def recording_bytes_per_s(cfg: Config, n_synergies: int) -> float:
    """About how many bytes a second a session's recording takes on disk: the streams of
    ``stream_meta`` at the loop's and the EMG's rates, each row with its time, plus SQLite's
    own share (``SQLITE_OVERHEAD``). Measured: the shipped configuration's streams written at
    the pump's pace (25 ticks and 100 EMG samples every 50 ms, flush every 0.2 or 0.5 s, 30 s)
    closed at 397-398 kB/s against 404 kB/s estimated here (synthetic data)."""
    nj, m = len(cfg.joint_names), len(cfg.emg.muscles)
    per_tick_values = 2 * nj + 2 * nj + m + n_synergies + len(TIMING_COLUMNS)  # float64
    per_tick = 8 * per_tick_values + 1 + 8 * 7  # + int8 safety state + a time in 7 streams
    per_sample = 4 * m + 8  # float32 EMG + its LSL stamp
    raw = per_tick * cfg.tick_rate_hz + per_sample * cfg.emg.sampling_rate_hz
    return raw * SQLITE_OVERHEAD


SQLITE_OVERHEAD = 1.2


def stream_meta(cfg: Config, n_synergies: int) -> dict[str, dict[str, Any]]:
    """The streams the pump writes into a recording: columns, units, what they hold."""
    from exoctl.control.safety import SafetyState

    joints = list(cfg.joint_names)
    k = n_synergies
    return {
        "torque_estimated": {"columns": joints, "unit": "N m"},
        "torque_command": {"columns": joints, "unit": "N m",
                           "description": "after the safety layer, as sent"},
        "telemetry": {
            "columns": [f"angle_{j}" for j in joints] + [f"applied_{j}" for j in joints],
            "units": ["rad"] * len(joints) + ["N m"] * len(joints),
            "description": "the firmware's report: joint angles, torque it applied",
        },
        "safety_state": {"columns": ["safety_state"], "levels": [s.name for s in SafetyState],
                         "description": "the safety layer's state after the tick"},
        "activation": {"columns": list(cfg.emg.muscles), "unit": "1"},
        "synergy": {"columns": [f"synergy_{i + 1}" for i in range(k)], "unit": "1"},
        "loop_timing": {"columns": list(TIMING_COLUMNS), "unit": "s",
                        "description": "per tick; telemetry_age: the firmware report's age "
                                       "when the tick read it (inf: none yet)"},
        "emg_raw": {"columns": list(cfg.emg.muscles), "unit": "as streamed",
                    "description": "t is the LSL time stamp"},
    }  # fmt: skip
