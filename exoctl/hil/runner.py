"""`exoctl hil`: the simulator and the controller together, scored against the truth.

Three processes: this one orchestrates; the simulator (LSL outlet + emulated firmware on a
pty) and the controller (exactly as on the exoskeleton, configured only with the pty's path
and the LSL stream's source id) each run in a child. When the run ends the simulator hands
back the true human torque of every EMG sample it emitted, stamped in LSL time, and each tick's
estimate is scored against the truth at the stamp of the newest EMG sample that estimate used.

Fault scenarios (``configs/scenarios/NAME.yaml``, package data) inject timed faults on either side; every
injection is reported with when it was injected, when the controller (or, for a killed
controller, the firmware) detected it, and when torque reached zero.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from exoctl.config.schema import deep_merge, load_config
from exoctl.estimation import metrics
from exoctl.hil import MAX_DURATION_S
from exoctl.hil.processes import (
    ChildHandle,
    controller_process,
    path_or_none,
    simulator_entry,
    start_busy,
)
from exoctl.hil.replay import (
    ReplaySpec,
    controller_overrides,
    load_recording,
    replay_chunk,
)
from exoctl.hil.scenarios import (
    CONTROLLER_KINDS,
    Injection,
    load_scenario,
)

if TYPE_CHECKING:
    from exoctl.hil.simulator import SimulatorResult

WARMUP_S = 2.0  # filter transients and the assist ramp-in are not scored


def score(
    stamps: np.ndarray,
    estimates: np.ndarray,
    truth_stamps: np.ndarray,
    truth: np.ndarray,
    joints: tuple[str, ...],
) -> tuple[dict, dict]:
    """R^2 and RMSE per joint of estimates against the truth at the same LSL time."""
    ok = np.isfinite(stamps) & np.isfinite(estimates).all(axis=1)
    if truth_stamps.size:
        ok &= (stamps >= truth_stamps[0]) & (stamps <= truth_stamps[-1])
    r2, rmse = {}, {}
    for j, name in enumerate(joints):
        if not ok.any():
            r2[name] = rmse[name] = float("nan")
            continue
        y = np.interp(stamps[ok], truth_stamps, truth[:, j])
        yhat = estimates[ok, j]
        r2[name] = round(float(metrics.r2(y, yhat)), 4)
        rmse[name] = round(float(metrics.rmse(y, yhat)), 3)
    return r2, rmse


def run_hil(
    duration_s: float,
    config_path: Path | None = None,
    cfg_overrides: dict | None = None,
    injections: list[Injection] | None = None,
    firmware: str = "python",
    replay: ReplaySpec | None = None,
    model: str | None = None,
) -> dict:
    """Run the bench for ``duration_s`` of assisted walking; return the summary document.

    ``firmware``: "python" (the emulator) or "qemu" (the C firmware on an emulated board).
    Figures that were not measured are None or NaN (e.g. R^2 of a run no longer than the
    warm-up); ``cli_policy.json_text`` writes both as JSON null.

    ``replay``: the simulator streams that recording instead of the synthetic patient
    (``exoctl.hil.replay``) and the run lasts as long as it does (``duration_s`` is then an
    upper bound); ``model``: the model the controller runs (default: the configuration's).
    """
    if not (math.isfinite(duration_s) and 0 < duration_s <= MAX_DURATION_S):
        raise ValueError(f"duration_s must be in (0, {MAX_DURATION_S:g}] s, got {duration_s!r}")
    cfg = load_config(config_path)  # fail here, with the file and key, not in a child
    overrides = dict(cfg_overrides or {})
    if overrides:
        cfg = cfg.with_overrides(**overrides)
    rec = None
    if replay is not None:  # loaded here too: a bad trial or window fails before any child
        rec = load_recording(replay)
        chunk = replay_chunk(rec.fs_hz, cfg.tick_rate_hz, cfg.simulator.emg_chunk_samples)
        overrides = deep_merge(overrides, controller_overrides(rec.describe(), model, chunk))
        cfg = cfg.with_overrides(**overrides)
        duration_s = min(duration_s, rec.duration_s)
    elif model is not None:
        overrides = deep_merge(overrides, controller_overrides(None, model, 0))
        cfg = cfg.with_overrides(**overrides)
    from exoctl.estimation.estimator import check_model_and_calibration

    check_model_and_calibration(cfg)  # a bad one fails here, before any child process starts
    sim = ChildHandle(
        "HIL simulator", simulator_entry, path_or_none(config_path), overrides, firmware, replay
    )
    # The controller's process starts now too (its interpreter and imports overlap the
    # simulator's) and waits for the simulator's endpoints.
    ctl = ChildHandle(
        "controller", controller_process, path_or_none(config_path), duration_s + 30.0
    )
    try:
        endpoints = sim.wait_ready()
    except BaseException:
        ctl.kill()
        raise
    ctl_overrides = deep_merge(
        overrides,
        {
            "device": {"serial": {"port": endpoints["port"]}},
            "emg": {"source": "lsl", "lsl": {"source_id": endpoints["source_id"]}},
        },
    )
    busy: list = []
    injected: list[dict] = []
    ctl_result: dict | None = None
    try:
        ctl.send("configure", ctl_overrides)
        ready = ctl.wait_ready()
        t_start = ready["t_session"]
        if rec is not None:  # until the recording's last sample
            duration_s = min(duration_s, endpoints["replay"]["t0"] + rec.duration_s - t_start)
        pending = sorted(injections or [], key=lambda i: i.at_s)
        while (elapsed := time.monotonic() - t_start) < duration_s:
            while pending and pending[0].at_s <= elapsed:
                inj = pending.pop(0)
                t_inj = time.monotonic()
                result = None
                if inj.kind == "cpu_starvation":
                    busy += start_busy(
                        int(inj.params.get("processes", 2)), float(inj.params.get("seconds", 3.0))
                    )
                elif inj.kind == "controller_kill":
                    ctl.kill()
                elif inj.kind in CONTROLLER_KINDS:
                    result = ctl.request(inj.kind)
                else:
                    sim.request("inject", {"kind": inj.kind, "params": inj.params})
                entry = {"kind": inj.kind, "params": inj.params, "t": t_inj}
                if inj.kind == "clear_fault":
                    entry["cleared"] = bool(result)
                injected.append(entry)
            time.sleep(max(0.0, min(0.01, duration_s - elapsed)))
        if ctl.alive:
            ctl_result = ctl.stop()
    finally:
        for p in busy:
            p.kill()
        ctl.kill()
        sim_result = sim.stop()
    out = _summarise(cfg, duration_s, t_start, injected, ctl_result, sim_result)
    out["realtime"] = {"controller_loop": ready["realtime"], "simulator": endpoints["realtime"]}
    if rec is not None and replay is not None:
        out.update(_replay_summary(cfg, replay, rec, endpoints, t_start, ctl_result))
    return out


def _replay_summary(cfg, spec, rec, endpoints, t_start, ctl: dict | None) -> dict:
    """The replay's scores replace the synthetic patient's (module exoctl.hil.replay_score)."""
    from exoctl.estimation.torque_model import TorqueModel
    from exoctl.hil.replay_score import offline_estimate, score_replay

    model_joints = TorqueModel(cfg.model.path).info.joints
    if ctl is None:
        return {"replay": {"recording": rec.describe(), "live": None}}
    offline = None
    if spec.data is not None and rec.torque is not None:
        offline = offline_estimate(cfg, spec, str(cfg.model.path))
    section = score_replay(
        cfg, rec, endpoints["replay"]["t0"], ctl["log"], t_start, WARMUP_S, model_joints, offline
    )
    live = section["live"]
    return {
        "replay": section,
        "r2": {j: m["r2"] for j, m in live.items()},
        "rmse_nm": {j: m["rmse_nm"] for j, m in live.items()},
    }


def _summarise(cfg, duration_s, t_start, injected, ctl, sim: SimulatorResult) -> dict:
    emu = sim["emulator"]
    joints = cfg.joint_names
    rel = lambda t: None if t is None else round(t - t_start, 4)  # noqa: E731
    faults: list[dict] = []
    if ctl is None:  # the controller was killed: only the firmware's view remains
        loop = {
            "target_rate_hz": cfg.tick_rate_hz,
            "control_rate_hz": None,
            "ticks": None,
            "deadline_misses": None,
            "loop_jitter_us": None,
            "tick_cost_us": None,
            "latency_ms": None,
            "sample_age_ms": None,
        }
        r2: dict[str, float]
        rmse: dict[str, float]
        link, acq, r2, rmse, fault_log = {}, {}, {}, {}, []
    else:
        loop, link, acq, fault_log = ctl["loop"], ctl["link"], ctl["acquisition"], ctl["events"]
        log = ctl["log"]
        t = log["t"]
        warm = t >= (t[0] + WARMUP_S) if t.size else np.zeros(0, bool)
        r2, rmse = {}, {}
        if sim["truth_stamps"].size:  # a replay is scored against its recording instead
            r2, rmse = score(
                log["stamp"][warm],
                log["estimate"][warm],
                sim["truth_stamps"],
                sim["truth_torque"],
                joints,
            )
        faults += [
            dict(e, t_detected=rel(e["t_detected"]), t_zero=rel(e["t_zero"])) for e in fault_log
        ]
        if ctl["stop_error"]:
            faults.append({"kind": "session_stop", "detail": ctl["stop_error"]})
        if ctl["loop_error"]:
            faults.append({"kind": "control_loop_died", "detail": ctl["loop_error"]})
        if acq.get("error"):
            faults.append({"kind": "acquisition", "detail": acq["error"]})
        if acq.get("overflow_samples"):
            faults.append({"kind": "emg_overflow", "detail": f"{acq['overflow_samples']} samples"})
    # The firmware removing torque after the host closed the link at the end of the run is
    # its timeout doing its job, not a fault of the run; while the controller lives it is.
    t_end = float("inf") if ctl is None else ctl["t_link_closed"]
    fw_faults = [f for f in emu.get("faults", []) if f["t"] < t_end]
    for f in fw_faults:
        faults.append(
            {
                "kind": f"firmware:{f['fault']}",
                "detail": "latched" if f["latched"] else "",
                "t_detected": rel(f["t"]),
                "t_zero": rel(f["t"]),
            }
        )

    events = []
    for inj in injected:
        ev = {
            "kind": inj["kind"],
            "params": inj["params"],
            "injected_at_s": rel(inj["t"]),
            "detected_at_s": None,
            "detected_as": None,
            "zero_at_s": None,
        }
        if inj["kind"] == "clear_fault":  # a person's action, not a fault: report its outcome
            ev = {
                "kind": "clear_fault",
                "params": {},
                "injected_at_s": rel(inj["t"]),
                "cleared": inj["cleared"],
            }
        elif inj["kind"] == "controller_kill":
            hit = next((f for f in fw_faults if f["t"] >= inj["t"]), None)
            if hit:
                ev.update(
                    detected_at_s=rel(hit["t"]),
                    detected_as=f"firmware:{hit['fault']}",
                    zero_at_s=rel(hit["t"]),
                )
        else:
            hit = next((e for e in fault_log if e["t_detected"] >= inj["t"]), None)
            if hit:
                ev.update(
                    detected_at_s=rel(hit["t_detected"]),
                    detected_as=hit["kind"],
                    zero_at_s=rel(hit["t_zero"]),
                )
        events.append(ev)

    return {
        "duration_s": duration_s,
        "target_rate_hz": loop["target_rate_hz"],
        "control_rate_hz": loop["control_rate_hz"],
        "ticks": loop["ticks"],
        "commands_sent": link.get("commands_sent"),
        "commands_received": emu.get("commands_received"),
        "r2": r2,
        "rmse_nm": rmse,
        "scored_after_s": WARMUP_S,
        "loop_jitter_us": loop["loop_jitter_us"],
        "tick_cost_us": loop["tick_cost_us"],
        "deadline_misses": loop["deadline_misses"],
        "latency_ms": loop["latency_ms"],
        "sample_age_ms": loop["sample_age_ms"],
        "rtt_ms": {k: link.get(k) for k in ("rtt_ms_p50", "rtt_ms_p99", "rtt_ms_max")},
        "emg_samples": {"sent": sim["emg_samples_sent"], "received": acq.get("samples")},
        "limit_violations": emu.get("limit_violations"),
        "safety_state": loop.get("safety_state"),
        "events": events,
        "faults": faults,
    }


def run_scenario(
    name_or_path: str,
    config_path: Path | None = None,
    firmware: str = "python",
    replay: ReplaySpec | None = None,
    model: str | None = None,
) -> dict:
    sc = load_scenario(name_or_path)
    out = run_hil(
        sc.duration_s,
        config_path,
        sc.config or None,
        sc.injections,
        firmware,
        replay=replay,
        model=model,
    )
    out["scenario"] = {"name": sc.name, "description": sc.description, "expect": sc.expect}
    return out


def _fmt_pct(d: dict | None, unit: str) -> str:
    if not d:
        return "n/a"
    return f"p50 {_num(d['p50'])} {unit}, p99 {_num(d['p99'])} {unit}, max {_num(d['max'])} {unit}"


def _num(v: object, spec: str = "") -> str:
    """A figure for a person; "n/a" where nothing was measured (None, NaN)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    return format(v, spec)


def format_summary(s: dict) -> str:
    """The same figures as --json, for a person at the bench."""
    head = f"exoctl HIL run: {s['duration_s']:.1f} s of simulated assisted walking"
    rp = s.get("replay")
    if rp is not None:
        rec = rp["recording"]
        head = (
            f"exoctl HIL replay: {rec['name']} ({rec['source'].get('data') or rec['source']}), "
            f"{rec['emg_kind']} EMG at {rec['fs_hz']:g} Hz, {len(rec['muscles'])} muscles"
        )
    if "scenario" in s:
        head += f", scenario {s['scenario']['name']}: {s['scenario']['description']}"
    rate = s["control_rate_hz"]
    lines = [
        head,
        f"  control rate      {rate if rate is not None else 'n/a'} Hz (target "
        f"{s['target_rate_hz']:.0f} Hz), {s['deadline_misses']} deadline misses",
        f"  tick start error  {_fmt_pct(s['loop_jitter_us'], 'us')}",
        f"  scheduling        controller loop {s['realtime']['controller_loop']}; simulator "
        f"{s['realtime']['simulator']}",
        f"  tick cost         {_fmt_pct(s['tick_cost_us'], 'us')}",
        f"  EMG -> command    {_fmt_pct(s['latency_ms'], 'ms')} (from sample arrival)",
        f"  commands          {s['commands_sent']} sent, {s['commands_received']} received by "
        f"the firmware, {s['limit_violations']} over its limits",
    ]
    if rp is not None:
        lines += _format_replay(rp)
    else:
        lines.append(f"  torque estimate   (scored after {s['scored_after_s']:.0f} s)")
    for j in s["r2"] if rp is None else ():
        lines.append(
            f"    {j:<8} R^2 {_num(s['r2'][j], '.3f')}   RMSE {_num(s['rmse_nm'][j], '.2f')} N m"
        )
    if rp is None and s["duration_s"] <= s["scored_after_s"]:
        lines.append(
            f"    (not scored: the run is not longer than the {s['scored_after_s']:g} s warm-up)"
        )
    for e in s["events"]:
        if e["kind"] == "clear_fault":
            lines.append(
                f"  fault clear requested at {e['injected_at_s']} s: "
                + ("cleared" if e["cleared"] else "refused (inputs not healthy yet)")
            )
            continue
        lines.append(
            f"  injected {e['kind']} at {e['injected_at_s']} s: detected "
            f"{'as ' + e['detected_as'] + ' at ' + str(e['detected_at_s']) + ' s' if e['detected_as'] else 'NOT detected'}"
            f", torque zero at {e['zero_at_s']} s"
        )
    if s["faults"]:
        lines.append(f"  faults ({len(s['faults'])}):")
        for f in s["faults"]:
            lines.append(f"    - {f.get('kind')}: {f.get('detail', '')}")
    else:
        lines.append("  faults            none")
    return "\n".join(lines)


def _format_replay(rp: dict) -> list[str]:
    """A replay's scores and what the patient would have received, for a person."""
    if rp.get("live") is None:
        return ["  torque estimate   not scored (the controller did not finish the run)"]
    lines = [
        f"  torque estimate   vs the measured moments on the same {rp['scored_ticks']} ticks, "
        f"{rp['scored_from_s']:g}-{rp['scored_to_s']:g} s, no delay compensation"
    ]
    off = rp.get("offline")
    for j, m in rp["live"].items():
        row = f"    {j:<8} live R^2 {_num(m['r2'], '.3f')}  RMSE {_num(m['rmse_nm'], '.2f')} N m"
        if off and j in off:
            row += (
                f"   offline R^2 {_num(off[j]['r2'], '.3f')}  RMSE "
                f"{_num(off[j]['rmse_nm'], '.2f')} N m"
            )
        row += f"   delay {_num(rp['delay_ms'].get(j))} ms (cross-correlation, not applied)"
        if off:
            row += f", {_num(rp['live_path_delay_ms'].get(j))} ms behind offline"
        lines.append(row)
    age = rp.get("telemetry_age_ms")
    if age:
        lines.append(
            f"  telemetry age     p50 {age['p50']} ms, p99 {age['p99']} ms, max {age['max']} ms "
            "(the replayed angles, when a tick used them)"
        )
    lag = rp.get("estimate_lag_ms")
    if lag:
        lines.append(
            f"  estimate instant  p50 {lag['p50']} ms, p99 {lag['p99']} ms, max {lag['max']} ms "
            "before its command (EMG and angles paired at the newest instant both cover)"
        )
    if rp["unassisted_joints"]:
        lines.append(
            f"  no assistance     {', '.join(rp['unassisted_joints'])} (the model does not "
            "estimate them)"
        )
    lines.append("  commanded torque  (what the patient would have received)")
    for j, c in rp["command"].items():
        lines.append(
            f"    {j:<8} peak {_num(c['peak_nm'], '.2f')} N m   mean |.| "
            f"{_num(c['mean_abs_nm'], '.2f')} N m   at the limit {c['at_limit_s']:.2f} s"
        )
    return lines
