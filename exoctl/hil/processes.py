"""Child processes of the HIL bench and the parent's handle on them.

The simulator and the controller each run in a process of their own (spawned, not forked: a
fresh interpreter, as on a real machine), so that a scenario can kill the controller outright
and watch the emulated firmware remove torque by its own timeout. They talk to the parent
over a multiprocessing pipe with (message, payload) tuples.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from exoctl.errors import ExoctlError

if TYPE_CHECKING:
    from exoctl.runtime.controller import Controller


class ChildError(ExoctlError, RuntimeError):
    """A child of the bench failed to start or to answer; the message says which and why."""


class ChildHandle:
    """The parent's end of one child process."""

    def __init__(self, name: str, target: Callable, *args) -> None:
        ctx = mp.get_context("spawn")
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=target, args=(*args, child), name=name, daemon=True)
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float = 60.0) -> dict:
        if not self.conn.poll(timeout):
            self.kill()
            raise ChildError(f"the {self.name} did not start within {timeout} s")
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            self.proc.join(5.0)
            raise ChildError(
                f"the {self.name} exited during start-up (exit code {self.proc.exitcode}); "
                "its traceback is printed above"
            ) from None
        if kind != "ready":
            self.kill()
            raise ChildError(f"the {self.name} failed to start: {payload}")
        return payload

    def send(self, msg: str, args: dict | None = None) -> None:
        """A message that expects no answer of its own (e.g. the controller's configuration)."""
        self.conn.send((msg, args or {}))

    def request(self, msg: str, args: dict | None = None, timeout: float = 10.0):
        self.send(msg, args)
        if not self.conn.poll(timeout):
            raise ChildError(f"the {self.name} did not answer {msg!r} within {timeout} s")
        kind, payload = self.conn.recv()
        if kind == "error":
            raise ChildError(f"{self.name}: {payload}")
        return payload

    @property
    def alive(self) -> bool:
        return self.proc.is_alive()

    def stop(self, timeout: float = 20.0) -> Any:  # the child's result, e.g. SimulatorResult
        try:
            return self.request("stop", timeout=timeout)
        finally:
            self.proc.join(5.0)
            self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5.0)


def simulator_entry(config_path: str | None, overrides: dict, firmware: str, replay, conn) -> None:
    """Child entry of the simulator, named here so that the parent, which only pickles a
    reference to it, does not import the simulator (scipy.signal and the patient model: about
    1.7 s) before it can start its children. ``rest``: [a ReplaySpec,] the pipe."""
    from exoctl.hil.simulator import simulator_process

    simulator_process(config_path, overrides, conn, firmware, replay)


def controller_process(config_path: str | None, log_seconds: float, conn) -> None:
    """Child entry: the controller exactly as on the exoskeleton, plus a pipe to the bench.

    It is started beside the simulator, not after it: its interpreter start and imports (about
    2 s) overlap the simulator's. Then it waits for ``("configure", overrides)``, the
    configuration overrides that name the simulator's serial port and LSL source."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    from exoctl.config.schema import load_config
    from exoctl.runtime.controller import Controller

    try:
        kind, overrides = conn.recv()
    except EOFError:  # the bench gave up before the simulator was ready
        return
    if kind != "configure":
        conn.send(("error", f"expected the simulator's endpoints, got {kind!r}"))
        return
    controller = None
    try:
        cfg = load_config(config_path)
        for section in overrides:
            cfg = cfg.with_overrides(**{section: overrides[section]})
        controller = Controller(cfg, log_seconds=log_seconds)
        # As the daemon does: the loop and its input threads get the configured priority.
        controller.start(realtime_priority=cfg.service.realtime_priority)
        rt = controller.realtime_report
        controller.start_session("hil-simulated-patient", protocol="hil-walking")
        rt_text = "SCHED_OTHER (not requested)" if rt is None else rt.summary()
        conn.send(("ready", {"t_session": time.monotonic(), "realtime": rt_text}))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        if controller is not None:
            controller.shutdown(ramp_out=False)
        return
    while True:
        if not conn.poll(0.05):
            controller.collect_events()
            continue
        try:
            msg, args = conn.recv()
        except EOFError:
            controller.shutdown(ramp_out=False)
            return
        try:
            if msg == "status":
                conn.send(("ok", controller.status()))
            elif msg == "estop":
                controller.estop()
                conn.send(("ok", time.monotonic()))
            elif msg == "clear_fault":
                conn.send(("ok", controller.clear_fault()))
            elif msg == "stop":
                conn.send(("done", _finish(controller)))
                return
            else:
                conn.send(("error", f"unknown request {msg!r}"))
        except Exception as e:
            conn.send(("error", f"{type(e).__name__}: {e}"))


def _finish(controller: Controller) -> dict:
    from exoctl.runtime.controller import ControllerError

    stop_error = None
    if controller.session is not None:
        try:
            controller.stop_session()
        except ControllerError as e:  # reported with the faults, not hidden
            stop_error = str(e)
    controller.collect_events(include_pending=True)
    _, log = controller.read_ticks(0)
    snap = controller.status(window_s=None)  # percentiles over the whole run
    out = {
        "loop": snap["loop"],
        "loop_error": snap["loop_error"],
        "link": snap["link"],
        "acquisition": snap["acquisition"] or {},
        "events": snap["faults"],
        "stop_error": stop_error,
        "log": {
            k: log[k]
            for k in (
                *("t", "stamp", "paired", "telemetry_at", "estimate", "command", "angles"),
                "telemetry_age",
            )
        },
        "joints": list(controller.joints),
        "t_link_closed": time.monotonic(),
        "realtime": None,
    }
    controller.shutdown(ramp_out=False)
    return out


def busy_process(seconds: float) -> None:
    """CPU starvation for the bench: spin for ``seconds``."""
    end = time.monotonic() + seconds
    x = np.float64(1.0)
    while time.monotonic() < end:
        for _ in range(10000):
            x = x * 1.0000001 % 3.0


def start_busy(n: int, seconds: float) -> list[mp.process.BaseProcess]:
    ctx = mp.get_context("spawn")
    procs: list[mp.process.BaseProcess] = [
        ctx.Process(target=busy_process, args=(seconds,), daemon=True) for _ in range(n)
    ]
    for p in procs:
        p.start()
    return procs


def path_or_none(p: Path | None) -> str | None:
    return str(p) if p is not None else None
