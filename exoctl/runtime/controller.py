"""The controller runtime: acquisition, estimator, control loop, safety and link, wired once.

Used by the HIL runner and by the daemon. Everything a person asks for (start a session,
change assist, e-stop, clear a fault, load another model) reaches the control loop as a request
it executes at the start of its next tick, so no other thread ever touches the loop's objects.
The only blocking exchange with the firmware (the acknowledged Enable) happens here, in the
caller's thread, before assistance is ramped in.

The parts (ring buffer, estimator, loop, link, acquisition) are private: the daemon and the
HIL use the methods below (``status``, ``read_ticks``, ``read_emg``, ``swap_model``,
``model_identity``, ``threads``, ...), so what they may rely on is written down here and a
change inside the runtime cannot break them unseen. The link is any
:class:`firmware_bridge.link_api.Link`: the serial ``HostLink`` built from the configuration,
or one handed in (the in-process ``FakeLink`` in tests/runtime/test_controller.py).

Why this module is longer than most: ``Controller`` is the one facade the daemon and the HIL
may use, so its many short methods (most a few lines) stay together as that written contract;
the parts it wires live in their own modules.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict
from typing import TYPE_CHECKING, TypeVar

import numpy as np

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.acquisition.sources import Acquisition, make_acquisition
from exoctl.config.assist_level import AssistLevelError, check_levels
from exoctl.config.schema import Config
from exoctl.control.loop import ControlLoop
from exoctl.control.safety import RecordingHealth, SafetyState
from exoctl.control.timing import reduce_timer_slack
from exoctl.errors import ExoctlError
from exoctl.runtime.estimator_process import EstimatorProcess, EstimatorProcessError
from exoctl.runtime.readings import ControllerReadings, SessionInfo
from exoctl.runtime.realtime import (
    RealtimeReport,
    ThreadRole,
    apply_realtime,
    raise_threads,
    session_gc,
    session_switch_interval,
)
from exoctl.signal.calibration import load_calibration
from firmware_bridge.link import HostLink
from firmware_bridge.link_api import Link, LinkThread

if TYPE_CHECKING:  # the model runtime (onnxruntime, scipy) is imported only where it runs
    from exoctl.estimation.estimator import Estimator

T = TypeVar("T")

_LINK_ROLES = {
    LinkThread.READER: ThreadRole.LINK_READER,
    LinkThread.SUPERVISOR: ThreadRole.LINK_SUPERVISOR,
}


class ControllerError(ExoctlError, RuntimeError):
    """A request the controller refuses; the message says why, for the clinician."""


class Controller(ControllerReadings):
    def __init__(
        self,
        cfg: Config,
        log_seconds: float = 600.0,
        link: Link | None = None,
        recording: RecordingHealth | None = None,
    ) -> None:
        """``link``: the link to the firmware; by default a ``HostLink`` on the configured
        serial port (a test or an offline mode hands in a ``FakeLink``). ``recording``: the
        session recorder's health (the daemon's recorder publishes it), a safety input."""
        self.cfg = cfg
        self.joints = cfg.joint_names
        fs = cfg.emg.sampling_rate_hz
        # estimator.process: acquisition, signal chain and model in a supervised child process
        # (exoctl.runtime.estimator_process), handing estimates over in shared memory;
        # otherwise they run in the loop's thread.
        self._process: EstimatorProcess | None = None
        self._estimator: Estimator | None = None
        if cfg.estimator.process:
            k = load_calibration(cfg.estimator.calibration).k
            self._process = EstimatorProcess(cfg, len(cfg.emg.muscles), k)
            try:
                self._process.start()  # loads and checks the model there; its errors here
            except BaseException:
                self._process.shutdown()
                raise
            self._ring: RingBuffer = self._process.ring
        else:
            from exoctl.estimation.estimator import build_estimator

            self._ring = RingBuffer(int(cfg.emg.ring_buffer_s * fs), len(cfg.emg.muscles))
            self._estimator = build_estimator(cfg)
        rate = cfg.tick_rate_hz
        self._link: Link = link or HostLink(
            cfg.device.serial.port,
            cfg.device.serial.baudrate,
            len(self.joints),
            heartbeat_period_s=cfg.device.heartbeat_period_s,
            telemetry_timeout_s=cfg.safety.telemetry_timeout_s,
            low_latency=cfg.device.serial.low_latency,
            joint_names=self.joints,  # the handshake refuses a device with other joints
            # ... and one whose own torque limit is below the configured one
            torque_limits_nm=[j.torque_limit_nm for j in cfg.device.joints],
            # ... and one whose id (firmware version) is not an accepted one
            accepted_device_ids=cfg.device.accepted_device_ids,
        )
        self._loop = ControlLoop.from_config(
            cfg,
            self._ring,
            self._estimator,
            self._link,
            log_capacity=int(log_seconds * rate),
            recording=recording,
            estimates=None if self._process is None else self._process.estimates,
        )
        self._assist = self._loop.assist
        self._safety = self._loop.safety
        self._acquisition: Acquisition | None = None
        self._session: SessionInfo | None = None
        self._fault_log: deque[dict] = deque(maxlen=10000)
        """Every fault the safety layer detected, drained from it by ``collect_events``."""
        self._realtime_report: RealtimeReport | None = None
        self._memory_report: RealtimeReport | None = None
        self._freeze_gc_in_sessions = False
        self._session_gc: contextlib.AbstractContextManager[None] | None = None
        self._session_switch: contextlib.AbstractContextManager[None] | None = None
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
            self._memory_report = apply_realtime(None, None, True)
        # The EMG stream first: its identity checks take a second or more (the look for a
        # second stream with its source id), and once handshaken the firmware latches a host
        # timeout on any silence of device.command_timeout_s, which the link's heartbeats only
        # prevent reliably once they run at real-time priority (after the loop starts).
        if self._process is not None:
            self._process.acquire()  # in the estimator process, which then idles
        else:
            self._acquisition = make_acquisition(self.cfg.emg, self._ring)
        self._link.open()
        self._link.handshake(timeout_s=handshake_timeout_s)
        if self._acquisition is not None:
            self._acquisition.start()
        self._wait_for_inputs(timeout_s=max(2.0, handshake_timeout_s))
        self._loop.start()
        if self._process is not None:
            self._process.supervise()
        if realtime_priority:
            self.apply_realtime(realtime_priority)

    def _wait_for_inputs(self, timeout_s: float) -> None:
        """Start the loop only once EMG and telemetry flow, so start-up is not a fault."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            emg_fresh = time.monotonic() - self._ring.last_arrival < self.cfg.safety.emg_timeout_s
            if emg_fresh and self._link.healthy:
                return
            time.sleep(0.005)
        missing = []
        if time.monotonic() - self._ring.last_arrival >= self.cfg.safety.emg_timeout_s:
            err = self._acquisition.error if self._acquisition else None
            if self._process is not None:
                err = self._process.acquisition_error()
            missing.append(f"no EMG samples{f' ({err})' if err else ''}")
        if not self._link.healthy:
            missing.append(f"firmware telemetry not flowing ({self._link.last_error})")
        raise ControllerError(f"inputs not ready after {timeout_s} s: {'; '.join(missing)}")

    def shutdown(self, ramp_out: bool = True) -> None:
        if self._session is not None and ramp_out:
            with contextlib.suppress(ControllerError):
                self.stop_session()
        self._loop.stop()
        self._end_session_runtime()  # a session not stopped (no ramp-out) ends here
        with contextlib.suppress(Exception):
            self._link.disable(timeout_s=0.2)
        if self._acquisition is not None:
            self._acquisition.stop()
        if self._process is not None:
            self._process.shutdown()
        self._link.close()

    def threads(self) -> dict[ThreadRole, threading.Thread]:
        """The controller's running threads by role: the loop and the threads that feed it."""
        out: dict[ThreadRole, threading.Thread] = {}
        if self._loop.thread is not None:
            out[ThreadRole.CONTROL_LOOP] = self._loop.thread
        for role, t in self._link.threads().items():
            out[_LINK_ROLES[role]] = t
        if self._acquisition is not None and self._acquisition.thread is not None:
            out[ThreadRole.ACQUISITION] = self._acquisition.thread
        return out

    def apply_realtime(self, priority: int | None, lock_memory: bool = False) -> RealtimeReport:
        """Real-time set-up as far as the system permits; returns what was granted.

        SCHED_FIFO is per thread, so it is applied *in* the loop thread; the threads that feed
        the loop (serial reader, EMG acquisition, link supervisor) go just below it, each
        handed over by reference with its role (``ThreadRole``), because a loop at SCHED_FIFO
        whose inputs starve at SCHED_OTHER only trips its own watchdogs. Sessions then run
        with the garbage collector frozen (see ``start_session``). Locking memory of a running
        loop stalls it while pages fault in: prefer ``start(lock_memory=)``.
        """
        rep = self.call_in_loop(
            lambda now: apply_realtime(priority or None, None, lock_memory), timeout=2.0
        )
        if priority:
            feeders = self.threads()
            feeders.pop(ThreadRole.CONTROL_LOOP, None)  # set in its own thread, above
            threads = raise_threads(feeders, priority)
            rep.notes.append(f"input threads: {threads}")
            if self._process is not None:  # the estimator, just below the loop, as in-process
                rep.notes.append(self._process.raise_priority(max(1, int(priority) - 1)))
            self._freeze_gc_in_sessions = True
        self._realtime_report = rep
        return rep

    @property
    def realtime_report(self) -> RealtimeReport | None:
        """What ``apply_realtime`` was granted (None: never asked)."""
        return self._realtime_report

    # ---------------------------------------------------------------- requests
    def submit(self, request: Callable[[float], None]) -> None:
        """Run ``request(now)`` in the loop thread at the start of its next tick; no wait."""
        self._loop.submit(request)

    @property
    def pending_requests(self) -> int:
        """Requests queued for the loop's next tick."""
        return len(self._loop.requests)

    def call_in_loop(self, fn: Callable[[float], T], timeout: float = 1.0) -> T:
        """Run fn(now) in the loop thread and wait for its result."""
        done = threading.Event()
        box: dict = {}

        def request(now: float) -> None:
            try:
                box["value"] = fn(now)
            except Exception as e:
                box["error"] = e
            done.set()

        self._loop.submit(request)
        if not done.wait(timeout):
            raise ControllerError("the control loop did not answer (is it running?)")
        if "error" in box:
            raise box["error"]
        return box.get("value")  # type: ignore[return-value]

    def start_session(
        self,
        patient: str,
        protocol: str | None = None,
        assist: float | Mapping[str, float] | None = None,
    ) -> SessionInfo:
        with self._lock:
            if self._session is not None:
                raise ControllerError(
                    f"a session is already running (patient {self._session.patient})"
                )
            if self._safety.state in (SafetyState.FAULT_LATCHED, SafetyState.ESTOP):
                held = ", ".join(self._safety.active_conditions[0])
                raise ControllerError(
                    f"safety state is {SafetyState(self._safety.state).name}"
                    f"{f' ({held})' if held else ''}: a person must clear it first "
                    "(exoctl fault clear)"
                )
            if not self._link.healthy:
                raise ControllerError(f"the firmware link is not healthy: {self._link.last_error}")
            gains = self._gains(assist)
            if self._process is not None:  # the estimator warms up, then runs every tick
                self._process.set_session(True)
            if not self._link.enable(timeout_s=0.5):
                if self._process is not None:
                    self._process.set_session(False)
                raise ControllerError("the firmware did not acknowledge Enable")

            def begin(now: float) -> None:
                self._assist.set_gain(gains, now)
                self._assist.start(now)

            self.call_in_loop(begin)
            self._session = SessionInfo(patient, protocol, time.time(), gains)
            if self._freeze_gc_in_sessions and self._session_switch is None:
                # With real-time priorities only: the loop gets the interpreter lock back
                # within a fraction of its period. At default scheduling on a loaded machine a
                # short interval also makes the loop hand the lock to threads that then wait
                # for a CPU, so it is not applied there.
                self._session_switch = session_switch_interval()
                self._session_switch.__enter__()
            if self._freeze_gc_in_sessions and self._session_gc is None:
                # No collector pauses until the session ends; no forced full collection either,
                # which would hold the GIL past the link's heartbeat deadline.
                self._session_gc = session_gc(collect=False)
                self._session_gc.__enter__()
            return self._session

    def stop_session(self, wait_ramp: bool = True) -> None:
        with self._lock:
            if self._session is None:
                raise ControllerError("no session is running")
            self.call_in_loop(self._assist.stop)
            if wait_ramp:  # until the loop has commanded zero, bounded by the ramp + margin
                deadline = time.monotonic() + self.cfg.control.ramp_out_s + 0.5
                while time.monotonic() < deadline and np.any(self._safety.last_command != 0.0):
                    time.sleep(0.005)
            self._link.disable(timeout_s=0.5)
            self._session = None
            if self._process is not None:  # idle: no model runs until the next session
                with contextlib.suppress(ExoctlError):
                    self._process.set_session(False)
            self._end_session_runtime()

    def _end_session_runtime(self) -> None:
        """The process as it was before the session: automatic garbage collection resumes and
        the previous switch interval is back (at a session's stop, or a shutdown in one)."""
        if self._session_gc is not None:
            self._session_gc.__exit__(None, None, None)
            self._session_gc = None
        if self._session_switch is not None:
            self._session_switch.__exit__(None, None, None)
            self._session_switch = None

    def set_assist(self, assist: float | Mapping[str, float]) -> dict[str, float]:
        """Change the assist level of the joints ``assist`` names (a number: every joint);
        every other joint keeps its level. Returns every joint's target level afterwards."""
        with self._lock:
            levels = self._levels(assist)
            named = dict.fromkeys(self.joints, levels) if isinstance(levels, float) else levels

            def change(now: float) -> dict[str, float]:
                self._assist.set_gain(named, now)
                return self._assist.gains

            gains = self.call_in_loop(change)
            if self._session is not None:
                self._session.gains = dict(gains)
            return gains

    def assist_levels(self) -> dict[str, dict[str, float]]:
        """Each joint's assist level: ``target`` (what was last set for it) and ``in_force``
        (where its ramp towards the target is now), read in the loop thread."""
        return self.call_in_loop(
            lambda now: {"target": self._assist.gains, "in_force": self._assist.gains_at(now)}
        )

    def estop(self) -> None:
        """Zero torque at the next tick and latch; also tell the firmware directly."""
        self._loop.submit(self._safety.estop)
        try:
            self._link.send_torque(np.zeros(len(self.joints)))  # not the hot path
            self._link.disable(timeout_s=0.1)
        except Exception:
            pass

    def clear_fault(self) -> bool:
        """A person's action. On success the estimator restarts if a NaN poisoned its state,
        and a running session ramps assistance in again from zero."""

        def clear(now: float) -> bool:
            if not self._safety.clear_fault(now):
                return False
            est = self._estimator
            if est is not None and not np.isfinite(est.estimate).all():
                est.reset()
            if self._session is not None:
                self._assist.start(now)
            return True

        with self._lock:
            if self._process is not None and not np.isfinite(self._loop.estimates.estimate).all():
                self._process.reset()  # a NaN poisoned the estimator's state: start it afresh
            # The firmware latches its own faults (e.g. host timeout after a cable pull) and
            # keeps its actuators off until enabled again; while either shows in telemetry the
            # safety layer stays tripped. This is the person's act that restores both: clear the
            # firmware's faults and, for a running session, enable it again. That is safe while
            # the safety layer is still latched: it commands zero until its own latch clears.
            acted_at = None
            if self._link.healthy:
                tel = self._link.latest_telemetry()
                if tel is not None and tel.fault_bits:
                    self._link.clear_faults(timeout_s=0.5)
                    acted_at = time.monotonic()
                if self._session is not None and not self._link.enabled:
                    self._link.enable(timeout_s=0.5)
                    acted_at = time.monotonic()
            if acted_at is not None:
                # Let telemetry from after our own act arrive and one tick evaluate it. The
                # safety clear itself is tried once: a retry loop could clear an e-stop that
                # someone pressed meanwhile.
                deadline = acted_at + 0.3
                while time.monotonic() < deadline:
                    tel = self._link.latest_telemetry()
                    if tel is not None and tel.host_time > acted_at and not tel.fault_bits:
                        break
                    time.sleep(0.005)
                self.call_in_loop(lambda now: None)  # the next tick evaluates fresh inputs
                self.call_in_loop(lambda now: None)  # ... and has finished doing so
            return bool(self.call_in_loop(clear))

    def clear_firmware_faults(self, timeout_s: float = 0.5) -> bool:
        """Ask the firmware to clear its latched faults (only those; the safety layer's latch
        is ``clear_fault``'s). True once the firmware acknowledged."""
        return self._link.clear_faults(timeout_s=timeout_s)

    def swap_model(self, cfg: Config) -> None:
        """Run the estimator that ``cfg`` names (model and calibration) from the next tick on.

        Between sessions only. Whatever loading raises for a file that cannot be used
        (ModelError, CalibrationError, ...) propagates unchanged; ControllerError when a
        session runs or the new estimator has other synergies or muscles than the running one
        (the loop's records are sized for those: that needs a restart).
        """
        if self._session is not None:
            raise ControllerError(
                "a session is running: load a model or calibration between sessions"
            )
        if self._process is not None:
            try:  # loaded and checked in the estimator process; its errors unchanged
                self._process.swap(cfg)
            except EstimatorProcessError as e:
                raise ControllerError(str(e)) from None
            self.cfg = cfg
            return
        from exoctl.estimation.estimator import build_estimator

        est = build_estimator(cfg)
        old = self._estimator
        assert old is not None
        if est.k != old.k or est.n_muscles != old.n_muscles:
            raise ControllerError(
                f"the new estimator has {est.k} synergies and {est.n_muscles} muscles, the running "
                f"one {old.k} and {old.n_muscles}: restart the daemon with the new configuration"
            )
        self.call_in_loop(lambda now: self._loop.use_estimator(est))
        self._estimator = est
        self.cfg = cfg

    def collect_events(self, include_pending: bool = False) -> list[dict]:
        """Move the safety layer's fault records into the fault log (runs in the loop thread).
        With none recorded it returns at once, without a request (which would wake an idle
        loop for a tick: the daemon's pump asks every 50 ms)."""
        if not self._safety.has_events:
            return []
        if not self._loop.running:
            events = self._safety.events(include_pending=include_pending)
        else:
            events = self.call_in_loop(
                lambda now: self._safety.events(include_pending=include_pending)
            )
        new = [asdict(e) for e in events]
        self._fault_log.extend(new)
        return new

    def _levels(self, assist: float | Mapping[str, float]) -> float | dict[str, float]:
        """``assist`` checked: one level for every joint, or levels for named joints."""
        try:
            return check_levels(assist, self.joints)
        except AssistLevelError as e:
            raise ControllerError(str(e)) from None

    def _gains(self, assist: float | Mapping[str, float] | None) -> dict[str, float]:
        """A new session's levels: the configured ones, overridden by what ``assist`` names."""
        base: dict[str, float] = {j: g for j, g in self.cfg.control.assist_gain.items()}
        if assist is None:
            return base
        levels = self._levels(assist)
        if isinstance(levels, dict):
            base.update(levels)
        else:
            base = dict.fromkeys(self.joints, levels)
        return base
