"""The tick's aims 3 and 4 for the whole product, this code beside the baseline's in one run.

    .venv/bin/python -m bench --only tick_hil,tick_daemon
    .venv/bin/python -m bench.bench_tick --hil        # or --daemon

``run_hil`` (section ``tick_hil``) runs ``exoctl hil --duration 30`` as ``make demo`` does;
``run_daemon`` (section ``tick_daemon``) runs ``exoctl daemon`` against ``exoctl sim``. Each run
happens in the tree it measures (``bench.baseline.call_in_tree``) through the functions that
both trees have, ``bench.bench_tick.hil_once`` and ``daemon_once``; this module only orders the
runs, checks the targets and compares (``bench.bench_tick`` holds the per-stage tick, aim 1).
"""

from __future__ import annotations

import json
from typing import Any

from bench.baseline import BASELINE, baseline_tree, call_in_tree
from bench.bench_tick import TARGETS, _ratio


def run_hil(seconds: float = 30.0, quick: bool = False, log=print) -> dict[str, Any]:
    """Target 3: ``exoctl hil`` for today's code and this branch, one after the other."""
    if quick:
        seconds = min(seconds, 4.0)
    tree, err = baseline_tree()
    out: dict[str, Any] = {"seconds": seconds, "baseline": BASELINE if tree else err,
                           "command": f"exoctl hil --duration {seconds:g} --json", "runs": {}}  # fmt: skip
    runs = ([("today", tree)] if tree is not None else []) + [("this_branch", None)]
    for name, t in runs:
        log(f"exoctl hil --duration {seconds:g}: {name}")
        try:
            out["runs"][name] = call_in_tree(t, "bench.bench_tick:hil_once", {"seconds": seconds},
                                             timeout_s=seconds + 240.0)  # fmt: skip
        except Exception as e:
            out["runs"][name] = {"error": f"{type(e).__name__}: {e}"}
        log(
            f"  {json.dumps({k: out['runs'][name].get(k) for k in ('control_rate_hz', 'deadline_misses', 'latency_ms', 'r2')})}"
        )
    a, b = out["runs"].get("today", {}), out["runs"].get("this_branch", {})
    if "latency_ms" in b and b.get("latency_ms"):
        rate, target = b["control_rate_hz"], b["target_rate_hz"]
        out["target_check"] = {
            "rate_within_0.2pct": [rate, target, abs(rate - target) <= TARGETS["hil_rate_within"]
                                   * target],
            "no_deadline_miss": [b["deadline_misses"], 0, b["deadline_misses"] == 0],
            "latency_p99_ms": [b["latency_ms"]["p99"], TARGETS["hil_latency_p99_ms"],
                               b["latency_ms"]["p99"] <= TARGETS["hil_latency_p99_ms"]],
        }  # fmt: skip
        if a.get("latency_ms"):
            out["ratios_today_over_this"] = {
                "latency_p50": _ratio(a["latency_ms"]["p50"], b["latency_ms"]["p50"]),
                "latency_p99": _ratio(a["latency_ms"]["p99"], b["latency_ms"]["p99"]),
                "tick_cost_p50": _ratio(a["tick_cost_us"]["p50"], b["tick_cost_us"]["p50"]),
                "tick_cost_p99": _ratio(a["tick_cost_us"]["p99"], b["tick_cost_us"]["p99"]),
                "misses": [a["deadline_misses"], b["deadline_misses"]],
            }
            out["r2_difference_this_minus_today"] = {
                j: round(b["r2"][j] - a["r2"][j], 4) for j in b["r2"] if j in a.get("r2", {})
            }
    return out


def run_daemon(idle_s: float = 15.0, session_s: float = 20.0, quick: bool = False,
               log=print) -> dict[str, Any]:  # fmt: skip
    """Target 4: the daemon's CPU and memory, today's code and this branch."""
    if quick:
        idle_s, session_s = min(idle_s, 3.0), min(session_s, 3.0)
    tree, err = baseline_tree()
    out: dict[str, Any] = {"baseline": BASELINE if tree else err, "runs": {}}
    runs = ([("today", tree)] if tree is not None else []) + [("this_branch", None)]
    for name, t in runs:
        log(f"exoctl daemon: idle {idle_s:g} s, session {session_s:g} s: {name}")
        try:
            out["runs"][name] = call_in_tree(
                t, "bench.bench_tick:daemon_once", {"idle_s": idle_s, "session_s": session_s},
                timeout_s=idle_s + session_s + 240.0,
            )  # fmt: skip
        except Exception as e:
            out["runs"][name] = {"error": f"{type(e).__name__}: {e}"}
        log(f"  {out['runs'][name]}")
    a, b = out["runs"].get("today", {}), out["runs"].get("this_branch", {})
    if "session_cpu_share" in b:
        out["target_check"] = {
            "session_cpu_share": [b["session_cpu_share"], TARGETS["daemon_session_cpu"],
                                  b["session_cpu_share"] <= TARGETS["daemon_session_cpu"]],
            "peak_rss_mib": [b["peak_rss_mib"], TARGETS["daemon_rss_mib"],
                             b["peak_rss_mib"] <= TARGETS["daemon_rss_mib"]],
            "idle_cpu_share": [b["idle_cpu_share"], TARGETS["daemon_idle_cpu"],
                               b["idle_cpu_share"] <= TARGETS["daemon_idle_cpu"]],
        }  # fmt: skip
        if "session_cpu_share" in a:
            out["ratios_today_over_this"] = {
                k: _ratio(a[k], b[k])
                for k in ("idle_cpu_share", "session_cpu_share", "peak_rss_mib")  # fmt: skip
            }
    return out


def format_table(res: dict[str, Any]) -> str:
    """``tick_hil`` and ``tick_daemon``: each run's figures, the targets and the ratios."""
    runs = res.get("runs", {})
    names = [n for n in runs if isinstance(runs[n], dict) and "error" not in runs[n]]
    keys = [k for k in ("control_rate_hz", "deadline_misses", "latency_ms", "tick_cost_us",
                        "idle_cpu_share", "session_cpu_share", "peak_rss_mib", "r2",
                        "load_average_1min") if any(k in runs[n] for n in names)]  # fmt: skip

    def cell(x: Any) -> str:
        if isinstance(x, dict):
            return ", ".join(f"{k} {cell(v)}" for k, v in x.items() if k != "max")
        if isinstance(x, list):
            return " / ".join(cell(v) for v in x)
        return f"{x:g}" if isinstance(x, float) else str(x)

    rows = ["| figure | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    rows += [f"| {k} | " + " | ".join(cell(runs[n].get(k)) for n in names) + " |" for k in keys]
    for n in runs:
        if n not in names:
            rows.append(
                f"| {n} | failed: {runs[n].get('error') if isinstance(runs[n], dict) else runs[n]} |"
            )
    for k, (got, target, ok) in res.get("target_check", {}).items():
        rows.append(f"| target {k} | {got} (target {target}): {'met' if ok else 'not met'} |")
    if res.get("ratios_today_over_this"):
        rows.append(f"| today / this | {cell(res['ratios_today_over_this'])} |")
    return "\n".join(rows)
