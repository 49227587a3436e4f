"""The Markdown report (``bench/results/latest.md``) and its SVG plots, from ``latest.json``.

Every table names the command that produced its figures; every comparison is printed as a
ratio next to the times; a section that was skipped or failed is listed with its reason, so
the report never silently lacks a figure. Regenerate from a saved JSON without re-measuring:

    .venv/bin/python -m bench.report bench/results/latest.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from bench import charts


def _g(d: Any, *path, default=None):
    for p in path:
        if not isinstance(d, dict) or p not in d or d[p] is None:
            return default
        d = d[p]
    return d


def _us(v) -> str:
    if v is None:
        return "n/a"
    return f"{v:.1f}" if v < 1000 else f"{v:,.0f}"


def _x(v) -> str:
    return "n/a" if v is None else f"**{v:.1f}x**" if v >= 10 else f"**{v:.2f}x**"


def _res(doc: dict, name: str) -> dict | None:
    s = doc["sections"].get(name)
    return s["result"] if s and s["status"] == "ok" else None


def _cmd(doc: dict, name: str) -> str:
    s = doc["sections"].get(name)
    return f"`{s['command']}`" if s else f"`python -m bench --only {name}`"


def _pct(d: dict | None, unit: str, scale: float = 1.0) -> tuple[str, str, str]:
    if not d:
        return ("n/a", "n/a", "n/a")
    f = lambda k: "n/a" if d.get(k) is None else f"{d[k] * scale:.3g} {unit}"  # noqa: E731
    return f("p50"), f("p99"), f("max")


def _headline(doc: dict, out: list[str], plots: dict[str, str]) -> None:
    p = _res(doc, "pipeline")
    out.append("## exoctl against its peers, per control tick, same input, same run\n")
    if p is None:
        out.append(f"Not measured: {_reason(doc, 'pipeline')}\n")
        return
    inp = p["input"]
    out.append(
        f"Input: {inp['test_seconds']:g} s of one synthetic-patient session, {inp['channels']} EMG "
        f"channels at {inp['emg_rate_hz']:g} Hz, control ticks at {inp['control_rate_hz']:g} Hz "
        f"({inp['samples_per_tick']} new samples per tick); every implementation gets the same "
        f"samples tick by tick. Times per tick, first {inp['warmup_ticks_discarded']} ticks "
        f"discarded. Command: {_cmd(doc, 'pipeline')}.\n"
    )
    out.append(
        "| implementation | median (us) | p99 (us) | ticks | peer / exoctl, median | peer / exoctl, p99 |"
    )
    out.append("| --- | ---: | ---: | ---: | ---: | ---: |")
    ex = p["exoctl"]
    rows = [
        (
            "**exoctl** (Estimator.step: streaming DSP, activation, warm NNLS, ONNX linear model)",
            ex,
            None,
        )
    ]
    rows.append(
        (
            "naive peer (filtfilt 1 s window + fresh scipy NNLS + "
            + next(
                (
                    k.split("(", 1)[1].rstrip(")")
                    for k in p.get("naive_parts", {})
                    if k.startswith("inference")
                ),
                "?",
            )
            + ")",
            p.get("naive"),
            p.get("ratio_naive_vs_exoctl"),
        )
    )
    le = p.get("libemg", {})
    if "per_tick" in le:
        rows.append(
            (
                f"LibEMG {le.get('libemg_version', '')} peer ({'+'.join(le['features'])} on a "
                f"{le['window_samples']}-sample window + EMGRegressor LR)",
                le["per_tick"],
                p.get("ratio_libemg_vs_exoctl"),
            )
        )
    cpu = p.get("exoctl_thread_cpu")
    if cpu:
        rows.insert(
            1, ("exoctl, same, thread CPU time (no preemption by other processes)", cpu, None)
        )
    for label, st, r in rows:
        out.append(
            f"| {label} | {_us(_g(st, 'median_us'))} | {_us(_g(st, 'p99_us'))} | {_g(st, 'n', default='')} | "
            f"{_x(_g(r, 'median')) if r else ''} | {_x(_g(r, 'p99')) if r else ''} |"
        )
    if "skipped" in le:
        out.append(f"\nLibEMG peer not run: {le['skipped']}\n")
    net = p.get("network", {})
    if "exoctl_step" in net:
        out.append(
            f"\nWith the paper's network (multi-scale self-attention, scales {net['scales_ticks']} ticks, "
            f"window {net['window_ticks']} ticks; random weights, cost does not depend on them):\n"
        )
        out.append("| implementation | median (us) | p99 (us) | naive / exoctl, median | p99 |")
        out.append("| --- | ---: | ---: | ---: | ---: |")
        out.append(
            f"| **exoctl** Estimator.step, network as ONNX (IOBinding, 1 thread) | {_us(net['exoctl_step']['median_us'])} | {_us(net['exoctl_step']['p99_us'])} | | |"
        )
        rn = net.get("ratio_naive_vs_exoctl", {})
        out.append(
            f"| naive: filtfilt chain + PyTorch eager of the same module | {_us(net['naive_pipeline']['median_us'])} | "
            f"{_us(net['naive_pipeline']['p99_us'])} | {_x(rn.get('median'))} | {_x(rn.get('p99'))} |"
        )
    elif "skipped" in net:
        out.append(f"\nThe paper's network was not timed: {net['skipped']}\n")
    items = [("exoctl", ex["median_us"]), ("naive", _g(p, "naive", "median_us"))]
    if "per_tick" in le:
        items.append(("LibEMG", le["per_tick"]["median_us"]))
    if "exoctl_step" in net:
        items += [
            ("exoctl + network (ONNX)", net["exoctl_step"]["median_us"]),
            ("naive + network (PyTorch eager)", net["naive_pipeline"]["median_us"]),
        ]
    plots["pipeline.svg"] = charts.bars("Per-tick cost, median (log scale)", items, "us")
    out.append("\n![per-tick cost of exoctl and its peers](pipeline.svg)\n")
    acc = [("exoctl linear", p.get("exoctl_r2_test_session"))]
    if "r2_test_session" in le:
        acc.append(("LibEMG (MAV/WL/ZC/SSC + LR)", le["r2_test_session"]))
    joints = list(acc[0][1] or {})
    if joints:
        out.append("R^2 on the same test session (scored from 2 s on, every tick):\n")
        out.append("| model | " + " | ".join(joints) + " |")
        out.append("| --- |" + " ---: |" * len(joints))
        for name, r in acc:
            if r:
                out.append(f"| {name} | " + " | ".join(f"{r[j]:.3f}" for j in joints) + " |")
        out.append("")


def _stages(doc: dict, out: list[str]) -> None:
    p, s = _res(doc, "pipeline"), _res(doc, "session")
    out.append("## Per stage and end to end\n")
    out.append("| figure | median | p99 | max | command |")
    out.append("| --- | ---: | ---: | ---: | --- |")
    if p:
        names = {
            "dsp": "DSP (band-pass, rectify, envelope, MVC) per tick",
            "activation": "activation dynamics per tick",
            "nnls": "synergy NNLS (warm-started) per tick",
            "onnx_linear": "ONNX inference, shipped linear model",
        }
        for k, label in names.items():
            st = p["exoctl_stages"].get(k, {})
            out.append(
                f"| {label} | {_us(st.get('median_us'))} us | {_us(st.get('p99_us'))} us | {_us(st.get('max_us'))} us | {_cmd(doc, 'pipeline')} |"
            )
        net = p.get("network", {})
        for k, label in (
            ("onnx_inference", "ONNX inference, paper's network (window copy + run)"),
            ("pytorch_eager_inference", "PyTorch eager, same network (peer)"),
        ):
            if k in net:
                st = net[k]
                out.append(
                    f"| {label} | {_us(st['median_us'])} us | {_us(st['p99_us'])} us | {_us(st['max_us'])} us | {_cmd(doc, 'pipeline')} |"
                )
        out.append(
            f"| estimator, whole tick (linear model) | {_us(p['exoctl']['median_us'])} us | {_us(p['exoctl']['p99_us'])} us | {_us(p['exoctl']['max_us'])} us | {_cmd(doc, 'pipeline')} |"
        )
    if s:
        for rate, r in s.items():
            c = _cmd(doc, "session")
            out.append(
                f"| whole control tick in a HIL session at {rate} (read, estimate, assist, safety, serial write) | "
                + " | ".join(_pct(r.get("tick_cost_us"), "us"))
                + f" | {c} |"
            )
            out.append(
                f"| EMG sample arrival -> command on the wire, {rate} | "
                + " | ".join(_pct(r.get("latency_ms"), "ms"))
                + f" | {c} |"
            )
            out.append(
                f"| tick start error at {rate} | "
                + " | ".join(_pct(r.get("loop_jitter_us"), "us"))
                + f" | {c} |"
            )
    dm = _res(doc, "daemon")
    if dm:
        lp, c = dm.get("loop", {}), _cmd(doc, "daemon")
        rate = f"{lp.get('target_rate_hz') or 0:.0f}Hz"
        for key, label, unit in (
            (
                "tick_cost_us",
                f"whole control tick in the daemon at {rate} (last 10 s of a session)",
                "us",
            ),
            ("latency_ms", f"EMG sample arrival -> command on the wire, daemon at {rate}", "ms"),
            ("loop_jitter_us", f"tick start error, daemon at {rate}", "us"),
        ):
            out.append(f"| {label} | " + " | ".join(_pct(lp.get(key), unit)) + f" | {c} |")
    if not s:
        out.append(f"\nHIL session figures not measured: {_reason(doc, 'session')}\n")
    rows = []
    for rate, r in (s or {}).items():
        pr = r.get("process", {})
        r2 = r.get("r2") or {}
        rows.append(
            f"| HIL session, {rate}, {r.get('duration_s')} s | {r.get('control_rate_hz')} Hz | "
            f"{r.get('deadline_misses')} | {pr.get('peak_rss_mib', 'n/a')} MiB | "
            f"{pr.get('cpu_share_of_one_core', 'n/a')} ({pr.get('cpu_share_p90_1s', 'n/a')}) | "
            f"{r2.get('hip_l', 'n/a')} / {r2.get('knee_l', 'n/a')} | HIL controller child ({_cmd(doc, 'session')}) |"
        )
    if dm:
        lp = dm.get("loop", {})
        rows.append(
            f"| daemon session, {lp.get('target_rate_hz') or 0:.0f}Hz, {dm['duration_s']} s | "
            f"{lp.get('control_rate_hz')} Hz | {lp.get('deadline_misses')} | {dm['peak_rss_mib']} MiB | "
            f"{dm['cpu_share_of_one_core']} ({dm['cpu_share_p90_1s']}) | (not scored) | "
            f"`exoctl daemon` ({_cmd(doc, 'daemon')}) |"
        )
    if rows:
        out.append("")
        out.append(
            "| process in a session | achieved rate | deadline misses | peak RSS | CPU share of one core "
            "(median of 1 s windows, p90) | R^2 hip_l / knee_l | process measured |"
        )
        out.append("| --- | ---: | ---: | ---: | ---: | --- | --- |")
        out += rows
        first = next(iter((s or {}).values()), {})
        out.append(
            f"\nHIL rows: {_g(first, 'process', 'process', default='not run')}. Daemon row: "
            f"{_g(dm, 'process', default='not run: ' + _reason(doc, 'daemon'))}. CPU share = median over "
            "1 s windows of (utime + stime) / wall time from /proc/<pid>/stat; peak RSS = VmHWM.\n"
        )
    lp = _res(doc, "loop")
    table = _owner_table(doc, "loop")
    if table:
        out.append(
            f"The loop at {lp.get('rate_hz', 1000):g} Hz with the estimator and the HIL simulator, "
            f"{lp.get('seconds_per_variant')} s per variant, without and with the real-time set-up "
            f"(SCHED_FIFO 50, mlockall, GC frozen; `bench/bench_loop.py`, "
            f"{_cmd(doc, 'loop')}):\n"
        )
        out.append(table + "\n")
    else:
        out.append(
            f"Loop benchmark with/without real-time setup (`bench/bench_loop.py`): {_reason(doc, 'loop')}.\n"
        )


def _accuracy(doc: dict, out: list[str]) -> None:
    a = _res(doc, "accuracy")
    out.append("## Accuracy across simulated patients and sessions\n")
    if a is None:
        out.append(f"Not measured: {_reason(doc, 'accuracy')}\n")
        return
    out.append(
        f"Patients {a['patients']} (synthetic, `exoctl.hil.drift`), sessions of {a['session_seconds']:g} s; "
        f"every model trained on the {a['train']}; later sessions drift more (electrode shift, gain, "
        f"fatigue, spasticity, weakness). R^2 per joint over every {a.get('scored_every_n_ticks', 1)}th control tick after "
        f"the 2 s warm-up, mean +- sd across patients [min, max]. "
        f"Command: {_cmd(doc, 'accuracy')}.\n"
    )
    for model, per_session in a["models"].items():
        joints = list(next(iter(per_session.values()))["across_patients"])
        out.append(f"**{model}**\n")
        out.append("| test data | " + " | ".join(joints) + " |")
        out.append("| --- |" + " ---: |" * len(joints))
        for sname, v in per_session.items():
            cells = [
                f"{c['mean']:.3f} +- {c['sd']:.3f} [{c['min']:.2f}, {c['max']:.2f}]"
                for c in (v["across_patients"][j] for j in joints)
            ]
            out.append(f"| {sname} | " + " | ".join(cells) + " |")
        out.append("")
    if a.get("libemg_skipped"):
        out.append(f"LibEMG accuracy not run: {a['libemg_skipped']}\n")
    net = a.get("network", {})
    if "train" in net:
        out.append(
            f"Paper's network: scales {net['scales_ms']} ms, {net['patients']} patients, training budget "
            f"{net['train']['epochs']} epochs x {net['train']['samples_per_epoch']} windows, adaptation "
            f"{net['adapt']['epochs']} epochs x {net['adapt']['samples_per_epoch']} (one adaptation per later "
            f"session, to its own unlabelled EMG). {net['note']}. `exoctl train` trains longer; these are a floor.\n"
        )
    if "pending" in net:
        out.append(f"Paper's network with and without adaptation: **pending**: {net['pending']}.\n")
    real = a.get("real_data") or {}
    out.append("### Real recorded data (not simulated)\n")
    if "table_md" in real:
        out.append(
            f"Rows {', '.join(real['groups'])} of the real-data protocol (not run here: "
            f"{', '.join(real['not_run']) or 'none'}); R^2 against the measured moments, hip / "
            f"knee. Command: `{real['command']}` ({real['wall_time_s']:.0f} s).\n"
        )
        out.append(real["table_md"] + "\n")
    else:
        out.append(f"Not run: {real.get('skipped', 'no result')}.\n")


def _scaling(doc: dict, out: list[str], plots: dict[str, str]) -> None:
    s = _res(doc, "scaling")
    out.append("## Scaling\n")
    if s is None:
        out.append(f"Not measured: {_reason(doc, 'scaling')}\n")
        return
    c = _cmd(doc, "scaling")
    out.append(
        f"Per-tick cost of the streaming pipeline (DSP, activation, NNLS, linear ONNX), {s['seconds_per_point']:g} s of EMG per point. Command: {c}.\n"
    )
    out.append(
        "| channels | median (us) | p99 (us) | dsp / act / nnls / onnx medians (us) | naive chain median (us) | naive / exoctl (median, p99) |"
    )
    out.append("| ---: | ---: | ---: | --- | ---: | ---: |")
    for m, r in s["channels"].items():
        sm = r["stages_median_us"]
        rr = r.get("ratio_naive_vs_exoctl", {})
        out.append(
            f"| {m} | {_us(r['tick']['median_us'])} | {_us(r['tick']['p99_us'])} | "
            f"{sm['dsp']:.1f} / {sm['activation']:.1f} / {sm['nnls']:.1f} / {sm['onnx']:.1f} | "
            f"{_us(_g(r, 'naive_chain', 'median_us'))} | {_x(rr.get('median'))}, {_x(rr.get('p99'))} |"
        )
    out.append("\n| synergies K (16 channels) | median (us) | p99 (us) | NNLS median (us) |")
    out.append("| ---: | ---: | ---: | ---: |")
    for k, r in s["synergies"].items():
        out.append(
            f"| {k} | {_us(r['tick']['median_us'])} | {_us(r['tick']['p99_us'])} | {r['stages_median_us']['nnls']:.1f} |"
        )
    out.append(
        "\n| control rate (16 channels, K 4) | samples per tick | median (us) | p99 (us) | share of one core |"
    )
    out.append("| ---: | ---: | ---: | ---: | ---: |")
    for rate, r in s["rates"].items():
        out.append(
            f"| {rate} Hz | {r['samples_per_tick']} | {_us(r['tick']['median_us'])} | {_us(r['tick']['p99_us'])} | {100 * r['cpu_share_of_one_core']:.2f} % |"
        )
    xs = [float(m) for m in s["channels"]]
    plots["scaling_channels.svg"] = charts.lines(
        "Per-tick cost vs EMG channels (median, log scale)",
        xs,
        {
            "exoctl": [r["tick"]["median_us"] for r in s["channels"].values()],
            "exoctl p99": [r["tick"]["p99_us"] for r in s["channels"].values()],
            "naive chain": [_g(r, "naive_chain", "median_us") for r in s["channels"].values()],
        },
        "EMG channels",
        "us",
    )
    out.append("\n![per-tick cost vs channels](scaling_channels.svg)\n")


def _others(doc: dict, out: list[str]) -> None:
    out.append("## The component benchmarks (called through their run())\n")
    sc = _res(doc, "signal_chain")
    if sc:
        out.append(
            f"**Signal chain** ({_cmd(doc, 'signal_chain')}; standalone `python bench/bench_signal_chain.py`):\n"
        )
        out.append(
            "| ticks | streaming median / p99 (us) | naive median / p99 (us) | naive / streaming (median, p99) |"
        )
        out.append("| --- | ---: | ---: | ---: |")
        for rate, r in (sc.get("ticks") or {}).items():
            f, n = r.get("streaming", {}), r.get("naive", {})
            out.append(
                f"| {rate} | {_us(f.get('median_us'))} / {_us(f.get('p99_us'))} | {_us(n.get('median_us'))} / {_us(n.get('p99_us'))} | "
                f"{_x(r.get('ratio_median'))}, {_x(r.get('ratio_p99'))} |"
            )
        out.append("")
    pr = _res(doc, "protocol")
    if pr:
        out.append(
            f"**Serial protocol** ({_cmd(doc, 'protocol')}; standalone `python bench/bench_protocol.py`):\n"
        )
        out.append("| figure | median | p99 |")
        out.append("| --- | ---: | ---: |")
        for k, v in (pr.get("codec") or {}).items():
            if isinstance(v, dict) and "median" in v:
                out.append(f"| codec {k} | {v['median']} us | {v['p99']} us |")
        for k, v in pr.items():
            if isinstance(v, dict) and v.get("rtt_ms"):
                out.append(
                    f"| round trip command -> telemetry over a pty, {k} | {v['rtt_ms']['median']} ms | {v['rtt_ms']['p99']} ms |"
                )
        out.append("")
    for name, sec in doc["sections"].items():
        if name in ("signal_chain", "protocol", "loop", "pipeline", "session", "daemon"):
            continue
        if name in ("scaling", "accuracy"):
            continue
        table = _owner_table(doc, name)
        if table:
            out.append(f"**{name}** ({sec['owner']}; {_cmd(doc, name)}):\n")
            out.append(table + "\n")
        elif sec["status"] == "ok":
            out.append(
                f"**{name}** ({sec['owner']}; {_cmd(doc, name)}): figures in `latest.json` under `sections.{name}.result`:\n"
            )
            out.append("| key | value |")
            out.append("| --- | --- |")
            for k, v in _leaves(sec["result"])[:20]:
                out.append(f"| {k} | {v} |")
            out.append("")


def _owner_table(doc: dict, name: str) -> str | None:
    """The section owner's own ``format_table(result)``, when the module has one."""
    sec = doc["sections"].get(name)
    if not sec or sec["status"] != "ok":
        return None
    try:
        import importlib

        fmt = getattr(importlib.import_module(sec["module"]), "format_table", None)
        if not callable(fmt):
            return None
        text = str(fmt(sec["result"])).strip("\n")
        # a Markdown table goes in as it is; any other text keeps its layout in a code block
        return text if text.lstrip().startswith("|") else f"```\n{text}\n```"
    except Exception as e:
        return f"(its format_table failed: {type(e).__name__}: {e})"


