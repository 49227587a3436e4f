"""The hard real-time path's targets, every one in one run, beside today's code.

    .venv/bin/python -m bench.bench_realtime                        # the standard figures
    .venv/bin/python -m bench.bench_realtime --vs main              # "today" = another ref
    .venv/bin/python -m bench.bench_realtime --only tick_cpu,loop_1khz  # some figures alone
    .venv/bin/python -m bench.bench_realtime soak --seconds 1800    # 30 min `bench up` soak
    .venv/bin/python -m bench.bench_realtime quota --seconds 300    # 5 min under cpu.max
    .venv/bin/python -m bench.bench_realtime daemon --seconds 30    # only the daemon's cost
    .venv/bin/python -m bench --only realtime                       # through the aggregator
    make bench BENCH_ARGS="--only realtime_quota --quota-seconds 60"

Why one module: each target of the real-time work (the loop's own CPU per tick, the 1 kHz
loop, ``exoctl hil``, the daemon's cost and memory, a long session, a session on half a core)
means something only beside the same measurement of the code as it was, taken in the same run
on the same machine state, with the machine's load next to it. "Today's code" is git ``--vs``
(default: where this checkout left ``main``, its merge base), extracted once
(``bench.baseline.ref_tree``); every measurement runs in a child process importing ``exoctl``
from one tree or the other (``call_in_tree``), measured by this checkout's code.

Figures (``TARGETS`` gives each target):

* ``tick_cpu``: the real-time path's thread CPU per tick (from the deadline wait's return to
  the command written, ``time.thread_time_ns`` in the loop thread, ``bench_tick.probe``), in a
  500 Hz HIL session; p99 and p50.
* ``loop_1khz`` / ``loop_1khz_busy``: the loop at 1 kHz with the real-time set-up (SCHED_FIFO,
  locked memory; ``bench_loop.run_variant``), alone and beside one CPU-bound process per core:
  achieved rate, tick start error p99, deadline misses.
* ``hil``: ``exoctl hil --duration S`` with the default configuration (no real-time
  privileges): rate, misses in % of ticks, EMG->command p99, R^2 per joint (synthetic patient).
* ``daemon``: the daemon against the simulator as ``exoctl bench up`` starts them (its
  configuration, default scheduling): CPU share of one core idle and in a session, and memory,
  each summed over *every process of the daemon's tree* (found by parent pid, not by name: the
  control-socket process and any estimator process count) -- PSS, so shared pages count once.
  The idle window also lists the busiest threads (``threads``: CPU share of one core per
  thread, by the kernel's thread name, from ``/proc/PID/task/TID/stat``), where an idle
  daemon's CPU goes. ``daemon`` alone: ``--seconds`` idle and as long in a session.
* ``soak`` (opt-in, section ``realtime_soak``): the same with one session for ``--seconds``
  (the target: 30 min at load <= 2): faults detected and latched, misses.
* ``quota`` (opt-in, section ``realtime_quota``): the daemon (and its children) in a cgroup
  limited to half a core with a 10 ms period (cgroup v2 ``cpu.max = 5000 10000``; on a
  cgroup v1 host the same CFS bandwidth limit through ``cpu.cfs_quota_us``/``cfs_period_us``),
  the simulator outside it, one 500 Hz session for ``--seconds``: rate, misses %, faults.
  Where no cgroup can be made, the result says which step failed and how to run the same
  limit with systemd (``QUOTA_HOWTO``).

CPU shares are utime + stime of the processes alive at the end of a window over its length
(a process that ended inside the window is not counted). Every figure carries the load
average at its start and end.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from bench.baseline import call_in_tree, merge_base, ref_tree
from bench.cpu_quota import QUOTA_HOWTO, QUOTA_PERIOD_US, QUOTA_US, QuotaCgroup
from bench.process_tree import proc_facts, thread_sample, thread_window, tree_sample, tree_window

TARGETS: dict[str, tuple[str, float]] = {  # key: (comparison, bound)
    "tick_cpu_p99_us": ("<=", 100.0),
    "loop_rate_hz": (">=", 999.5),
    "loop_start_error_p99_us": ("<=", 100.0),
    "loop_misses": ("<=", 2),
    "hil_rate_error_pct": ("<=", 0.2),
    "hil_miss_pct": ("<=", 0.05),
    "hil_latency_p99_ms": ("<=", 5.0),
    "hil_r2_change": ("<=", 0.005),  # |this - today|, per joint
    "daemon_idle_cpu_share": ("<=", 0.03),
    "daemon_session_cpu_share": ("<=", 0.30),
    "daemon_pss_mib": ("<=", 150.0),
    "soak_faults_latched": ("<=", 0),
    "quota_rate_hz": (">=", 500.0 * 0.998),  # "holds 500 Hz": within the HIL's 0.2 %
    "quota_miss_pct": ("<=", 0.1),
    "quota_faults": ("<=", 0),
}
STANDARD = frozenset(("tick_cpu", "loop_1khz", "loop_1khz_busy", "hil", "daemon"))
"""The standard run's figures (``--only`` picks some of them)."""
LOAD_NOTE = "load average (1 min) at the start and the end of the measurement"


