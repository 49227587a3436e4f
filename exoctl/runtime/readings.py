"""What the controller shows: the copies and snapshots the daemon, the HIL and people read.

``Controller`` is the one facade the daemon and the HIL may use; its requests (start, session,
assist, e-stop, fault clear, model swap) are in ``exoctl.runtime.controller`` and its readings
here, in the class it inherits, so that each file stays small while the facade stays one class.
Every reading is a copy of preallocated state or an immutable snapshot: none holds a lock past
the copy, none is written from here.
"""

from __future__ import annotations

import math
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exoctl.config.schema import Config
from exoctl.control.loop import ControlLoop, TickRows
from exoctl.control.safety import SafetyState
from firmware_bridge.link_api import Link, TelemetrySnapshot

if TYPE_CHECKING:
    from exoctl.acquisition.ringbuffer import RingBuffer
    from exoctl.acquisition.sources import Acquisition
    from exoctl.control.safety import SafetyLayer
    from exoctl.estimation.estimator import Estimator
    from exoctl.runtime.estimator_process import EstimatorProcess


@dataclass
class SessionInfo:
    patient: str
    protocol: str | None
    started_at: float
    gains: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelIdentity:
    """Which model and calibration the estimator runs, for the session record."""

    model_path: Path
    model_id: str | None  # the model's own name, version or format, from its metadata
    calibration_path: Path
    calibration_id: str | None  # the calibration's source name


