"""The estimator in its own process, supervised: EMG acquisition, ring buffer, signal chain, model.

Why a process: the control loop's tick (newest telemetry -> assist law -> safety layer -> frame
out) must not wait behind the interpreter lock while other threads filter EMG or run the
model. Here the acquisition thread, the causal filters, activation dynamics, NNLS synergies
and the ONNX model run in a child process: a fresh interpreter, as the ``spawn`` start method
makes (the daemon is threaded: a plain fork could copy a lock another thread holds), started
with ``python -m`` so that a daemonic process (the HIL bench's controller) may start it too.
Three shared-memory segments, created and removed by the daemon's side
(``EstimatorProcess``), join them:

* the ring buffer (``SharedRingBuffer``): the child's acquisition writes it, the daemon copies
  EMG out of it for the recording (``Controller.read_emg``) and reads the newest arrival time
  for the EMG watchdog;
* the estimate block (``SeqlockBlock``, ``estimate_layout``): the child publishes each
  estimate with its activations, synergies, channel flags, the EMG it covers (the newest
  sample's LSL time, the oldest new sample's arrival) and the time it was computed;
* the inputs block (``inputs_layout``): the loop publishes the device's joint state each
  tick, for models whose features use it.

Idle costs nothing: between sessions the child only keeps the acquisition and the channel
monitor going (the ring buffer stays warm; the loop keeps the link alive and its watchdogs
armed) and runs no estimator step; it publishes a heartbeat every ``IDLE_PERIOD_S``. At a
session's start it warms the estimator up (filters, activation, model window) over the ring
buffer's last ``estimator.warmup_s`` of EMG before its first estimate is used, with whatever
model is loaded then, so assistance ramps in from a settled estimate.

Supervised: a child that exits (crash, kill -9) or stops publishing for
``estimator.hang_timeout_s`` (hung, SIGSTOP: it is killed) is started again, in the mode the
daemon asked for last. Meanwhile the EMG and the estimate age: the safety layer's watchdogs
latch a fault and ramp assistance out, and only a person's ``fault clear`` resumes it. Why
(exit code and signal, or how long it was silent) is logged, shown in ``status`` and queued
(``take_restarts``) for the daemon to record in the session.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from exoctl.acquisition.ringbuffer import SharedRingBuffer
from exoctl.acquisition.seqlock import SeqlockBlock
from exoctl.config.schema import Config
from exoctl.control.estimates import (
    SharedEstimates,
    estimate_layout,
    inputs_layout,
    unpack_text,
)
from exoctl.runtime.estimator_child import (  # the child's side
    IDLE_PERIOD_S,
    EstimatorProcessError,
    Segments,
    _child_main,
    _Worker,
    warm_up,
)

log = logging.getLogger(__name__)

__all__ = [
    "IDLE_PERIOD_S",
    "EstimatorProcess",
    "EstimatorProcessError",
    "Segments",
    "_Worker",
    "warm_up",
]


# ------------------------------------------------------------------------- the daemon side
class EstimatorProcess:
    """The daemon's side: shared memory, the child, its requests and its supervisor."""

    def __init__(self, cfg: Config, n_muscles: int, k: int) -> None:
        self.cfg = cfg
        nj = len(cfg.joint_names)
        fs = cfg.emg.sampling_rate_hz
        self.ring = SharedRingBuffer.create(int(cfg.emg.ring_buffer_s * fs), n_muscles)
        self.block = SeqlockBlock.create(estimate_layout(nj, n_muscles, k))
        self.inputs = SeqlockBlock.create(inputs_layout(nj))
        self.estimates = SharedEstimates(self.block, self.inputs, self.ring)
        # The supervisor's own view of the estimate block (the loop's copies are its own).
        self._watch = SeqlockBlock(self.block.shm, self.block.layout, owner=False)
        self._watch_lock = threading.Lock()  # status and the supervisor share that view
        self.segments = Segments(
            self.block.name, self.inputs.name, self.ring.name, self.ring.capacity, n_muscles, nj, k
        )
        self._proc: subprocess.Popen[bytes] | None = None
        self._conn: Connection | None = None
        self._lock = threading.Lock()  # one request at a time on the pipe
        self._session = False
        self._ready_at = 0.0
        self._acquiring = False
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.info: dict[str, Any] = {}
        self._designs: dict = {}  # the child's filter designs, for the next one (a restart)
        self.restarts = 0
        self.priority: int | None = None  # SCHED_FIFO of the child's threads (raise_priority)
        self.last_exit: str | None = None
        self._restarts: deque[dict[str, Any]] = deque(maxlen=100)  # until take_restarts

    # -- lifecycle ------------------------------------------------------------------------
    def start(self, timeout_s: float = 60.0) -> None:
        """Spawn the child and wait until its estimator is loaded (its errors re-raised)."""
        with self._lock:
            self._spawn(timeout_s)

    def _spawn(self, timeout_s: float) -> None:
        ours, theirs = socket.socketpair()
        with ours, theirs:
            proc = subprocess.Popen(
                [sys.executable, "-m", __name__, str(theirs.fileno())],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
            parent = Connection(ours.detach())
        self._proc, self._conn = proc, parent
        parent.send((self.cfg, self.segments, self._session, self._designs))
        self.info, self._designs = self._answer(timeout_s, "start")
        self._ready_at = time.monotonic()  # the hang clock starts here, not at a dead one's beat

    def acquire(self, timeout_s: float = 30.0) -> None:
        """Start the child's EMG acquisition (its stream checks take a second or more)."""
        self.request(("acquire",), timeout_s)
        self._acquiring = True

    def supervise(self) -> None:
        """Start watching the child (after ``start``)."""
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._supervise, name="estimator-supervisor", daemon=True
            )
            self._supervisor.start()

    def shutdown(self) -> None:
        self._stop.set()
        if self._supervisor is not None:
            self._supervisor.join(2.0)
        with self._lock:
            if self._conn is not None:
                with contextlib.suppress(Exception):
                    self._conn.send(("stop",))
            if self._proc is not None:
                _reap(self._proc, 2.0)
        for seg in (self.block, self.inputs):
            seg.close()
        self.ring.close()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    def raise_priority(self, priority: int | None) -> str:
        """Put every thread of the child (estimator, EMG acquisition) on SCHED_FIFO at
        ``priority`` (None: back to default scheduling), now and after each restart: the loop at
        real-time priority whose estimator starves at SCHED_OTHER only trips its own
        estimate_stale watchdog. Returns what was granted, for the real-time report."""
        from exoctl.runtime.realtime import set_thread_priority

        self.priority = priority
        pid = self.pid
        if pid is None:
            return "estimator process: not running"
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError as e:
            return f"estimator process: {e}"
        granted = [set_thread_priority(t, priority) for t in tids]
        return f"estimator process {pid}: " + ", ".join(granted)

    # -- requests -------------------------------------------------------------------------
    def request(self, msg: tuple, timeout_s: float = 10.0) -> Any:
        with self._lock:
            if self._conn is None:
                raise EstimatorProcessError("the estimator process is not running")
            try:
                self._conn.send(msg)
            except OSError as e:
                raise EstimatorProcessError(f"the estimator process is gone ({e})") from None
            return self._answer(timeout_s, msg[0])

    def _answer(self, timeout_s: float, what: str) -> Any:
        assert self._conn is not None
        try:
            if not self._conn.poll(timeout_s):
                raise EstimatorProcessError(
                    f"the estimator process did not answer {what!r} within {timeout_s} s"
                )
            kind, value = self._conn.recv()
        except (EOFError, OSError):
            code = None if self._proc is None else self._proc.poll()
            raise EstimatorProcessError(
                f"the estimator process exited (code {code}) during {what!r}"
            ) from None
        if kind == "error":
            raise value
        return value

    def set_session(self, on: bool, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """Run the estimator (warmed up first) or let it idle."""
        out = self.request(("session", on), timeout_s)
        self._session = on
        return out

    def swap(self, cfg: Config, timeout_s: float = 60.0) -> None:
        self.info = self.request(("swap", cfg), timeout_s)
        self.cfg = cfg

    def reset(self) -> None:
        self.request(("reset",))

    # -- figures --------------------------------------------------------------------------
    def snapshot(self) -> dict[str, float]:
        """The newest published figures (a consistent copy, off the loop's thread)."""
        with self._watch_lock:
            self._watch.read()
            return {k: float(v[0]) for k, v in self._watch.local.items() if len(v) == 1}

    def acquisition_error(self) -> str | None:
        """The child's acquisition error (why the EMG stream failed or was refused)."""
        with self._watch_lock:
            self._watch.read()
            return unpack_text(self._watch.local["error"])

    def estimate_copy(self) -> np.ndarray:
        """The newest published estimate (a copy, off the loop's thread)."""
        with self._watch_lock:
            self._watch.read()
            return self._watch.local["estimate"].copy()

    def status(self) -> dict[str, Any]:
        snap = self.snapshot()
        now, beat = time.monotonic(), snap["heartbeat"]
        return {
            "mode": "process",
            "pid": self.pid,
            "alive": bool(self._proc is not None and self._proc.poll() is None),
            "running_model": bool(snap["session"]),
            "steps": int(snap["steps"]),
            "estimate_age_s": now - snap["computed_at"] if snap["computed_at"] > 0 else None,
            "heartbeat_age_s": now - beat if beat > 0 else None,
            "restarts": self.restarts,
            "last_exit": self.last_exit,
        }

    # -- supervision ----------------------------------------------------------------------
    def _supervise(self) -> None:
        hang = self.cfg.estimator.hang_timeout_s
        while not self._stop.wait(0.05):
            proc = self._proc
            if proc is None:
                continue
            reason = None
            if (code := proc.poll()) is not None:
                sig = f" ({signal.Signals(-code).name})" if -code in signal.valid_signals() else ""
                reason = f"estimator process exited with code {code}{sig}"
            elif not self._lock.locked():  # a request (model load, warm-up) has its own timeout
                beat = max(self.snapshot()["heartbeat"], self._ready_at)
                age = time.monotonic() - beat
                if age > hang:
                    _reap(proc, 0.0)
                    reason = f"estimator process published nothing for {age:.2f} s (hung), killed"
            if reason is not None and not self._stop.is_set():
                self._restart(reason)

    def _restart(self, reason: str) -> None:
        t0, self.last_exit = time.monotonic(), f"{reason}, restarting"
        log.error("%s", self.last_exit)
        try:
            with self._lock:
                if self._conn is not None:
                    self._conn.close()
                self._spawn(timeout_s=60.0)
                if self._acquiring and not self._session:
                    self._conn.send(("acquire",))  # type: ignore[union-attr]
                    self._answer(30.0, "acquire")
            if self.priority:
                self.raise_priority(self.priority)
            self.last_exit = f"{reason}, restarted"
            log.warning("%s", self.last_exit)
        except Exception as e:
            self.last_exit, self._proc = f"{reason}; restart failed: {e}", None
            log.error("%s", self.last_exit)
        self.restarts += 1
        rec = {"t": t0, "reason": reason, "restarted": self._proc is not None, "pid": self.pid}
        self._restarts.append({**rec, "restarts": self.restarts, "detail": self.last_exit})

    def take_restarts(self) -> list[dict[str, Any]]:
        """The restarts since the last call, oldest first: when, why, and whether it worked."""
        return [self._restarts.popleft() for _ in range(len(self._restarts))]


def _reap(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Wait up to ``grace_s`` for the child to exit, then SIGKILL it (a stopped child too)."""
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(2.0)


def main() -> None:
    """``python -m exoctl.runtime.estimator_process FD``: the child, started by
    ``EstimatorProcess`` (a fresh interpreter, like the ``spawn`` start method, but also from
    a daemonic process such as the HIL bench's controller). FD is its end of a socket pair:
    it receives the configuration, the shared segments' names and the mode, then requests."""
    conn = Connection(int(sys.argv[1]))
    try:
        cfg, seg, session, known = conn.recv()
    except EOFError:
        return
    _child_main(cfg, seg, conn, session, known)


if __name__ == "__main__":
    main()
