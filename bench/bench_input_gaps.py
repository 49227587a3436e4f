"""How stale the watchdogs' inputs get on a loaded machine: the evidence behind the timeouts.

Why: on a busy 2-core machine an idle daemon latched ``emg_stale`` (newest EMG
sample 0.104 s old against a 0.1 s timeout) about 250 times in 10 minutes. This benchmark runs
the real daemon (controller, pump, recorder, control socket) idle against ``exoctl sim`` (the
amplifier's LSL stream and the firmware on a pty, each a process of its own), and records, at
every control tick, exactly what the safety layer compares with its timeouts: the age of the
newest EMG sample and of the newest telemetry frame (``SafetyInputs.emg_age_s`` /
``telemetry_age_s``, captured by a thin wrapper around ``SafetyLayer.apply``).

Two phases, one after the other in one run:

* ``ambient``: the machine as it is (whatever else runs on it; the load average is recorded);
* ``hog``: plus one busy process per core, started and ended here.

The timeouts are raised to their maximum (1 s) while measuring, so that nothing latches and
every tick is a sample; for each candidate timeout the report counts the *episodes* (maximal
runs of ticks above it): each one is a fault the watchdog would have latched with that timeout,
had a person cleared every fault at once. ``--verify`` instead runs with the configuration's own
timeouts and counts the faults the safety layer actually latched (clearing each, as a person
would), the reproduction of the false faults as they were reported.

    .venv/bin/python -m bench.bench_input_gaps --ambient 600 --hog 300
    .venv/bin/python -m bench.bench_input_gaps --verify --ambient 600 --hog 300

Figures: medians, p99, p99.9 and max, in ms; beside them the loop's own tick start error
(p99) measured in the same run as the reference for "how late was anything on this machine".
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import REPO, local_service, machine

CANDIDATES_S = (0.1, 0.15, 0.2, 0.25, 0.3)


def _hog(seconds: float) -> None:
    end = time.monotonic() + seconds
    x = 1.0
    while time.monotonic() < end:
        for _ in range(20000):
            x = x * 1.0000001 % 3.0


def _episodes(age: np.ndarray, threshold: float) -> int:
    above = age > threshold
    return int(np.count_nonzero(above[1:] & ~above[:-1]) + (1 if above.size and above[0] else 0))


def _dist(v: np.ndarray) -> dict[str, float | None]:
    v = v[np.isfinite(v)] * 1e3
    if not v.size:
        return {"p50_ms": None, "p99_ms": None, "p999_ms": None, "max_ms": None}
    return {
        "p50_ms": round(float(np.median(v)), 2),
        "p99_ms": round(float(np.percentile(v, 99)), 2),
        "p999_ms": round(float(np.percentile(v, 99.9)), 2),
        "max_ms": round(float(v.max()), 2),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


class _Recorder:
    """Wraps SafetyLayer.apply: one row of (emg age, telemetry age) per tick, preallocated."""

    def __init__(self, safety: Any, capacity: int) -> None:
        self.ages = np.full((capacity, 2), np.nan)
        self.n = 0
        self._apply = safety.apply

        def apply(request, estimate, inputs, out):
            i = self.n
            if i < capacity:
                self.ages[i, 0] = inputs.emg_age_s
                self.ages[i, 1] = inputs.telemetry_age_s
                self.n = i + 1
            return self._apply(request, estimate, inputs, out)

        safety.apply = apply  # the loop looks the method up on the instance every tick

    def since(self, start: int) -> np.ndarray:
        return self.ages[start : self.n].copy()


def _thread_policies() -> dict[str, int]:
    """How many of this process's threads run under each scheduling policy (by thread name):
    a SCHED_OTHER thread that delivers input (liblsl's receiver) or holds the GIL (the pump)
    starves with the machine, whatever the loop's own priority."""
    names = {os.SCHED_FIFO: "SCHED_FIFO", os.SCHED_RR: "SCHED_RR", os.SCHED_OTHER: "SCHED_OTHER"}
    out: dict[str, int] = {}
    for task in Path("/proc/self/task").iterdir():
        try:
            comm = (task / "comm").read_text().strip()
            tid = int(task.name)
            pol = names.get(os.sched_getscheduler(tid), "?")
            prio = os.sched_getparam(tid).sched_priority
        except (OSError, ValueError):
            continue
        key = f"{comm}: {pol}" + (f" {prio}" if prio else "")
        out[key] = out.get(key, 0) + 1
    return dict(sorted(out.items()))


def _start_sim(tmp: Path) -> tuple[subprocess.Popen, dict, Path]:
    info = tmp / "sim.json"
    err = tmp / "sim.err"
    sim = subprocess.Popen(
        [sys.executable, "-m", "exoctl.cli", "sim", "--info-file", str(info)],
        stdout=subprocess.DEVNULL,
        stderr=err.open("w"),
        cwd=REPO,
    )
    deadline = time.monotonic() + 120
    while not info.is_file():
        if sim.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"exoctl sim did not start: {err.read_text()[-2000:]}")
        time.sleep(0.1)
    return sim, json.loads(info.read_text()), err