# ---------------------------------------------------------------- the daemon, as bench up starts it


def daemon_once(idle_s: float, session_s: float, quota: bool = False, poll_s: float = 2.0) -> dict:
    """``exoctl sim`` and ``exoctl daemon`` as ``exoctl bench up`` starts them (its
    configuration, default scheduling), the daemon's whole process tree measured idle for
    ``idle_s``, then in one session for ``session_s``; with ``quota`` the daemon runs in a
    ``QuotaCgroup`` from its first instruction (moved in before it imports anything), the
    simulator outside. Faults are read from ``status`` every ``poll_s``; a latched one is
    counted and cleared, as a person would, so the session goes on being measured."""
    from exoctl.config.schema import DEFAULT_CONFIG, load_config
    from exoctl.hil.bench import Bench, bench_config, write_bench_config
    from exoctl.service import client as C

    cg = QuotaCgroup() if quota else None
    if cg is not None and cg.path is None:
        return {"unavailable": "; ".join(cg.problems), "how_to": QUOTA_HOWTO}

    class _Bench(Bench):
        def _spawn(self, args: list[str], log_name: str) -> Any:
            p = super()._spawn(args, log_name)
            if args[0] == "daemon" and cg is not None:
                cg.add(p.pid)  # before its imports: every thread and child is born inside
            return p

    # The daemon's threads named in the kernel, for the per-thread figures (thread_names/).
    names = str(Path(__file__).resolve().parent / "thread_names")
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [p for p in (os.environ.get("PYTHONPATH"), names) if p]
    )
    tmp = Path(tempfile.mkdtemp(prefix="exo-rt-"))
    source_id = f"exoctl-rtbench-{uuid.uuid4().hex[:8]}"
    config = tmp / "exoctl.yaml"
    write_bench_config(
        config, bench_config(Path(DEFAULT_CONFIG), tmp, tmp / "exoskeleton", source_id, False),
        Path(DEFAULT_CONFIG),
    )  # fmt: skip
    sock = load_config(config).service.socket_path
    bench = _Bench(tmp, config, tmp / "exoskeleton", source_id)
    out: dict[str, Any] = {"cgroup": cg.kind if cg else None}
    try:
        bench.start()
        assert bench.daemon is not None and bench.sim is not None
        time.sleep(1.0)  # start-up done
        pid = bench.daemon.pid
        if idle_s > 0:
            load0 = os.getloadavg()[0]
            a, ta, t0 = tree_sample(pid), thread_sample(pid), time.monotonic()
            time.sleep(idle_s)
            b, tb, span = tree_sample(pid), thread_sample(pid), time.monotonic() - t0
            out["idle"] = tree_window(a, b, span)
            out["idle"]["threads"] = thread_window(ta, tb, span, top=10)
            out["idle"]["load_average_1min"] = [round(load0, 2), round(os.getloadavg()[0], 2)]
        cleared_at_start: list[str] = []
        deadline = time.monotonic() + 30.0
        while True:  # refused while a (load-induced) fault is latched: cleared, started again
            cleared_at_start += _clear(C, sock)
            try:
                C.call(sock, "session.start", {"patient": "RTBENCH", "protocol": "bench-realtime"})
                break
            except C.RemoteError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        time.sleep(1.5)  # the ramp-in and the first recorder flushes
        load0 = os.getloadavg()[0]
        st0 = C.call(sock, "status", timeout_s=10.0)
        a, t0, sim_a = tree_sample(pid), time.monotonic(), proc_facts(bench.sim.pid)
        thr0 = cg.throttling() if cg else {}
        wall0 = time.time()  # faults from here on are the session's
        faults: dict[tuple, str] = {}
        latched, peak_mem, end = 0, 0.0, t0 + session_s
        was_latched = False
        while (now := time.monotonic()) < end:
            time.sleep(min(poll_s, end - now))
            if (why := bench.failed()) is not None:
                raise RuntimeError(why)
            st = C.call(sock, "status", timeout_s=10.0)
            for f in st.get("faults", []):
                if (f.get("wall_time") or 0.0) >= wall0:
                    faults[(f.get("kind"), round(f["wall_time"], 3))] = f.get("kind")
            is_latched = st["safety_state"] in ("FAULT_LATCHED", "SAFE_STOP", "ESTOP")
            if is_latched and not was_latched:
                latched += 1
            was_latched = is_latched and not _clear(C, sock)
            peak_mem = max(peak_mem, sum(f["mem_mib"] for f in tree_sample(pid).values()))
        b, t1, sim_b = tree_sample(pid), time.monotonic(), proc_facts(bench.sim.pid)
        st1 = C.call(sock, "status", timeout_s=10.0)
        thr1 = cg.throttling() if cg else {}
        span = t1 - t0
        sess = tree_window(a, b, span)
        l0, l1 = st0["loop"], st1["loop"]
        ticks, misses = l1["ticks"] - l0["ticks"], l1["deadline_misses"] - l0["deadline_misses"]
        sess.update({
            "load_average_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "peak_mem_mib": round(max(peak_mem, sess["mem_mib"]), 1),
            "target_rate_hz": l1["target_rate_hz"],
            "rate_hz": round(ticks / span, 2),
            "ticks": ticks,
            "deadline_misses": misses,
            "miss_pct": round(100.0 * misses / max(ticks, 1), 4),
            "loop_window": {k: l1.get(k) for k in ("tick_cost_us", "jitter_us", "latency_ms",
                                                   "start_error_us") if k in l1},
            "faults": sorted(faults.values()),
            "faults_latched": latched,
            "faults_cleared_before_session": cleared_at_start,
            "safety_state_at_end": st1["safety_state"],
            "simulator_cpu_share": None if not (sim_a and sim_b)
            else round((sim_b["cpu_s"] - sim_a["cpu_s"]) / span, 4),
        })  # fmt: skip
        if cg is not None:
            sess["throttled"] = {k: thr1.get(k, 0) - thr0.get(k, 0) for k in thr1}
            name = cg.path.name if cg.path else "?"
            sess["processes_in_cgroup"] = [
                sum(any(line.endswith("/" + name) for line in f["cgroup"]) for f in b.values()),
                len(b),
            ]
        out["session"] = sess
        with contextlib.suppress(Exception):
            C.call(sock, "session.stop", {"reason": "benchmark done"}, timeout_s=20.0)
        return out
    finally:
        codes = bench.stop()
        out["exit_codes"] = codes
        if cg is not None:
            cg.remove()
        with contextlib.suppress(OSError):
            import shutil

            shutil.rmtree(tmp)