class ControllerReadings:
    """The readings of ``Controller`` (see the module docstring); the state they read is set up
    by ``Controller.__init__``."""

    cfg: Config
    joints: tuple[str, ...]
    _link: Link
    _loop: ControlLoop
    _safety: SafetyLayer
    _ring: RingBuffer
    _process: EstimatorProcess | None
    _estimator: Estimator | None
    _acquisition: Acquisition | None
    _session: SessionInfo | None
    _fault_log: deque[dict]

    @property
    def session(self) -> SessionInfo | None:
        """The running session, None between sessions."""
        return self._session

    @property
    def safety_state(self) -> SafetyState:
        return SafetyState(self._safety.state)

    @property
    def active_conditions(self) -> tuple[list[str], list[str]]:
        """(fault kinds, degraded kinds) at the last tick: what holds a latch, for a person."""
        return self._safety.active_conditions

    @property
    def healthy(self) -> bool:
        return self._loop.running and self._loop.error is None

    @property
    def loop_running(self) -> bool:
        return self._loop.running

    @property
    def loop_error(self) -> str | None:
        """Why the control loop died (None while it lives or ended cleanly)."""
        return self._loop.error

    @property
    def ticks(self) -> int:
        """Ticks run so far (a watchdog checks that it advances)."""
        return self._loop.ticks

    @property
    def deadline_misses(self) -> int:
        return self._loop.timer.misses

    @property
    def period(self) -> float:
        """The loop's tick period, s."""
        return self._loop.period

    @property
    def loop_idle(self) -> bool:
        """The loop ticks at its idle rate (no session): its deadlines are not tight."""
        return self._loop.idle

    @property
    def next_deadline(self) -> float:
        """time.monotonic() at which the loop's next tick is due."""
        return self._loop.timer.next_deadline

    @property
    def last_write_time(self) -> float:
        """time.monotonic() at which the last tick wrote its command (-inf before any)."""
        log = self._loop.log
        n = log.n
        return float(log.t[(n - 1) % log.capacity]) if n else -math.inf

    @property
    def last_tick_cost(self) -> float:
        """Thread CPU seconds of the last tick (0.0 before any): how long a running tick is
        expected to hold the interpreter, for the control socket's gate."""
        stats = self._loop.stats
        return float(stats.tick_cost[(stats.n - 1) % stats.capacity]) if stats.n else 0.0

    def loop_summary(self, window_s: float | None = None) -> dict[str, Any]:
        """The loop's rates, counts and timing percentiles (over the last ``window_s``)."""
        return self._loop.summary(window_s=window_s)

    def faults(self) -> list[dict]:
        """Every fault collected so far (``collect_events`` moves new ones in)."""
        return list(self._fault_log)

    def estimator_restarts(self) -> list[dict[str, Any]]:
        """The estimator process's restarts since the last call (``t``: monotonic time it was
        found dead or hung, ``reason``, ``restarted``, the new ``pid``); empty in-process."""
        return [] if self._process is None else self._process.take_restarts()

    @property
    def ticks_written(self) -> int:
        """Cursor for ``read_ticks``: records written so far."""
        return self._loop.ticks_written

    def read_ticks(self, since: int) -> tuple[int, TickRows]:
        """Copies of the per-tick records (estimate, command as sent, telemetry, activations,
        synergies, timing) from cursor ``since`` on; returns (next cursor, rows)."""
        return self._loop.read_ticks(since)

    @property
    def emg_written(self) -> int:
        """Cursor for ``read_emg``: samples written so far."""
        return self._ring.written

    def read_emg(self, since: int) -> tuple[int, np.ndarray, np.ndarray, int]:
        """Copies of the raw EMG samples from cursor ``since`` on: (next cursor, samples,
        LSL stamps, samples lost to the ring's wrap since ``since``)."""
        return self._ring.copy_since(since)

    def telemetry(self) -> TelemetrySnapshot | None:
        """The firmware's newest telemetry frame (None before any)."""
        return self._link.latest_telemetry()

    @property
    def n_synergies(self) -> int:
        return self._loop.log.synergy.shape[1]  # sized for the estimator's synergies

    def model_identity(self) -> ModelIdentity:
        if self._process is not None:
            info = self._process.info["model_extra"]
            cal = self._process.info["calibration_source"]
        else:
            assert self._estimator is not None
            info = self._estimator.model.info.extra
            cal = self._estimator.calibration.source
        mid = info.get("name") or info.get("version") or info.get("format")
        cid = cal.get("name")
        return ModelIdentity(
            Path(self.cfg.model.path),
            str(mid) if mid else None,
            Path(self.cfg.estimator.calibration),
            str(cid) if cid else None,
        )

    def _estimate_copy(self) -> np.ndarray:
        """The newest estimate, copied off the loop's thread."""
        if self._process is not None:
            return self._process.estimate_copy()
        assert self._estimator is not None
        return self._estimator.estimate.copy()

    def _acquisition_stats(self) -> dict[str, Any] | None:
        if self._process is not None:
            s = self._process.snapshot()
            out: dict[str, Any] = {
                k: int(s[k]) for k in ("samples", "chunks", "overflow_samples", "overflow_events")
            }
            out["error"] = self._process.acquisition_error()
            return out
        return None if self._acquisition is None else self._acquisition.stats()

    def status(self, window_s: float | None = 10.0) -> dict[str, Any]:
        """A snapshot for people; loop percentiles over the last ``window_s`` only (None: the
        whole run), because percentiles over the whole tick record hold the GIL long enough to
        cost the loop a deadline (measured ~25 ms for 10 minutes of ticks).

        ``stale`` names the figures that are not current, each with the age in seconds of its
        newest input (None: none ever came): with no EMG for ``safety.emg_timeout_s`` the
        estimate and the EMG->command latency (they keep their last values), with no telemetry
        for ``safety.telemetry_timeout_s`` the applied torque (the firmware's last report).
        ``input_age_s`` gives both ages always. The device's current faults are
        ``link.device_faults_current``; ``link.device_faults`` is their history."""
        tel = self._link.latest_telemetry()
        s = self._session
        now = time.monotonic()
        emg_age = now - self._ring.last_arrival  # inf before the first sample
        tel_age = math.inf if tel is None else now - tel.host_time
        safety = self.cfg.safety
        stale: dict[str, float | None] = {}  # key -> age of its newest input (None: never)
        if emg_age >= safety.emg_timeout_s:  # the EMG stopped: the last estimate and the
            for key in ("estimate_nm", "latency_ms"):  # latency figures are not current
                stale[key] = emg_age if math.isfinite(emg_age) else None
        if tel_age >= safety.telemetry_timeout_s:  # no telemetry: applied torque not current
            stale["applied_nm"] = tel_age if math.isfinite(tel_age) else None
        return {
            "session": None
            if s is None
            else {
                "patient": s.patient,
                "protocol": s.protocol,
                "started_at": s.started_at,
                "gains": s.gains,
            },
            "safety_state": SafetyState(self._safety.state).name,
            "loop": self._loop.summary(window_s=window_s),
            "loop_error": self._loop.error,
            "estimate_nm": dict(zip(self.joints, self._estimate_copy().tolist(), strict=True)),
            "command_nm": dict(zip(self.joints, self._safety.last_command.tolist(), strict=True)),
            "applied_nm": None
            if tel is None
            else dict(zip(self.joints, tel.torques.tolist(), strict=True)),
            "link": self._link.stats(),
            "acquisition": self._acquisition_stats(),
            "estimator": {"mode": "thread"} if self._process is None else self._process.status(),
            "faults": list(self._fault_log),
            "input_age_s": {
                "emg": emg_age if math.isfinite(emg_age) else None,
                "telemetry": tel_age if math.isfinite(tel_age) else None,
            },
            "stale": stale,
        }