def _emulator_faults(err: Path) -> dict[str, int]:
    """The firmware emulator's own faults (its host timeout), from `exoctl sim`'s exit line."""
    for line in reversed(err.read_text().splitlines()):
        try:
            doc = json.loads(line)
        except ValueError:
            continue
        out: dict[str, int] = {}
        for f in doc.get("emulator", {}).get("faults", []):
            out[str(f.get("fault"))] = out.get(str(f.get("fault")), 0) + 1
        return out
    return {}


def run(
    ambient_s: float = 60.0,
    hog_s: float = 30.0,
    verify: bool = False,
    config: Path | None = None,
    log=print,
) -> dict[str, Any]:
    from exoctl.config.schema import load_config
    from exoctl.service.daemon import Daemon

    base = load_config(config)
    phases = [("ambient", ambient_s), ("hog", hog_s)]
    out: dict[str, Any] = {
        "what": "age of the newest EMG sample / telemetry frame at every control tick, idle daemon",
        "mode": "verify (configured timeouts)" if verify else "measure (timeouts at 1 s)",
        "configured_timeouts_s": {
            "emg_timeout_s": base.safety.emg_timeout_s,
            "telemetry_timeout_s": base.safety.telemetry_timeout_s,
            "command_timeout_s": base.device.command_timeout_s,
        },
        "machine": machine(),
        "cores": os.cpu_count(),
        "phases": {},
    }
    with tempfile.TemporaryDirectory(prefix="exoctl-gaps-") as tmpd:
        tmp = Path(tmpd)
        sim, ends, sim_err = _start_sim(tmp)
        daemon = None
        try:
            safety = {} if verify else {"emg_timeout_s": 1.0, "telemetry_timeout_s": 1.0}
            cfg = base.with_overrides(
                device={"serial": {"port": ends["port"]}},
                emg={"lsl": {"source_id": ends["source_id"]}},
                safety=safety,
                service=local_service(tmp),
            )
            daemon = Daemon(cfg)
            daemon.start()
            rate = cfg.tick_rate_hz
            rec = _Recorder(daemon.controller._safety, int((ambient_s + hog_s + 30) * rate))
            out["scheduling"] = {
                "controller_loop": str(daemon.controller.realtime_report.summary())
                if daemon.controller.realtime_report
                else "SCHED_OTHER (not requested)",
                "simulator": ends.get("realtime"),
                "daemon_threads": _thread_policies(),
            }
            for name, seconds in phases:
                hogs: list[mp.Process] = []
                if name == "hog":
                    ctx = mp.get_context("spawn")
                    hogs = [
                        ctx.Process(target=_hog, args=(seconds + 5,))
                        for _ in range(os.cpu_count() or 1)
                    ]
                    for h in hogs:
                        h.start()
                load0, start, tick0 = _load(), rec.n, daemon.controller.ticks
                t_start = time.monotonic()
                t_end = t_start + seconds
                while time.monotonic() < t_end:
                    time.sleep(0.2)
                    if daemon.controller.safety_state >= 3:  # latched: a person clears it
                        daemon.controller.clear_fault()
                ages = rec.since(start)
                time.sleep(0.2)  # the pump drains the last fault events into fault_log
                faults: dict[str, int] = {}
                for ev in daemon.controller.faults():
                    if t_start <= ev["t_detected"] < t_end:
                        faults[ev["kind"]] = faults.get(ev["kind"], 0) + 1
                for h in hogs:
                    h.kill()
                    h.join(5)
                summary = daemon.controller.loop_summary(window_s=min(seconds, 600))
                emg, tel = ages[:, 0], ages[:, 1]
                out["phases"][name] = {
                    "seconds": seconds,
                    "hogs": len(hogs),
                    "load_avg_start": load0,
                    "load_avg_end": _load(),
                    "ticks": int(ages.shape[0]),
                    "loop_ticks": daemon.controller.ticks - tick0,
                    "emg_age": _dist(emg),
                    "telemetry_age": _dist(tel),
                    "tick_start_error_us": summary.get("loop_jitter_us"),
                    "episodes_above": {
                        f"{t:g}": {"emg": _episodes(emg, t), "telemetry": _episodes(tel, t)}
                        for t in CANDIDATES_S
                    },
                    "degraded_episodes_above_half": {
                        f"{t:g}": {"emg": _episodes(emg, t / 2), "telemetry": _episodes(tel, t / 2)}
                        for t in CANDIDATES_S
                    },
                    "faults_latched": faults,
                }
                log(f"{name}: {json.dumps(out['phases'][name])}")
        finally:
            if daemon is not None:
                daemon.stop_reason = "benchmark done"
                daemon.shutdown()
            sim.send_signal(signal.SIGTERM)
            try:
                sim.wait(20)
            except subprocess.TimeoutExpired:
                sim.kill()
        out["firmware_faults"] = _emulator_faults(sim_err)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_input_gaps", description=__doc__.splitlines()[0]
    )
    ap.add_argument(
        "--ambient", type=float, default=600.0, help="seconds at the machine's own load"
    )
    ap.add_argument(
        "--hog", type=float, default=300.0, help="seconds with one busy process per core"
    )
    ap.add_argument("--verify", action="store_true", help="configured timeouts; count real faults")
    ap.add_argument("--config", type=Path, default=None)
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "input_gaps.json")
    args = ap.parse_args(argv)
    res = run(args.ambient, args.hog, args.verify, args.config)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from exoctl.jsonout import dumps

    args.out.write_text(dumps(res) + "\n")
    print(f"written {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