def _clear(C: Any, sock: Path) -> list[str]:
    """A latched (load-induced) fault cleared as a person would, once the inputs are healthy;
    the kinds it had, or [] when nothing was latched or it would not clear within 10 s."""
    st = C.call(sock, "status", timeout_s=10.0)
    if st["safety_state"] not in ("FAULT_LATCHED", "SAFE_STOP", "ESTOP"):
        return []
    kinds = [f.get("kind") for f in st.get("faults", []) if f.get("cleared_at") is None]
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            C.call(sock, "fault.clear", timeout_s=10.0)
            return kinds or ["?"]
        time.sleep(0.3)
    return []


# ---------------------------------------------------------------- the runs, both trees


def _trees(vs: str | None, log) -> tuple[list[tuple[str, Path | None]], dict[str, Any]]:
    """[("today", tree), ("this", None)] and what "today" is; "today" is left out when git
    cannot give it (said in the result)."""
    ref = vs or merge_base("main")
    info: dict[str, Any] = {"vs": vs or f"merge base with main ({ref})"}
    if ref is None:
        info["today_unavailable"] = "no git, or no main branch: give --vs REF"
        return [("this", None)], info
    tree, commit, err = ref_tree(ref)
    if tree is None:
        info["today_unavailable"] = err
        log(f"today's code unavailable: {err}")
        return [("this", None)], info
    info["today_commit"] = commit
    return [("today", tree), ("this", None)], info


