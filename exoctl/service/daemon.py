"""``exoctl daemon``: the supervisor.

It owns the controller (acquisition, estimator, control loop, safety, firmware link), the
recorder and the control socket, and talks to systemd:

* ``READY=1`` once the firmware handshake succeeded and the loop runs;
* ``WATCHDOG=1`` only while the control loop is healthy: its thread alive, no loop error,
  and its tick counter advancing. A hung loop stops the pings and systemd kills us; the
  firmware has removed torque long before by its own command timeout. Once a stop begins,
  the pings go on from a thread of their own until the daemon exits (systemd keeps the
  watchdog armed while a unit stops, and the ramp-out and the recording's flush can outlast
  it); a stop that hangs is ended by the unit's stop timeout;
* SIGTERM/SIGINT: the session's assistance ramps out, the actuators are disabled, the
  recording is flushed and closed, exit 0. A control loop that dies is a failure: the
  session is closed with that reason and the daemon exits 1 (systemd restarts it; a session
  is never resumed automatically).

Threads: the control loop (the controller's), acquisition, the recorder's writer, the RPC
acceptor and connections, and one *pump* thread (``exoctl.service.pump``), the only reader of
the loop's preallocated logs: every 50 ms it copies the new rows into the recorder and the LSL
outlets, drains the safety layer's fault events, and pings the watchdog here. Nothing here
runs on, or takes a lock shared with, the control thread.

Logs: structlog, one JSON object per line on stdout (journald keeps them).

The RPC methods (the table ``Daemon.RPC_METHODS``) are short steps over the state the lifecycle
owns (the session id, the pump's lock, the recorder, the controller); a session's start and stop
are ``exoctl.service.sessions``, the pump (its own thread and state) ``exoctl.service.pump`` and
the socket ``exoctl.service.rpc``.
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import structlog

from exoctl import __version__
from exoctl.acquisition.lsl_scope import settings_problems
from exoctl.config.schema import Config, load_config
from exoctl.jsonout import jsonable  # strict JSON for replies, logs and recorded events
from exoctl.recordings import recorder as R
from exoctl.recordings.fields import text_problem
from exoctl.service import rpc, sessions
from exoctl.service.logs import configure_logging
from exoctl.service.lsl_outlets import LslPublisher
from exoctl.service.pump import Pump
from exoctl.service.rpc.relay import Front
from exoctl.service.sdnotify import Notifier

log = structlog.get_logger("exoctl.daemon")

HEALTH_STALL_S = 0.5  # no tick for this long: the loop is not healthy
STATUS_WINDOW_S = 10.0  # loop timing in `status` covers the last 10 s
TICK_LOG_S = 60.0
"""Ticks the loop's record holds (each tick's estimate, command, timing: about 360 bytes at
the default configuration). The pump copies new rows out every 50 ms and ``status`` reads the
last ``STATUS_WINDOW_S``: a minute is ample, and is all the memory it takes. Its pages are
touched as ticks are written, so a longer record shows as growth for as long as it takes to
fill (600 s, the controller's default, grew the daemon by about 90 MiB in a session's first
ten minutes)."""


class Daemon:
    """The supervisor; its RPC methods are the names in RPC_METHODS, nothing else."""

    RPC_METHODS = {
        "status": "rpc_status",
        "session.start": "rpc_session_start",
        "session.stop": "rpc_session_stop",
        "assist.set": "rpc_assist_set",
        "estop": "rpc_estop",
        "fault.clear": "rpc_fault_clear",
        "model.load": "rpc_model_load",
        "sessions.list": "rpc_sessions_list",
    }
    RPC_CONCURRENT = ("status", "estop")
    """Not queued behind other requests: the e-stop must never wait for a session's ramp-out,
    and ``status`` only reads."""
    RPC_CACHED_S = {"status": 0.1}
    """At most one ``status`` built per 100 ms however many clients ask (each build holds the
    interpreter for about a millisecond); any other request invalidates it, so an e-stop or
    a new session shows in the next one."""

    def __init__(self, cfg: Config, notifier: Notifier | None = None) -> None:
        from exoctl.runtime.controller import Controller

        self.cfg = cfg
        self.svc = cfg.service
        self.notifier = notifier or Notifier()
        self.started_mono = time.monotonic()
        self.recorder = R.Recorder(
            self.svc.data_dir,
            queue_chunks=self.svc.recorder_queue_chunks,
            flush_interval_s=self.svc.flush_interval_s,
        )
        # The recording's health is a safety input: a full or failing disk removes assistance.
        self.controller = Controller(cfg, log_seconds=TICK_LOG_S, recording=self.recorder.health)
        self.server: rpc.RpcServer | None = None  # the e-stop socket
        self.front: Front | None = None  # the control socket's process
        self.dispatcher: rpc.Dispatcher | None = None
        self.lsl: LslPublisher | None = None
        self.stop_requested = threading.Event()
        self.stop_reason = "daemon stopped"
        self.exit_code = 0
        self.pump = Pump(self.controller, self.recorder, on_period=self._watchdog)
        self._last_ticks = -1
        self._last_tick_change = time.monotonic()
        self._last_ping = 0.0
        self._healthy = False
        self._session_id: str | None = None
        self._gate_lock = threading.Lock()
        self._gate_slot = 0.0  # the deadline whose period a gated caller last started in

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        log.info("starting", version=__version__, config=str(self.cfg.source), pid=os.getpid())
        if rpc.socket_in_use(self.svc.socket_path):  # before touching the hardware
            raise RuntimeError(f"another daemon is already listening on {self.svc.socket_path}")
        for problem in settings_problems():  # LSL has no authentication: never wider silently
            log.warning("lsl_scope_wide", problem=problem)
        self.notifier.status("connecting to the firmware and the EMG stream")
        self.controller.start()
        if self.svc.realtime_priority or self.svc.lock_memory:
            self._realtime()
        self.pump.skip_to_now()
        if self.svc.publish_lsl:
            try:
                self.lsl = LslPublisher(self.cfg)
            except Exception as e:  # publishing is a convenience; control does not need it
                log.warning("lsl_outlets_unavailable", error=str(e))
        # The e-stop socket is served here, by its own thread; the control socket by its own
        # process (exoctl.service.rpc.relay: why), whose calls this process's Dispatcher runs.
        access: dict[str, Any] = {
            "allowed_users": self.svc.allowed_users,
            "allowed_groups": self.svc.allowed_groups,
            "socket_group": self.svc.socket_group,
        }
        self.dispatcher = rpc.Dispatcher(
            rpc.methods_from(self),
            concurrent=self.RPC_CONCURRENT,
            cached=self.RPC_CACHED_S,
            pace=self._after_tick,
        )
        self.server = rpc.RpcServer(
            self.svc.socket_path, {}, dispatcher=self.dispatcher, sockets="estop", **access
        ).start()
        self.front = Front(
            self.svc.socket_path,
            self.dispatcher.handle,
            gate=self._after_tick,
            read_methods=self.RPC_CONCURRENT,
            **access,
        ).start()
        self.pump.start(self.lsl)
        self.notifier.ready("controller running, no session")
        log.info(
            "ready",
            socket=str(self.svc.socket_path),
            data_dir=str(self.svc.data_dir),
            port=self.cfg.device.serial.port,
            watchdog_s=self.notifier.watchdog_s,
        )

    def _realtime(self) -> None:
        """SCHED_FIFO and mlockall as configured (``Controller.apply_realtime``: in the loop
        thread, its inputs just below); what was granted goes to the log, never raises."""
        prio = self.svc.realtime_priority or None
        try:
            rep = self.controller.apply_realtime(prio, self.svc.lock_memory)
        except Exception as e:
            log.warning("realtime_setup_failed", error=str(e))
            return
        (log.info if rep.fully_granted else log.warning)(
            "realtime_setup", summary=rep.summary(), **rep.as_dict()
        )

    def wait(self) -> None:
        """Block until a stop is requested or the control loop dies."""
        while not self.stop_requested.wait(0.2):
            c = self.controller
            if c.loop_error is not None or not c.loop_running:
                self.stop_reason = f"control loop died: {c.loop_error or 'thread ended'}"
                self.exit_code = 1
                log.error("control_loop_died", error=c.loop_error)
                self._record_event("fault", {"kind": "control_loop_died", "detail": c.loop_error})
                break

    def shutdown(self) -> None:
        """Ramp out, disable actuators, flush and close the recording, close the socket; the
        watchdog is fed throughout: the pump, its pinger in normal operation, is blocked and
        then stopped half-way."""
        with self.notifier.keep_alive():
            self._shutdown()

    def _shutdown(self) -> None:
        self.notifier.stopping(self.stop_reason)
        log.info("stopping", reason=self.stop_reason)
        if self.front is not None:
            self.front.close()
        if self.server is not None:
            self.server.close()
        if self.controller.session is not None:
            try:
                sessions.stop(self, self.stop_reason)
            except Exception as e:
                log.error("session_stop_failed", error=str(e))
        try:
            self.controller.shutdown(ramp_out=True)
        except Exception as e:
            log.error("controller_shutdown_failed", error=str(e))
        self.pump.stop()
        try:
            if self.recorder.active_session is not None:
                self.recorder.stop_session(self.stop_reason)
            self.recorder.close()
        except Exception as e:  # whatever reached the disk is committed; say what did not
            log.error("recording_close_failed", error=str(e))
        log.info("stopped", exit_code=self.exit_code)

    def request_stop(self, reason: str) -> None:
        self.stop_reason = reason
        self.stop_requested.set()

    def _update_health(self) -> bool:
        """Healthy: loop thread alive, no loop error, tick counter moved within 0.5 s."""
        c = self.controller
        now = time.monotonic()
        ticks = c.ticks
        if ticks != self._last_ticks:
            self._last_ticks = ticks
            self._last_tick_change = now
        healthy = bool(c.healthy) and now - self._last_tick_change < HEALTH_STALL_S
        if healthy != self._healthy:
            log.info("loop_health", healthy=healthy, ticks=ticks, error=c.loop_error)
            self._healthy = healthy
        return healthy

    def _watchdog(self) -> None:
        healthy = self._update_health()
        now = time.monotonic()
        wd = self.notifier.watchdog_s
        if healthy and wd is not None and now - self._last_ping >= wd / 4:
            self.notifier.watchdog()
            self._last_ping = now

    def _record_event(self, kind: str, detail: Any) -> None:
        """An event for the recording and, as a marker, for LabRecorder."""
        detail = jsonable(detail)
        self.recorder.submit_event(kind, detail)
        if self.lsl is not None:
            self.lsl.marker(kind, detail)

    # ------------------------------------------------------------------ sessions
    # ------------------------------------------------------------------ RPC threads
    def _after_tick(self) -> None:
        """The control socket's gate for work that holds the GIL (a connection's thread
        started, a request parsed, a ``status`` built): returns as soon as a tick has
        finished, so the work has the rest of the period, while the loop sleeps, instead of
        making a due tick wait for the interpreter. (Not "only with so much time left": on a
        loaded machine ticks take over half the period and such a moment may not come.)

        One caller per period: a second caller in the same period waits for the next tick.
        Without that, requests passed the gate back to back after one tick and their work,
        together longer than what was left of the period, ran into the next tick (measured:
        8 clients flooding ``status`` moved the loop's start-error p99 from 0.2 to 1.3-2 ms).

        While a tick runs it sleeps until the tick's expected end (the last tick's cost),
        then looks every 0.5 ms: each look takes the GIL, and a thread preempted while
        holding it stalls the loop. Bounded: at most ten periods, and at once when the loop
        is not running or idle (no session: it ticks slowly, commanding nothing).

        Reads only: the loop's next deadline, the time its last tick wrote a command and
        that tick's cost."""
        c = self.controller
        if not c.loop_running or c.loop_idle:  # idle: no tick is due at a tight deadline
            return
        period = c.period
        with self._gate_lock:
            end = time.monotonic() + 10 * period
            while (now := time.monotonic()) < end:
                nxt = c.next_deadline
                done = nxt > now and c.last_write_time >= nxt - period  # this period's tick
                if done and nxt != self._gate_slot:
                    self._gate_slot = nxt
                    return
                cost = min(c.last_tick_cost, period)
                expected_end = (nxt if done or nxt <= now else nxt - period) + cost
                time.sleep(max(expected_end - now, 0.0005))

    # ------------------------------------------------------------------ RPC methods
    def rpc_status(self) -> dict[str, Any]:
        """Its build holds the GIL about a millisecond: over the control socket it starts just
        after a tick, behind the gate that every relayed call and every cached build passes."""
        with self.pump.lock:
            self.pump.drain_faults()
        st = self.controller.status(window_s=STATUS_WINDOW_S)
        st["faults"] = list(self.pump.recent_faults)
        if st.get("session") is not None:
            st["session"]["id"] = self._session_id
        st["daemon"] = {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_s": round(time.monotonic() - self.started_mono, 1),
            "loop_healthy": self._update_health(),
            "watchdog_s": self.notifier.watchdog_s,
            "pump_error": self.pump.error,
            "control_socket_pid": self.front.pid if self.front else None,
            "control_socket_restarts": self.front.restarts if self.front else 0,
        }
        rs = self.recorder.stats()
        st["recorder"] = {
            k: rs[k]
            for k in ("session", "db_path", "written_chunks", "failed_chunks", "dropped",
                      "queue_depth", "write_errors", "last_error", "uncommitted_s")
        }  # fmt: skip
        return jsonable(st)

    def rpc_session_start(
        self, patient: str, protocol: str | None = None, assist: Any = None
    ) -> dict[str, Any]:
        return sessions.start(self, patient, protocol, assist)

    def rpc_session_stop(self, reason: str = "stopped by clinician") -> dict[str, Any]:
        problem = text_problem("reason", reason)  # before stopping: the reason is recorded
        if problem:
            raise rpc.InvalidParams(problem)
        if self.controller.session is None:
            raise rpc.Refused("no session is running")
        # The pump, which pings the watchdog, waits for its lock while the session ramps out
        # and its recording is closed: pinged meanwhile while the loop stays healthy.
        with self.notifier.keep_alive(self._update_health):
            return sessions.stop(self, reason)

    def rpc_assist_set(self, gains: Any) -> dict[str, Any]:
        from exoctl.runtime.controller import ControllerError

        gains = sessions.check_assist(gains, self.controller.joints)
        if gains is None:
            raise rpc.InvalidParams("gains: give a number or {joint: gain}")
        try:
            applied = self.controller.set_assist(gains)
        except ControllerError as e:
            raise rpc.Refused(str(e)) from None
        # every joint's level after the change, and which ones the change named
        self._record_event("assist_change", {"gains": applied, "set": gains})
        log.info("assist_changed", gains=applied)
        # What happens to assistance depends on these two; the CLI says it in words.
        return {
            "assist_gain": applied,
            "safety_state": self.controller.safety_state.name,
            "session": self.controller.session is not None,
        }

    def rpc_estop(self) -> dict[str, Any]:
        self.controller.estop()
        self._record_event("estop", {"source": "rpc"})
        log.warning("estop", source="rpc")
        return {"safety_state": "ESTOP"}

    def rpc_fault_clear(self) -> dict[str, Any]:
        from exoctl.runtime.controller import ControllerError

        try:
            ok = self.controller.clear_fault()
        except ControllerError as e:
            raise rpc.Refused(str(e)) from None
        state = self.controller.safety_state.name
        if not ok:
            active, degraded = self.controller.active_conditions
            why = "inputs are not all healthy yet"
            if "recording_stalled" in active:
                why = (
                    "the session's recording is still failing "
                    f"({self.recorder.stats()['last_error'] or 'nothing committed'}), and no "
                    "assistance runs unrecorded: free space on the data disk, or stop the "
                    "session"
                )
            raise rpc.Refused(
                f"fault not cleared (state {state}): {why}",
                {"active": active, "degraded": degraded},
            )
        self._record_event("fault_clear", {"state": state})
        log.info("fault_cleared", state=state)
        cleared_at = time.time()
        with self.pump.lock:  # the pump appends to the list
            for f in self.pump.recent_faults:
                if f.get("cleared_at") is None:
                    f["cleared_at"] = cleared_at
        s = self.controller.session
        return {
            "cleared": True,
            "safety_state": state,
            "assist_gain": None if s is None else dict(s.gains),
            "ramp_in_s": self.cfg.control.ramp_in_s,
        }

    def rpc_model_load(
        self, model: str | None = None, calibration: str | None = None
    ) -> dict[str, Any]:
        """Swap the estimator (model and/or calibration) between sessions."""
        from exoctl.runtime.controller import ControllerError

        if model is None and calibration is None:
            raise rpc.InvalidParams("give model and/or calibration")
        if self.controller.session is not None:
            raise rpc.Refused("a session is running: load a model or calibration between sessions")
        over: dict[str, Any] = {}
        for key, path in (("model", model), ("calibration", calibration)):
            if path is not None and (not isinstance(path, str) or not Path(path).is_file()):
                raise rpc.InvalidParams(
                    f"{key}: no such file {path!r} (paths are on the daemon's host)"
                )
        if model is not None:
            over["model"] = {"path": model}
        if calibration is not None:
            over["estimator"] = {"calibration": calibration}
        try:
            cfg = self.cfg.with_overrides(**over)
            self.controller.swap_model(cfg)  # refuses other synergies/muscles, and in a session
        except ControllerError as e:
            raise rpc.Refused(str(e)) from None
        except Exception as e:  # any file that cannot be loaded as a model or calibration
            raise rpc.InvalidParams(f"cannot load: {e}") from None
        self.cfg = cfg
        m, c = sessions.artifacts(self)
        log.info("model_loaded", model=m.path, model_sha256=m.sha256, calibration=c.path,
                 calibration_sha256=c.sha256)  # fmt: skip
        return {"model": m.__dict__, "calibration": c.__dict__}

    def rpc_sessions_list(self, patient: str | None = None) -> list[dict[str, Any]]:
        try:
            return jsonable(R.list_sessions(self.svc.data_dir, patient))
        except R.RecorderError as e:
            raise rpc.InvalidParams(str(e)) from None


