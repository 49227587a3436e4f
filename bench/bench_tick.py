"""The whole control tick, stage by stage, in the HIL: thread CPU from the deadline to the write.

    .venv/bin/python -m bench.bench_tick                  # target 1 (and --hil, --daemon)
    .venv/bin/python -m bench --only tick,tick_hil,tick_daemon

The tick's cost aims, each measured for this code and for the baseline (``bench.baseline``:
the tree at git ``BASELINE``, run from a child process) in the same run, as figures and ratios:

1. ``run`` (section ``tick``): the real controller (``Controller``: acquisition thread, estimator
   with the configured model, assist law, channel monitor, safety layer, serial link) in a
   session at 500 Hz against the HIL simulator (synthetic patient streaming EMG over LSL, the
   emulated firmware on a pty, in its own process, as ``exoctl hil`` runs it), with the loop's
   real-time set-up as the HIL applies it. Each stage of the tick is wrapped, on the instance,
   by a probe that reads the thread's CPU clock before and after it (``time.thread_time_ns``:
   what the code costs, not what other processes on a shared machine take from it). Stages:
   EMG ring read, channel monitor, estimator (DSP + model), the model's ``run`` inside it,
   assist law, safety layer, send. The whole tick is the thread CPU from the moment the
   deadline wait returns to the moment the command is written, measured in a second half of
   the session with only those two probes (the stage probes cost ~1 us each, reported).
   Three variants: today's code with its model; this branch with today's window network (the
   same weights in the window form: the model's own ratio); this branch with the shipped model.
2. ``bench_loop.run`` (section ``loop``): the 1 kHz loop with the shipped network.
3. ``bench.bench_tick_whole.run_hil`` (section ``tick_hil``): ``exoctl hil --duration 30`` as ``make demo`` runs it:
   achieved rate, misses, EMG-to-command latency.
4. ``bench.bench_tick_whole.run_daemon`` (section ``tick_daemon``): ``exoctl daemon`` against ``exoctl sim``: CPU share of
   one core and resident memory, idle (no session) and in a session at 500 Hz.

Every result carries the machine's load average: on a shared machine every figure moves with it.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.baseline import BASELINE, baseline_tree, call_in_tree, tree_label
from bench.common import proc_sample
from bench.tick_probes import (
    PROCESS_STAGES,
    STAGES,
    _gc_facts,
    _instrument,
    _pct,
    _per_tick_causes,
    _probe_pair_ns,
    _Probes,
    _stage_names,
    _tight,
    _unwrap,
)

RATE_HZ = 500.0
SETTLE_S = 1.5
TARGETS = {
    "tick_p50_us": 60.0,
    "tick_p99_us": 150.0,
    "non_model_p99_us": 30.0,
    "loop_rate_hz": 999.5,
    "loop_start_error_p99_us": 100.0,
    "loop_miss_fraction": 1e-4,
    "hil_rate_within": 0.002,
    "hil_latency_p99_ms": 2.0,
    "daemon_session_cpu": 0.15,
    "daemon_rss_mib": 120.0,
    "daemon_idle_cpu": 0.03,
}


def _model_facts(path: Path) -> dict[str, Any]:
    from exoctl.estimation.torque_model import TorqueModel

    info = TorqueModel(path).info
    out: dict[str, Any] = {"path": str(path), "input_kind": info.input_kind,
                           "window_ticks": info.window_ticks, "tick_rate_hz": info.tick_rate_hz}  # fmt: skip
    with contextlib.suppress(ImportError):
        import onnx

        out["onnx_nodes"] = len(onnx.load(str(path)).graph.node)
    return out


def _internals(controller: Any) -> tuple[Any, Any]:
    """(the control loop, the safety layer) that the stage probes wrap. The product keeps them
    private (nothing outside the controller reaches in); a benchmark that times each
    stage must, so it does it here, in one place, for this tree (``_loop``, ``_safety``) and
    for the baseline tree (``loop``, ``safety``, public there)."""
    loop = getattr(controller, "_loop", None) or controller.loop
    safety = getattr(controller, "_safety", None) or controller.safety
    return loop, safety


def _clear_start_up_fault(controller: Any, safety: Any, timeout_s: float = 5.0) -> None:
    """A fault latched while the loop waited for the session (a stall on a loaded machine) is
    cleared as a person would, in either tree (the baseline has no firmware-fault clear)."""
    deadline = time.monotonic() + timeout_s
    while safety.state.name in ("FAULT_LATCHED", "ESTOP", "SAFE_STOP"):
        if hasattr(controller, "clear_firmware_faults"):
            with contextlib.suppress(Exception):
                controller.clear_firmware_faults(timeout_s=0.5)
        time.sleep(0.05)
        if controller.clear_fault() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def probe(
    seconds: float = 10.0,
    rate_hz: float = RATE_HZ,
    model: str | None = None,
    realtime_priority: int | None = None,
) -> dict:
    """One HIL session of ``seconds`` in this process (the simulator in a child): the tick's
    thread CPU per stage (first half) and whole (second half). Runs against whichever
    ``exoctl`` is first on the path (see ``bench.baseline``). ``realtime_priority``: the
    loop's SCHED_FIFO priority (None: the configuration's, as ``exoctl hil``; 0: none)."""
    import exoctl
    from exoctl.config.schema import load_config
    from exoctl.hil.processes import ChildHandle
    from exoctl.hil.simulator import simulator_process
    from exoctl.runtime.controller import Controller

    overrides: dict = {"control": {"rate_hz": rate_hz}}
    sim = ChildHandle("HIL simulator", simulator_process, None, overrides)
    controller = None
    try:
        ep = sim.wait_ready()
        ov: dict = {
            "control": {"rate_hz": rate_hz},
            "device": {"serial": {"port": ep["port"]}},
            "emg": {"source": "lsl", "lsl": {"source_id": ep["source_id"]}},
        }
        if model:
            ov["model"] = {"path": model}
        cfg = load_config().with_overrides(**ov)
        controller = Controller(cfg, log_seconds=seconds + SETTLE_S + 10.0)
        prio = cfg.service.realtime_priority if realtime_priority is None else realtime_priority
        controller.start(realtime_priority=prio)  # as exoctl hil (by default)
        rt = controller.realtime_report
        loop, safety = _internals(controller)
        cap = int((seconds / 2 + 2) * rate_hz)
        probes = _Probes(cap)
        _clear_start_up_fault(controller, safety)
        controller.start_session("bench", protocol="bench-tick")
        time.sleep(SETTLE_S)
        load0 = os.getloadavg()[0]
        halves = {}
        sim0, me0 = proc_sample(sim.proc.pid), proc_sample(os.getpid())
        t_start, n0, miss0, k0 = time.monotonic(), loop.stats.n, loop.timer.misses, loop.ticks
        gcs: list[tuple[int, int, bool]] = []  # (generation, ns, in the loop's thread)
        gc_t0 = [0]
        loop_ident = loop.thread.ident if loop.thread is not None else None

        def on_gc(phase: str, info: dict) -> None:
            if phase == "start":
                gc_t0[0] = time.perf_counter_ns()
            else:
                in_loop = threading.get_ident() == loop_ident
                gcs.append((info["generation"], time.perf_counter_ns() - gc_t0[0], in_loop))

        gc.callbacks.append(on_gc)
        for stages in (True, False):
            wrapped = controller.call_in_loop(
                lambda now, s=stages: _instrument(loop, probes, s), timeout=2.0
            )
            time.sleep(0.05)  # the tick that installed the probes is not a whole one
            probes.reset()
            time.sleep(seconds / 2)
            controller.call_in_loop(lambda now, w=wrapped: _unwrap(w), timeout=2.0)
            halves[stages] = {k: probes.get(k).copy() for k in probes.data}
        t_end, n1, miss1, k1 = time.monotonic(), loop.stats.n, loop.timer.misses, loop.ticks
        gc.callbacks.remove(on_gc)
        switch_in_session = sys.getswitchinterval()
        tight: dict[str, dict[str, float]] = {}
        for _ in range(10):  # 10 x 100 calls: a few ms per request, no long stall of the loop
            part = controller.call_in_loop(lambda now: _tight(loop, 100), timeout=2.0)
            for k, v in part.items():
                tight.setdefault(k, v)
                if v["p50"] < tight[k]["p50"]:
                    tight[k] = v
        sim1, me1 = proc_sample(sim.proc.pid), proc_sample(os.getpid())
        load1 = os.getloadavg()[0]
        state = safety.state.name
        faults = [f["kind"] for f in controller.collect_events(include_pending=True)]
        controller.stop_session(wait_ramp=False)
        idx = np.arange(max(n0, n1 - loop.stats.capacity), n1) % loop.stats.capacity
        err = loop.stats.start_error[idx]
        cost = loop.stats.tick_cost[idx]
        lat = loop.stats.latency[idx]
        lat = lat[np.isfinite(lat)]
        st, whole = halves[True], halves[False]
        period_us = 1e6 / rate_hz
        tick = _pct(whole["tick"])
        span = t_end - t_start
        out = {
            "exoctl": str(Path(exoctl.__file__).parent),
            "model": _model_facts(Path(cfg.model.path)),
            "rate_hz": rate_hz,
            "seconds": round(span, 2),
            "realtime": None if rt is None else rt.summary(),
            "load_average_1min": [round(load0, 2), round(load1, 2)],
            "achieved_rate_hz": round((k1 - k0) / span, 2),
            "deadline_misses": int(miss1 - miss0),
            "stages_thread_cpu_us": {s: _pct(st[s]) for s in _stage_names(loop)},
            "tight_loop_thread_cpu_us": tight,
            "tick_thread_cpu_us": tick,
            "tick_body_thread_cpu_us": _pct(whole["tick_body"]),
            "tick_off_cpu_us": _pct(whole["tick_wall"] - whole["tick"]),
            "per_tick_in_stage_half": _per_tick_causes(st),
            "gc_collections": _gc_facts(gcs, span),
            "switch_interval_ms_in_session": round(switch_in_session * 1e3, 3),
            "gc_enabled_at_end": gc.isenabled(),
            "tick_fraction_of_period": {
                "p50": round(tick["p50"] / period_us, 4),
                "p99": round(tick["p99"] / period_us, 4),
            },
            # per tick, in the stage-probed half (probes included): the tick minus its model
            "non_model_thread_cpu_us": _pct(st["tick"] - st["tick_model"]),
            "model_per_tick_thread_cpu_us": _pct(st["tick_model"]),
            "tick_stage_probed_thread_cpu_us": _pct(st["tick"]),
            "probe_pair_cost_us": round(_probe_pair_ns() / 1e3, 3),
            "tick_wall_us": _pct(cost * 1e9),
            "deadline_to_write_wall_us": _pct((err + cost) * 1e9),
            "start_error_us": _pct(err * 1e9),
            "emg_to_command_ms": {
                k: round(v / 1e3, 3) for k, v in _pct(lat * 1e9).items() if k != "n"
            },  # fmt: skip
            "simulator_cpu_share": _share(sim0, sim1, span),
            "controller_process_cpu_share": _share(me0, me1, span),
            "safety_state_at_end": state,
            "faults": faults,
        }
        return out
    finally:
        if controller is not None:
            controller.shutdown(ramp_out=False)
        with contextlib.suppress(Exception):
            sim.stop()


def _share(a: dict | None, b: dict | None, span: float) -> float | None:
    if a is None or b is None or span <= 0:
        return None
    return round((b["cpu_s"] - a["cpu_s"]) / span, 3)


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not b or not np.isfinite(a) or not np.isfinite(b):
        return None
    return round(float(a) / float(b), 2)


def _variants() -> list[tuple[str, Path | None, str | None]]:
    tree, err = baseline_tree()
    out: list[tuple[str, Path | None, str | None]] = []
    if tree is not None:
        out.append(("today", tree, None))
        out.append(("window_model", None, str(tree / "exoctl" / "models" / "network.onnx")))
    out.append(("this_branch", None, None))
    return out


def run(seconds: float = 16.0, quick: bool = False, log=print) -> dict[str, Any]:
    """Target 1: the whole tick per stage, today's code vs this branch, one run."""
    if quick:
        seconds = min(seconds, 4.0)
    tree, err = baseline_tree()
    out: dict[str, Any] = {
        "benchmark": "tick",
        "baseline": BASELINE if tree is not None else err,
        "command": f".venv/bin/python -m bench.bench_tick --seconds {seconds:g}",
        "targets": {k: TARGETS[k] for k in ("tick_p50_us", "tick_p99_us", "non_model_p99_us")},
        "variants": {},
    }
    for name, t, model in _variants():
        log(f"tick at {RATE_HZ:g} Hz for {seconds:g} s: {name} ({tree_label(t)})")
        try:
            r = call_in_tree(t, "bench.bench_tick:probe", {"seconds": seconds, "model": model},
                             timeout_s=seconds + 180.0)  # fmt: skip
            r["code"] = tree_label(t)
            out["variants"][name] = r
            log(f"  tick p50/p99 {r['tick_thread_cpu_us']['p50']}/{r['tick_thread_cpu_us']['p99']} "
                f"us, model {r['stages_thread_cpu_us'].get('model', {}).get('p50')} us p50, load "
                f"{r['load_average_1min']}")  # fmt: skip
        except Exception as e:  # one variant failing still reports the others
            out["variants"][name] = {"error": f"{type(e).__name__}: {e}"}
            log(f"  failed: {out['variants'][name]['error']}")
    out["ratios_today_over_this"] = _tick_ratios(out["variants"], "today")
    out["ratios_window_over_stream"] = _tick_ratios(out["variants"], "window_model")
    this = out["variants"].get("this_branch", {})
    if "tick_thread_cpu_us" in this:
        t, nm = this["tick_thread_cpu_us"], this["non_model_thread_cpu_us"]
        out["target_check"] = {
            "tick_p50_us": [t["p50"], TARGETS["tick_p50_us"], t["p50"] <= TARGETS["tick_p50_us"]],
            "tick_p99_us": [t["p99"], TARGETS["tick_p99_us"], t["p99"] <= TARGETS["tick_p99_us"]],
            "non_model_p99_us": [nm["p99"], TARGETS["non_model_p99_us"],
                                 nm["p99"] <= TARGETS["non_model_p99_us"]],
        }  # fmt: skip
    return out