def _leaves(d: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    if isinstance(d, dict):
        for k, v in d.items():
            out += _leaves(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, int | float) and not isinstance(d, bool):
        out.append((prefix, round(d, 3) if isinstance(d, float) else d))
    return out


def _reason(doc: dict, name: str) -> str:
    s = doc["sections"].get(name)
    if s is None:
        return "section not run in this invocation (see --only)"
    return f"{s['status']}: {s['reason']}" if s["status"] != "ok" else "ok"


def build(doc: dict) -> tuple[str, dict[str, str]]:
    m = doc["machine"]
    out = [
        "# exoctl benchmark report\n",
        f"Measured {doc['started_utc']} on {m.get('cpu') or m.get('machine')} ({m['cpus']} CPUs), "
        f"{m['platform']}, Python {m['python']}, numpy {m['numpy']}; git {doc.get('git_commit')}"
        f"{' with uncommitted changes' if doc.get('git_dirty') else ''}. Mode: {doc['mode']}. "
        f"Load average {m['load_average'][0]} at start, {m.get('load_average_at_end', ['?'])[0]} at end "
        f"(a shared machine inflates the p99s). Whole run: `{doc['command'].strip()}` (`make bench`), "
        f"{doc['total_seconds']:.0f} s. Raw figures: `latest.json`.\n",
        "Method: `time.perf_counter_ns` around each tick, warm-up discarded, medians and p99 over many "
        "ticks; the peers run in the same run on the same input, and every comparison is a "
        "ratio peer / exoctl. Explanation of every figure: `docs/benchmarks.md`.\n",
    ]
    plots: dict[str, str] = {}
    _headline(doc, out, plots)
    _stages(doc, out)
    _accuracy(doc, out)
    _scaling(doc, out, plots)
    _others(doc, out)
    out.append("## Sections\n")
    out.append("| section | area | status | seconds | command | note |")
    out.append("| --- | --- | --- | ---: | --- | --- |")
    for name, s in doc["sections"].items():
        out.append(
            f"| {name} | {s['owner']} | {s['status']} | {s['seconds']} | `{s['command']}` | {s['reason']} |"
        )
    out.append("")
    return "\n".join(out), plots


def write(doc: dict, out_dir: Path) -> Path:
    text, plots = build(doc)
    for name, content in plots.items():
        (out_dir / name).write_text(content)
    path = out_dir / "latest.md"
    path.write_text(text)
    return path


if __name__ == "__main__":
    src = (
        Path(sys.argv[1])
        if len(sys.argv) > 1
        else Path(__file__).parent / "results" / "latest.json"
    )
    print(write(json.loads(src.read_text()), src.parent))