def run_daemon(config_path: str | Path | None) -> int:
    """Entry point of ``exoctl daemon``; returns the exit code."""
    configure_logging()
    cfg = load_config(config_path)
    notifier = Notifier()
    daemon: Daemon | None = None
    early_stop: list[str] = []

    def on_signal(signum: int, _frame: Any) -> None:
        reason = f"daemon stopped ({signal.Signals(signum).name})"
        if daemon is not None:
            daemon.request_stop(reason)
        else:
            early_stop.append(reason)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    # `kill -USR1 <pid>` prints every thread's stack to stderr (journald): for a daemon that
    # hangs, the one question that matters is where.
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    try:
        daemon = Daemon(cfg, notifier)
    except Exception as e:
        log.error("init_failed", error=f"{type(e).__name__}: {e}")
        return 1
    if early_stop:  # stopped while loading the model: nothing was started
        log.info("stopped", reason=early_stop[0], exit_code=0)
        daemon.recorder.close()
        return 0
    try:
        daemon.start()
    except Exception as e:
        log.error("start_failed", error=f"{type(e).__name__}: {e}")
        with contextlib.suppress(Exception):
            daemon.controller.shutdown(ramp_out=False)
        with contextlib.suppress(Exception):
            if daemon.front is not None:
                daemon.front.close()
        with contextlib.suppress(Exception):
            if daemon.server is not None:
                daemon.server.close()
        daemon.recorder.close()
        return 1
    try:
        daemon.wait()
    finally:
        daemon.shutdown()
        # The interpreter's final collection walks every object the daemon made: measured
        # 1.5-2 s at load 9, after the last ping, while systemd's watchdog is still armed.
        # Nothing left needs collecting before the process ends: freezing skips that walk.
        gc.freeze()
        notifier.close()
    return daemon.exit_code
