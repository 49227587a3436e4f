"""`exoctl hil`: the simulator and the controller together, scored against the truth.

The simulator runs in a child process (LSL outlet + emulated firmware on a pty); the
controller runs here exactly as it would on the exoskeleton, configured only with the pty's
path and the LSL stream's source id. When the run ends the simulator hands back the true human
torque of every EMG sample it emitted, stamped in LSL time, and each tick's estimate is scored
against the truth at the stamp of the newest EMG sample that estimate used.
"""

from __future__ import annotations

import multiprocessing as mp
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exoctl.config import Config, load_config
from exoctl.hil.simulator import simulator_process
from exoctl.runtime import Controller, ControllerError

WARMUP_S = 2.0  # filter transients and the assist ramp-in are not scored


@dataclass
class Injection:
    """A timed fault: ``side`` is 'simulator' (EMG, firmware, wire) or 'controller'."""

    at_s: float
    kind: str
    side: str = "simulator"
    params: dict = field(default_factory=dict)


class SimulatorHandle:
    """The parent's end of the simulator process."""

    def __init__(self, config_path: Path | None, overrides: dict) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=simulator_process,
            args=(str(config_path) if config_path else None, overrides, child),
            name="exoctl-simulator",
            daemon=True,
        )
        self.proc.start()
        child.close()

    def wait_ready(self, timeout: float = 30.0) -> dict:
        if not self.conn.poll(timeout):
            self.kill()
            raise RuntimeError("the HIL simulator did not start in time")
        kind, payload = self.conn.recv()
        if kind != "ready":
            self.kill()
            raise RuntimeError(f"the HIL simulator failed to start: {payload}")
        return payload

    def request(self, msg: str, args: dict | None = None, timeout: float = 10.0):
        self.conn.send((msg, args or {}))
        if not self.conn.poll(timeout):
            raise RuntimeError(f"the HIL simulator did not answer {msg!r}")
        kind, payload = self.conn.recv()
        if kind == "error":
            raise RuntimeError(f"simulator: {payload}")
        return payload

    def stop(self) -> dict:
        try:
            return self.request("stop", timeout=15.0)
        finally:
            self.proc.join(5.0)
            self.kill()

    def kill(self) -> None:
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(2.0)


def score(
    stamps: np.ndarray,
    estimates: np.ndarray,
    truth_stamps: np.ndarray,
    truth: np.ndarray,
    joints: tuple[str, ...],
) -> tuple[dict, dict]:
    """R^2 and RMSE per joint of estimates against the truth at the same LSL time."""
    ok = np.isfinite(stamps) & (stamps >= truth_stamps[0]) & (stamps <= truth_stamps[-1])
    r2, rmse = {}, {}
    for j, name in enumerate(joints):
        y = np.interp(stamps[ok], truth_stamps, truth[:, j])
        yhat = estimates[ok, j]
        ss_tot = float(np.sum((y - y.mean()) ** 2)) if y.size else 0.0
        ss_res = float(np.sum((y - yhat) ** 2))
        r2[name] = round(1.0 - ss_res / ss_tot, 4) if ss_tot > 0 else float("nan")
        rmse[name] = round(float(np.sqrt(np.mean((y - yhat) ** 2))), 3) if y.size else float("nan")
    return r2, rmse