def _both(trees, target: str, kwargs: dict, timeout_s: float, log, what: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, tree in trees:
        log(f"{what}: {name}")
        try:
            out[name] = call_in_tree(tree, target, kwargs, timeout_s=timeout_s)
        except Exception as e:  # one failing still reports the other
            out[name] = {"error": f"{type(e).__name__}: {e}"}
        log(f"  {name}: {_brief(out[name])}")
    return out


def _brief(r: dict) -> str:
    return json.dumps(r, default=str)[:300]


def run(
    quick: bool = False,
    log=print,
    vs: str | None = None,
    tick_s: float = 20.0,
    loop_s: float = 60.0,
    hil_s: float = 30.0,
    idle_s: float = 15.0,
    session_s: float = 30.0,
    only: frozenset[str] | None = None,
) -> dict[str, Any]:
    """The standard figures (everything but the soak and the quota), today's code and this
    checkout, one after the other per figure; ``only``: these figures (``STANDARD``) alone."""
    if quick:
        tick_s, loop_s, hil_s, idle_s, session_s = 4.0, 3.0, 4.0, 3.0, 4.0
    want = STANDARD if only is None else only
    trees, info = _trees(vs, log)
    out: dict[str, Any] = {"benchmark": "realtime", **info, "targets": _targets_text()}
    if "tick_cpu" in want:
        out["tick_cpu"] = _both(trees, "bench.bench_tick:probe", {"seconds": tick_s},
                                tick_s + 180, log,
                                f"real-time path thread CPU per tick, 500 Hz, {tick_s:g} s")  # fmt: skip
    for name, busy in (("loop_1khz", False), ("loop_1khz_busy", True)):
        if name not in want:
            continue
        out[name] = _both(
            trees, "bench.bench_loop:run_variant",
            {"seconds": loop_s, "realtime": True, "busy": busy}, loop_s + 240, log,
            f"1 kHz loop, real-time set-up, {loop_s:g} s" + (", busy cores" if busy else ""),
        )  # fmt: skip
    if "hil" in want:
        out["hil"] = _both(trees, "bench.bench_tick:hil_once", {"seconds": hil_s}, hil_s + 240,
                           log, f"exoctl hil --duration {hil_s:g}")  # fmt: skip
    if "daemon" in want:
        out["daemon"] = _both(
            trees, "bench.bench_realtime:daemon_once", {"idle_s": idle_s, "session_s": session_s},
            idle_s + session_s + 240, log,
            f"daemon tree idle {idle_s:g} s, session {session_s:g} s",
        )  # fmt: skip
    out["check"] = check(out)
    return out


def run_daemon(quick: bool = False, log=print, vs: str | None = None, seconds: float = 30.0
               ) -> dict[str, Any]:  # fmt: skip
    """Only the daemon's cost: ``seconds`` idle, then as long in one session, both trees."""
    seconds = min(seconds, 4.0) if quick else seconds
    trees, info = _trees(vs, log)
    out: dict[str, Any] = {"benchmark": "realtime_daemon", **info, "targets": _targets_text()}
    out["daemon"] = _both(
        trees, "bench.bench_realtime:daemon_once", {"idle_s": seconds, "session_s": seconds},
        2 * seconds + 240, log, f"daemon tree idle {seconds:g} s, session {seconds:g} s",
    )  # fmt: skip
    out["check"] = check(out)
    return out


def run_soak(quick: bool = False, log=print, vs: str | None = None, seconds: float = 1800.0,
             today: bool = True) -> dict[str, Any]:  # fmt: skip
    """Opt-in: one `bench up` session of ``seconds`` (the target: 30 min, load <= 2)."""
    seconds = min(seconds, 20.0) if quick else seconds
    trees, info = _trees(vs, log)
    if not today:
        trees, info = [t for t in trees if t[0] == "this"], {"vs": "not measured (--no-today)"}
    out: dict[str, Any] = {"benchmark": "realtime_soak", **info, "seconds": seconds}
    out["soak"] = _both(trees, "bench.bench_realtime:daemon_once",
                        {"idle_s": 0.0, "session_s": seconds, "poll_s": 5.0}, seconds + 300, log,
                        f"bench up soak, one session of {seconds:g} s")  # fmt: skip
    out["check"] = check(out)
    return out


def run_quota(quick: bool = False, log=print, vs: str | None = None, seconds: float = 300.0,
              today: bool = True) -> dict[str, Any]:  # fmt: skip
    """Opt-in: the daemon on half a core (cpu.max 5000 10000), one session of ``seconds``."""
    seconds = min(seconds, 20.0) if quick else seconds
    probe = QuotaCgroup()
    probe.remove()
    out: dict[str, Any] = {"benchmark": "realtime_quota", "seconds": seconds,
                           "cgroup": probe.kind or None, "cgroup_problems": probe.problems}  # fmt: skip
    if probe.path is None:
        out["unavailable"] = "no cgroup with a CPU limit could be made: " + "; ".join(
            probe.problems
        )
        out["how_to"] = QUOTA_HOWTO
        log(f"{out['unavailable']}\n{QUOTA_HOWTO}")
        return out
    trees, info = _trees(vs, log)
    if not today:
        trees, info = [t for t in trees if t[0] == "this"], {"vs": "not measured (--no-today)"}
    out.update(info)
    out["quota"] = _both(trees, "bench.bench_realtime:daemon_once",
                         {"idle_s": 0.0, "session_s": seconds, "quota": True}, seconds + 300,
                         log, f"daemon under cpu.max {QUOTA_US} {QUOTA_PERIOD_US}, {seconds:g} s")  # fmt: skip
    out["check"] = check(out)
    return out


# ---------------------------------------------------------------- targets


def _targets_text() -> dict[str, str]:
    return {k: f"{op} {v:g}" for k, (op, v) in TARGETS.items()}


def _met(key: str, value: float | None) -> bool | None:
    if value is None:
        return None
    op, bound = TARGETS[key]
    return value <= bound if op == "<=" else value >= bound


def figures(section: str, r: dict[str, Any]) -> dict[str, Any]:
    """The target figures of one tree's result of ``section``, with the load they had."""
    if not r or "error" in r or "unavailable" in r:
        return {}
    g: dict[str, Any] = {}
    if section == "tick_cpu":
        g["tick_cpu_p99_us"] = r["tick_thread_cpu_us"]["p99"]
        g["tick_cpu_p50_us"] = r["tick_thread_cpu_us"]["p50"]
    elif section.startswith("loop_1khz"):
        g["loop_rate_hz"] = r["achieved_rate_hz"]
        g["loop_start_error_p99_us"] = r["tick_start_error_us"]["p99"]
        g["loop_misses"] = r["deadline_misses"]
    elif section == "hil":
        t, rate = r["target_rate_hz"], r["control_rate_hz"]
        g["hil_rate_error_pct"] = round(100.0 * abs(rate - t) / t, 3)
        g["hil_miss_pct"] = round(100.0 * r["deadline_misses"] / max(r["ticks"], 1), 4)
        g["hil_latency_p99_ms"] = (r.get("latency_ms") or {}).get("p99")
        g["hil_r2"] = r.get("r2")
    elif section == "daemon":
        g["daemon_idle_cpu_share"] = r["idle"]["cpu_share"]
        g["daemon_session_cpu_share"] = r["session"]["cpu_share"]
        g["daemon_pss_mib"] = r["session"]["peak_mem_mib"]
    elif section == "soak":
        s = r["session"]
        g["soak_faults_latched"] = s["faults_latched"]
        g["soak_faults"] = s["faults"]
        g["soak_miss_pct"] = s["miss_pct"]
    elif section == "quota":
        s = r["session"]
        g["quota_rate_hz"] = s["rate_hz"]
        g["quota_miss_pct"] = s["miss_pct"]
        g["quota_faults"] = len(s["faults"])
        g["quota_fault_kinds"] = s["faults"]
        g["quota_cpu_share"] = s["cpu_share"]
    load = r.get("load_average_1min") or (r.get("session") or {}).get("load_average_1min")
    g["load_average_1min"] = load
    return g


def check(out: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per target figure: this checkout, today's code, their ratio, met or not."""
    rows = []
    for section in ("tick_cpu", "loop_1khz", "loop_1khz_busy", "hil", "daemon", "soak",
                    "quota"):  # fmt: skip
        if section not in out:
            continue
        this = figures(section, out[section].get("this", {}))
        today = figures(section, out[section].get("today", {}))
        for key in TARGETS:
            if key not in this and key not in today:
                continue
            a, b = today.get(key), this.get(key)
            rows.append({
                "section": section, "figure": key, "target": " ".join(map(str, TARGETS[key])),
                "this": b, "today": a,
                "ratio_today_over_this": round(a / b, 2) if a and b else None,
                "met": _met(key, b), "load_this": this.get("load_average_1min"),
                "load_today": today.get("load_average_1min"),
            })  # fmt: skip
        if section == "hil" and this.get("hil_r2") and today.get("hil_r2"):
            d = {j: round(this["hil_r2"][j] - today["hil_r2"][j], 4) for j in this["hil_r2"]
                 if j in today["hil_r2"]}  # fmt: skip
            worst = max((abs(v) for v in d.values()), default=None)
            rows.append({"section": "hil", "figure": "hil_r2_change",
                         "target": "<= 0.005", "this": d, "today": today["hil_r2"],
                         "ratio_today_over_this": None, "met": _met("hil_r2_change", worst),
                         "load_this": this.get("load_average_1min"),
                         "load_today": today.get("load_average_1min")})  # fmt: skip
    return rows


def format_table(res: dict[str, Any]) -> str:
    if res.get("unavailable"):
        return f"unavailable: {res['unavailable']}\n\n{res.get('how_to', '')}"
    rows = [
        f"Today's code: {res.get('vs')} {res.get('today_commit', res.get('today_unavailable', ''))}",
        "",
        "| figure | target | this | today | today/this | met | load this / today |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in res.get("check", []):
        met = {True: "yes", False: "**no**", None: "?"}[r["met"]]
        rows.append(
            f"| {r['section']}: {r['figure']} | {r['target']} | {r['this']} | {r['today']} | "
            f"{r['ratio_today_over_this']} | {met} | {r['load_this']} / {r['load_today']} |"
        )
    for name, r in (res.get("daemon") or {}).items():  # where an idle daemon's CPU goes
        threads = ((r or {}).get("idle") or {}).get("threads")
        if threads:
            rows += ["", f"Daemon idle, busiest threads ({name}): " + ", ".join(
                f"{t['thread']} {100 * t['cpu_share']:.1f} %" for t in threads[:8])]  # fmt: skip
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.bench_realtime",
                                 description=__doc__.splitlines()[0])  # fmt: skip
    ap.add_argument("what", nargs="?", choices=("standard", "soak", "quota", "daemon"),
                    default="standard")  # fmt: skip
    ap.add_argument("--vs", default=None, help="today's code: a git ref (default: the merge "
                    "base with main)")  # fmt: skip
    ap.add_argument("--seconds", type=float, default=None,
                    help="soak/quota: the session's length (default 1800 / 300); daemon: "
                    "the idle and the session window (default 30)")  # fmt: skip
    ap.add_argument("--loop-seconds", type=float, default=60.0)
    ap.add_argument("--hil-seconds", type=float, default=30.0)
    ap.add_argument("--no-today", action="store_true", help="soak/quota: this checkout only")
    ap.add_argument("--quick", action="store_true", help="a few seconds per figure (smoke)")
    ap.add_argument("--json", type=Path, default=None, help="also write the result here")
    ap.add_argument("--only", default=None, metavar="FIGURES",
                    help="standard run: these figures alone, comma-separated, of "
                    + ", ".join(sorted(STANDARD)))  # fmt: skip
    args = ap.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        ap.error("--seconds: give a positive number of seconds")
    only = None
    if args.only is not None:
        only = frozenset(f.strip() for f in args.only.split(",") if f.strip())
        unknown = sorted(only - STANDARD)
        if unknown or not only:
            ap.error(f"--only: {', '.join(unknown) or 'nothing given'}: give some of "
                     f"{', '.join(sorted(STANDARD))}")  # fmt: skip
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # children stopped by finally
    if args.what == "soak":
        res = run_soak(args.quick, log, args.vs, args.seconds or 1800.0, not args.no_today)
    elif args.what == "daemon":
        res = run_daemon(args.quick, log, args.vs, args.seconds or 30.0)
    elif args.what == "quota":
        res = run_quota(args.quick, log, args.vs, args.seconds or 300.0, not args.no_today)
    else:
        res = run(args.quick, log, args.vs, loop_s=args.loop_seconds, hil_s=args.hil_seconds,
                  only=only)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(res, indent=2, default=str) + "\n")
    print(format_table(res))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
