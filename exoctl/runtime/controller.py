"""The controller runtime: acquisition, estimator, control loop, safety and link, wired once.

Used by the HIL runner and by the daemon. Everything a person asks for (start a session,
change assist, e-stop, clear a fault) reaches the control loop as a request it executes at the
start of its next tick, so no other thread ever touches the loop's objects. The only blocking
exchange with the firmware (the acknowledged Enable) happens here, in the caller's thread,
before assistance is ramped in.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field

import numpy as np

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.acquisition.sources import Acquisition, make_acquisition
from exoctl.config.schema import Config
from exoctl.control.assist import AssistLaw
from exoctl.control.assist_level import AssistLevelError, check_levels
from exoctl.control.loop import ControlLoop
from exoctl.control.safety import ChannelMonitor, SafetyLayer, SafetyState
from exoctl.errors import ExoctlError
from exoctl.estimation.estimator import Estimator, build_estimator
from exoctl.runtime.realtime import RealtimeReport, apply_realtime, raise_threads, session_gc
from exoctl.runtime.timing import reduce_timer_slack
from firmware_bridge.link import HostLink


class ControllerError(ExoctlError, RuntimeError):
    """A request the controller refuses; the message says why, for the clinician."""


@dataclass
class SessionInfo:
    patient: str
    protocol: str | None
    started_at: float
    gains: dict[str, float] = field(default_factory=dict)


class Controller:
    def __init__(self, cfg: Config, log_seconds: float = 600.0) -> None:
        self.cfg = cfg
        self.joints = cfg.joint_names
        fs = cfg.emg.sampling_rate_hz
        self.ring = RingBuffer(int(cfg.emg.ring_buffer_s * fs), len(cfg.emg.muscles))
        self.estimator: Estimator = build_estimator(cfg)
        rate = cfg.control.rate_hz
        self.assist = AssistLaw(self.joints, cfg.control, rate)
        self.safety = SafetyLayer(cfg.device.joints, cfg.safety, rate)
        self.link = HostLink(
            cfg.device.serial.port,
            cfg.device.serial.baudrate,
            len(self.joints),
            heartbeat_period_s=cfg.device.heartbeat_period_s,
            telemetry_timeout_s=cfg.safety.telemetry_timeout_s,
            low_latency=cfg.device.serial.low_latency,
            joint_names=self.joints,  # the handshake refuses a device with other joints
        )
        self.loop = ControlLoop(
            rate,
            self.ring,
            self.estimator,
            self.assist,
            self.safety,
            self.link,
            log_capacity=int(log_seconds * rate),
            channel_monitor=ChannelMonitor(
                len(cfg.emg.muscles),
                fs,
                cfg.safety,
                # emg_flat_range is in raw EMG units; an enveloped, normalised input is ~1.
                flat_range=1e-6 if cfg.estimator.input == "enveloped" else None,
            ),
        )
        self.acquisition: Acquisition | None = None
        self.session: SessionInfo | None = None
        self.fault_log: deque[dict] = deque(maxlen=10000)
        self.realtime_report: RealtimeReport | None = None
        self.memory_report: RealtimeReport | None = None
        self.freeze_gc_in_sessions = False
        self._session_gc: contextlib.AbstractContextManager[None] | None = None
        """Every fault the safety layer detected, drained from it by ``collect_events``."""
        self._lock = threading.Lock()  # serialises requests from API threads, never the loop

    # ---------------------------------------------------------------- lifecycle
    def start(
        self,
        handshake_timeout_s: float = 2.0,
        realtime_priority: int = 0,
        lock_memory: bool = False,
    ) -> None:
        """Connect to the firmware and the EMG stream and start the loop (no assistance yet).

        ``lock_memory`` locks the process's memory before any thread runs; a
        ``realtime_priority`` puts the loop and its input threads on SCHED_FIFO once running.
        """
        reduce_timer_slack()
        if lock_memory:
            self.memory_report = apply_realtime(None, None, True)
        self.link.open()
        self.link.handshake(timeout_s=handshake_timeout_s)
        self.acquisition = make_acquisition(self.cfg.emg, self.ring)
        self.acquisition.start()
        self._wait_for_inputs(timeout_s=max(2.0, handshake_timeout_s))
        self.loop.start()
        if realtime_priority:
            self.apply_realtime(realtime_priority)

    def _wait_for_inputs(self, timeout_s: float) -> None:
        """Start the loop only once EMG and telemetry flow, so start-up is not a fault."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            emg_fresh = time.monotonic() - self.ring.last_arrival < self.cfg.safety.emg_timeout_s
            if emg_fresh and self.link.healthy:
                return
            time.sleep(0.005)
        missing = []
        if time.monotonic() - self.ring.last_arrival >= self.cfg.safety.emg_timeout_s:
            err = self.acquisition.error if self.acquisition else None
            missing.append(f"no EMG samples{f' ({err})' if err else ''}")
        if not self.link.healthy:
            missing.append(f"firmware telemetry not flowing ({self.link.last_error})")
        raise ControllerError(f"inputs not ready after {timeout_s} s: {'; '.join(missing)}")

    def shutdown(self, ramp_out: bool = True) -> None:
        if self.session is not None and ramp_out:
            with contextlib.suppress(ControllerError):
                self.stop_session()
        self.loop.stop()
        with contextlib.suppress(Exception):
            self.link.disable(timeout_s=0.2)
        if self.acquisition is not None:
            self.acquisition.stop()
        self.link.close()

    def apply_realtime(self, priority: int | None, lock_memory: bool = False) -> RealtimeReport:
        """Real-time set-up as far as the system permits; returns what was granted.

        SCHED_FIFO is per thread, so it is applied *in* the loop thread; the threads that feed
        the loop (serial reader, EMG acquisition, link supervisor) go just below it, because a
        loop at SCHED_FIFO whose inputs starve at SCHED_OTHER only trips its own watchdogs.
        Sessions then run with the garbage collector frozen (see ``start_session``). Locking
        memory of a running loop stalls it while pages fault in: prefer ``start(lock_memory=)``.
        """
        rep = self.call_in_loop(
            lambda now: apply_realtime(priority or None, None, lock_memory), timeout=2.0
        )
        if priority:
            threads = raise_threads(  # SCHED_FIFO priorities start at 1
                {
                    "hostlink-reader": max(1, priority - 1),
                    "Acquisition": max(1, priority - 2),
                    "hostlink-supervisor": max(1, priority - 3),
                }
            )
            rep.notes.append(f"input threads: {threads}")
            self.freeze_gc_in_sessions = True
        self.realtime_report = rep
        return rep

    # ---------------------------------------------------------------- requests
    def call_in_loop(self, fn, timeout: float = 1.0):
        """Run fn(now) in the loop thread and wait for its result."""
        done = threading.Event()
        box: dict = {}

        def request(now: float) -> None:
            try:
                box["value"] = fn(now)
            except Exception as e:
                box["error"] = e
            done.set()

        self.loop.submit(request)
        if not done.wait(timeout):
            raise ControllerError("the control loop did not answer (is it running?)")
        if "error" in box:
            raise box["error"]
        return box.get("value")

    def start_session(
        self,
        patient: str,
        protocol: str | None = None,
        assist: float | Mapping[str, float] | None = None,
    ) -> SessionInfo:
        with self._lock:
            if self.session is not None:
                raise ControllerError(
                    f"a session is already running (patient {self.session.patient})"
                )
            if self.safety.state in (SafetyState.FAULT_LATCHED, SafetyState.ESTOP):
                raise ControllerError(
                    f"safety state is {SafetyState(self.safety.state).name}: a person must "
                    "clear it first (exoctl fault clear)"
                )
            if not self.link.healthy:
                raise ControllerError(f"the firmware link is not healthy: {self.link.last_error}")
            gains = self._gains(assist)
            if not self.link.enable(timeout_s=0.5):
                raise ControllerError("the firmware did not acknowledge Enable")

            def begin(now: float) -> None:
                self.assist.set_gain(gains, now)
                self.assist.start(now)

            self.call_in_loop(begin)
            self.session = SessionInfo(patient, protocol, time.time(), gains)
            if self.freeze_gc_in_sessions and self._session_gc is None:
                # No collector pauses until the session ends; no forced full collection either,
                # which would hold the GIL past the link's heartbeat deadline.
                self._session_gc = session_gc(collect=False)
                self._session_gc.__enter__()
            return self.session

    def stop_session(self, wait_ramp: bool = True) -> None:
        with self._lock:
            if self.session is None:
                raise ControllerError("no session is running")
            self.call_in_loop(self.assist.stop)
            if wait_ramp:  # until the loop has commanded zero, bounded by the ramp + margin
                deadline = time.monotonic() + self.cfg.control.ramp_out_s + 0.5
                while time.monotonic() < deadline and np.any(self.safety.last_command != 0.0):
                    time.sleep(0.005)
            self.link.disable(timeout_s=0.5)
            self.session = None
            if self._session_gc is not None:
                self._session_gc.__exit__(None, None, None)  # automatic collection resumes
                self._session_gc = None

    def set_assist(self, assist: float | Mapping[str, float]) -> dict[str, float]:
        with self._lock:
            gains = self._gains(assist)
            self.call_in_loop(lambda now: self.assist.set_gain(gains, now))
            if self.session is not None:
                self.session.gains = gains
            return gains

    def estop(self) -> None:
        """Zero torque at the next tick and latch; also tell the firmware directly."""
        self.loop.submit(self.safety.estop)
        try:
            self.link.send_torque(np.zeros(len(self.joints)))  # not the hot path
            self.link.disable(timeout_s=0.1)
        except Exception:
            pass

    def clear_fault(self) -> bool:
        """A person's action. On success the estimator restarts if a NaN poisoned its state,
        and a running session ramps assistance in again from zero."""

        def clear(now: float) -> bool:
            if not self.safety.clear_fault(now):
                return False
            if not np.isfinite(self.estimator.estimate).all():
                self.estimator.reset()
            if self.session is not None:
                self.assist.start(now)
            return True

        with self._lock:
            # The firmware latches its own faults (e.g. host timeout after a cable pull) and
            # keeps its actuators off until enabled again; while either shows in telemetry the
            # safety layer stays tripped. This is the person's act that restores both: clear the
            # firmware's faults and, for a running session, enable it again. That is safe while
            # the safety layer is still latched: it commands zero until its own latch clears.
            acted_at = None
            if self.link.healthy:
                tel = self.link.latest_telemetry()
                if tel is not None and tel.fault_bits:
                    self.link.clear_faults(timeout_s=0.5)
                    acted_at = time.monotonic()
                if self.session is not None and not self.link.enabled:
                    self.link.enable(timeout_s=0.5)
                    acted_at = time.monotonic()
            if acted_at is not None:
                # Let telemetry from after our own act arrive and one tick evaluate it. The
                # safety clear itself is tried once: a retry loop could clear an e-stop that
                # someone pressed meanwhile.
                deadline = acted_at + 0.3
                while time.monotonic() < deadline:
                    tel = self.link.latest_telemetry()
                    if tel is not None and tel.host_time > acted_at and not tel.fault_bits:
                        break
                    time.sleep(0.005)
                self.call_in_loop(lambda now: None)  # the next tick evaluates fresh inputs
                self.call_in_loop(lambda now: None)  # ... and has finished doing so
            return bool(self.call_in_loop(clear))

    def collect_events(self, include_pending: bool = False) -> list[dict]:
        """Move the safety layer's fault records into ``fault_log`` (runs in the loop thread)."""
        if not self.loop.running:
            events = self.safety.events(include_pending=include_pending)
        else:
            events = self.call_in_loop(
                lambda now: self.safety.events(include_pending=include_pending)
            )
        new = [asdict(e) for e in events]
        self.fault_log.extend(new)
        return new

    def _gains(self, assist: float | Mapping[str, float] | None) -> dict[str, float]:
        base: dict[str, float] = {j: g for j, g in self.cfg.control.assist_gain.items()}
        if assist is None:
            return base
        try:
            levels = check_levels(assist, self.joints)
        except AssistLevelError as e:
            raise ControllerError(str(e)) from None
        if isinstance(levels, dict):
            base.update(levels)
        else:
            base = dict.fromkeys(self.joints, levels)
        return base

    # ---------------------------------------------------------------- observation
    @property
    def healthy(self) -> bool:
        return self.loop.running and self.loop.error is None

    def status(self, window_s: float = 10.0) -> dict:
        """A snapshot for people; loop percentiles over the last ``window_s`` only, because
        percentiles over the whole tick record hold the GIL long enough to cost the loop a
        deadline (measured ~25 ms for 10 minutes of ticks)."""
        tel = self.link.latest_telemetry()
        s = self.session
        return {
            "session": None
            if s is None
            else {
                "patient": s.patient,
                "protocol": s.protocol,
                "started_at": s.started_at,
                "gains": s.gains,
            },
            "safety_state": SafetyState(self.safety.state).name,
            "loop": self.loop.summary(window_s=window_s),
            "loop_error": self.loop.error,
            "estimate_nm": dict(zip(self.joints, self.estimator.estimate.tolist(), strict=True)),
            "command_nm": dict(zip(self.joints, self.safety.last_command.tolist(), strict=True)),
            "applied_nm": None
            if tel is None
            else dict(zip(self.joints, tel.torques.tolist(), strict=True)),
            "link": self.link.stats(),
            "acquisition": None if self.acquisition is None else self.acquisition.stats(),
            "faults": list(self.fault_log),
        }