def run_hil(
    duration_s: float,
    config_path: Path | None = None,
    cfg_overrides: dict | None = None,
    injections: list[Injection] | None = None,
) -> dict:
    """Run the bench for ``duration_s`` of assisted walking; return the summary document."""
    base = load_config(config_path)
    overrides = cfg_overrides or {}
    sim = SimulatorHandle(config_path, overrides)
    controller: Controller | None = None
    endpoints = sim.wait_ready()  # kills the simulator itself if it failed
    try:
        cfg: Config = base.with_overrides(**overrides) if overrides else base
        cfg = cfg.with_overrides(
            device={"serial": {"port": endpoints["port"]}},
            emg={"source": "lsl", "lsl": {"source_id": endpoints["source_id"]}},
        )
        controller = Controller(cfg, log_seconds=duration_s + 30.0)
        controller.start()
        controller.start_session("hil-simulated-patient", protocol="hil-walking")
        t_start = time.monotonic()
        pending = sorted(injections or [], key=lambda i: i.at_s)
        injected: list[dict] = []
        while (elapsed := time.monotonic() - t_start) < duration_s:
            while pending and pending[0].at_s <= elapsed:
                inj = pending.pop(0)
                t_inj = time.monotonic()
                sim.request("inject", {"kind": inj.kind, "params": inj.params})
                injected.append({"kind": inj.kind, "injected_at_s": round(t_inj - t_start, 4)})
            time.sleep(min(0.05, duration_s - elapsed))
        stop_error = None
        try:
            controller.stop_session()
        except ControllerError as e:  # reported with the faults, not hidden
            stop_error = str(e)
        loop_summary = controller.loop.summary()
        link_stats = controller.link.stats()
        acq_stats = controller.acquisition.stats() if controller.acquisition else {}
        events = [_event_dict(e) for e in controller.safety.events(include_pending=True)]
        _, log = controller.loop.log.read(0)
        loop_error = controller.loop.error
    finally:
        if controller is not None:
            controller.shutdown(ramp_out=False)
        result = sim.stop()

    emu = result["emulator"]
    truth_stamps, truth = result["truth_stamps"], result["truth_torque"]
    warm = log["t"] >= (log["t"][0] + WARMUP_S) if len(log["t"]) else np.zeros(0, bool)
    r2, rmse = score(
        log["stamp"][warm], log["estimate"][warm], truth_stamps, truth, cfg.joint_names
    )
    faults: list[dict] = []
    faults += events
    if stop_error:
        faults.append({"kind": "session_stop", "detail": stop_error})
    if loop_error:
        faults.append({"kind": "control_loop_died", "detail": loop_error})
    if acq_stats.get("error"):
        faults.append({"kind": "acquisition", "detail": acq_stats["error"]})
    if acq_stats.get("overflow_samples"):
        faults.append(
            {"kind": "emg_overflow", "detail": f"{acq_stats['overflow_samples']} samples"}
        )
    for f in emu.get("faults", []):
        faults.append({"kind": f"firmware:{f}" if isinstance(f, str) else "firmware", "detail": f})
    return {
        "duration_s": duration_s,
        "target_rate_hz": loop_summary["target_rate_hz"],
        "control_rate_hz": loop_summary["control_rate_hz"],
        "ticks": loop_summary["ticks"],
        "commands_sent": link_stats.get("commands_sent"),
        "commands_received": emu.get("commands_received"),
        "r2": r2,
        "rmse_nm": rmse,
        "scored_after_s": WARMUP_S,
        "loop_jitter_us": loop_summary["loop_jitter_us"],
        "tick_cost_us": loop_summary["tick_cost_us"],
        "deadline_misses": loop_summary["deadline_misses"],
        "latency_ms": loop_summary["latency_ms"],
        "sample_age_ms": loop_summary["sample_age_ms"],
        "rtt_ms": {k: link_stats.get(k) for k in ("rtt_ms_p50", "rtt_ms_p99", "rtt_ms_max")},
        "emg_samples": {"sent": result["emg_samples_sent"], "received": acq_stats.get("samples")},
        "limit_violations": emu.get("limit_violations"),
        "injected": injected,
        "faults": faults,
    }


def _event_dict(e) -> dict:
    from dataclasses import asdict, is_dataclass

    return asdict(e) if is_dataclass(e) else {"kind": str(e)}


def format_summary(s: dict) -> str:
    """The same figures as --json, for a person at the bench."""
    lines = [
        f"exoctl HIL run: {s['duration_s']:.1f} s of simulated assisted walking",
        f"  control rate      {s['control_rate_hz']:.2f} Hz (target {s['target_rate_hz']:.0f} Hz), "
        f"{s['deadline_misses']} deadline misses",
        "  tick start error  p50 {p50} us, p99 {p99} us, max {max} us".format(
            **s["loop_jitter_us"]
        ),
        "  tick cost         p50 {p50} us, p99 {p99} us, max {max} us".format(**s["tick_cost_us"]),
        "  EMG -> command    p50 {p50} ms, p99 {p99} ms (from sample arrival)".format(
            **s["latency_ms"]
        ),
        f"  commands          {s['commands_sent']} sent, {s['commands_received']} received by "
        f"the firmware, {s['limit_violations']} over its limits",
        f"  torque estimate   (scored after {s['scored_after_s']:.0f} s)",
    ]
    for j in s["r2"]:
        lines.append(f"    {j:<8} R^2 {s['r2'][j]:.3f}   RMSE {s['rmse_nm'][j]:.2f} N m")
    if s["faults"]:
        lines.append(f"  faults ({len(s['faults'])}):")
        for f in s["faults"]:
            lines.append(f"    - {f.get('kind')}: {f.get('detail', '')}")
    else:
        lines.append("  faults            none")
    return "\n".join(lines)