def _tick_ratios(variants: dict, ref: str) -> dict[str, Any] | None:
    a, b = variants.get(ref, {}), variants.get("this_branch", {})
    if "stages_thread_cpu_us" not in a or "stages_thread_cpu_us" not in b:
        return None
    out: dict[str, Any] = {}
    for key in ("tick_thread_cpu_us", "non_model_thread_cpu_us", "model_per_tick_thread_cpu_us"):
        out[key] = {q: _ratio(a[key][q], b[key][q]) for q in ("p50", "p99")}
    for s in a["stages_thread_cpu_us"].keys() & b["stages_thread_cpu_us"].keys():
        sa, sb = a["stages_thread_cpu_us"][s], b["stages_thread_cpu_us"][s]
        out[s] = {q: _ratio(sa[q], sb[q]) for q in ("p50", "p99")}
    return out


# ---------------------------------------------------------------- target 3: exoctl hil


def hil_once(seconds: float) -> dict:
    """``exoctl hil --duration seconds`` (run_hil, as the CLI and ``make demo`` do), summarised."""
    from exoctl.hil.runner import run_hil

    load0 = os.getloadavg()[0]
    s = run_hil(seconds, None)
    keys = ("target_rate_hz", "control_rate_hz", "ticks", "deadline_misses", "loop_jitter_us",
            "tick_cost_us", "latency_ms", "r2")  # fmt: skip
    out = {k: s.get(k) for k in keys}
    out["load_average_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
    out["faults"] = [f.get("kind") for f in s.get("faults", [])]
    return out


# ---------------------------------------------------------------- target 4: the daemon


def daemon_once(idle_s: float, session_s: float) -> dict:
    """``exoctl daemon`` against ``exoctl sim`` (both children of this process, stopped by pid):
    its CPU share of one core and memory, idle, then in a session."""
    import getpass
    import signal
    import subprocess
    import tempfile

    import yaml

    from exoctl.config.schema import DEFAULT_CONFIG, load_config
    from exoctl.service import client as C

    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="exoctl-bench-tick-") as tmpd:
        tmp = Path(tmpd)
        try:
            info = tmp / "sim.json"
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "sim", "--info-file", str(info)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))  # fmt: skip
            deadline = time.monotonic() + 60.0
            while not info.is_file() and time.monotonic() < deadline:
                time.sleep(0.1)
            ends = json.loads(info.read_text())
            sock = tmp / "run" / "control.sock"
            cfg = load_config(DEFAULT_CONFIG).with_overrides(
                service={"data_dir": str(tmp / "data"), "socket_path": str(sock),
                         "socket_group": None, "allowed_users": [getpass.getuser()],
                         "allowed_groups": []},
                device={"serial": {"port": ends["port"]}},
                emg={"lsl": {"source_id": ends["source_id"]}},
            )  # fmt: skip
            data = cfg.model_dump(mode="json")
            data.pop("source", None)
            (tmp / "exoctl.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
            dlog = (tmp / "daemon.log").open("w+")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "--config", str(tmp / "exoctl.yaml"), "daemon"],
                stdout=dlog, stderr=subprocess.STDOUT,
            )  # fmt: skip
            procs.append(daemon)
            deadline = time.monotonic() + 60.0
            while time.monotonic() < deadline:
                with contextlib.suppress(Exception):
                    if C.call(sock, "status", timeout_s=2.0)["daemon"]["loop_healthy"]:
                        break
                if daemon.poll() is not None:
                    dlog.seek(0)
                    raise RuntimeError(f"daemon exited: {dlog.read()[-300:]}")
                time.sleep(0.2)
            time.sleep(1.0)  # start-up done
            load0 = os.getloadavg()[0]
            idle = _cpu_window(daemon.pid, idle_s)
            C.call(sock, "session.start", {"patient": "BENCH01", "protocol": "bench"})
            time.sleep(1.5)  # the ramp-in and the first recorder flushes
            sess = _cpu_window(daemon.pid, session_s)
            st = C.call(sock, "status", timeout_s=5.0)
            C.call(sock, "session.stop", {"reason": "benchmark done"}, timeout_s=10.0)
            loop = st.get("loop", {})
            return {
                "idle_cpu_share": idle["cpu_share"],
                "session_cpu_share": sess["cpu_share"],
                "session_rss_mib": sess["rss_mib"],
                "peak_rss_mib": sess["hwm_mib"],
                "idle_s": idle_s,
                "session_s": session_s,
                "loop": {
                    k: loop.get(k)
                    for k in (
                        "target_rate_hz",
                        "control_rate_hz",
                        "deadline_misses",
                        "tick_cost_us",
                    )
                },  # fmt: skip
                "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            }
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
                    try:
                        p.wait(20)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait(5)


def _cpu_window(pid: int, seconds: float) -> dict:
    a, t0 = proc_sample(pid), time.monotonic()
    time.sleep(seconds)
    b, t1 = proc_sample(pid), time.monotonic()
    if a is None or b is None:
        raise RuntimeError(f"process {pid} ended during the measurement")
    return {"cpu_share": round((b["cpu_s"] - a["cpu_s"]) / (t1 - t0), 4),
            "rss_mib": round(b["rss_mib"], 1), "hwm_mib": round(b["hwm_mib"], 1)}  # fmt: skip


def format_table(res: dict[str, Any]) -> str:
    """The report's table for any of this module's sections (``make bench`` calls the one
    ``format_table`` of a module for each of its sections)."""
    v = res["variants"]
    names = [n for n in ("today", "window_model", "this_branch") if n in v and "error" not in v[n]]
    rows = ["| thread CPU, us (p50 / p99) | " + " | ".join(names) + " |",
            "| --- |" + " ---: |" * len(names)]  # fmt: skip
    stages = [s for s in (*STAGES, *PROCESS_STAGES)
              if all(s in v[n]["stages_thread_cpu_us"] for n in names)]  # fmt: skip
    for s in stages:
        rows.append(f"| {s} | " + " | ".join(
            f"{v[n]['stages_thread_cpu_us'][s]['p50']:.1f} / {v[n]['stages_thread_cpu_us'][s]['p99']:.1f}"
            for n in names) + " |")  # fmt: skip
    for key, label in (("non_model_thread_cpu_us", "tick minus model (probed)"),
                       ("tick_thread_cpu_us", "whole tick, deadline to write")):  # fmt: skip
        rows.append(f"| {label} | " + " | ".join(
            f"{v[n][key]['p50']:.1f} / {v[n][key]['p99']:.1f}" for n in names) + " |")  # fmt: skip
    rows.append("| fraction of the period | " + " | ".join(
        f"{v[n]['tick_fraction_of_period']['p50']:.3f} / {v[n]['tick_fraction_of_period']['p99']:.3f}"
        for n in names) + " |")  # fmt: skip
    rows.append("| load average (1 min) | " + " | ".join(
        f"{v[n]['load_average_1min'][1]:.2f}" for n in names) + " |")  # fmt: skip
    rows.append("| model | " + " | ".join(
        f"{Path(v[n]['model']['path']).name} ({v[n]['model']['input_kind']}, "
        f"{v[n]['model'].get('onnx_nodes', '?')} nodes)" for n in names) + " |")  # fmt: skip
    return "\n".join(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=16.0)
    ap.add_argument("--hil", action="store_true", help="target 3 instead (exoctl hil)")
    ap.add_argument("--daemon", action="store_true", help="target 4 instead (the daemon)")
    ap.add_argument("--json", action="store_true", help="print the full result as JSON")
    args = ap.parse_args()
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    if args.hil or args.daemon:
        from bench.bench_tick_whole import run_daemon, run_hil

        if args.hil:
            print(json.dumps(run_hil(args.seconds, log=log), indent=1))
        else:
            print(json.dumps(run_daemon(session_s=args.seconds, log=log), indent=1))
    else:
        res = run(args.seconds, log=log)
        print(json.dumps(res, indent=1) if args.json else format_table(res))


if __name__ == "__main__":
    main()
