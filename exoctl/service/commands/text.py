"""How the service commands show things to people: tables, key-value lists, figures without
exponents, the status screen, and the sentences for ``assist set`` and ``fault clear``."""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Iterable
from typing import Any

from exoctl.cli_policy import shown


def format_table(rows: list[dict[str, Any]], columns: Iterable[str]) -> str:
    cols = list(columns)
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line.rstrip(), *(b.rstrip() for b in body)])


def fmt_num(v: float) -> str:
    """A figure for people: no exponent, no minus zero, at most three significant digits."""
    if not math.isfinite(v):
        return "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    a = abs(v)
    if a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    elif a >= 1e-4:
        s = f"{v:.3g}"
    else:
        s = "0"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def fmt_us(v: float | None) -> str:
    """A duration given in microseconds: in us below a millisecond, else in ms."""
    if v is None:
        return "-"
    return f"{fmt_num(v)} us" if abs(v) < 1000 else f"{fmt_num(v / 1000.0)} ms"


def _cell(v: Any) -> str:
    """One value as a table cell: escaped (``cli_policy.shown``) before the column widths
    are measured, so a hostile value can neither break the row nor misalign it."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt_num(v)
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return shown(str(v))


def format_when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and len(v) <= 12:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def format_kv(d: dict[str, Any]) -> str:
    items = _flatten(d)
    if not items:
        return "(empty)"
    items = [(shown(k), v) for k, v in items]
    w = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(w)}  {_cell(v)}" for k, v in items)


def format_status(st: dict[str, Any]) -> str:
    """The status a clinician reads: state, session, per-joint torques, loop, link, faults.

    Falls back to every key when the answer does not have the expected shape."""
    try:
        return _format_status(st)
    except (KeyError, TypeError, ValueError, AttributeError):
        return format_kv(st)


def _format_status(st: dict[str, Any]) -> str:
    d, loop, link = st["daemon"], st["loop"], st.get("link") or {}
    state = st["safety_state"]
    lines = [
        f"exoctl {d['version']} (pid {d['pid']}, up {d['uptime_s']:.0f} s)   "
        f"loop {'healthy' if d['loop_healthy'] else 'NOT HEALTHY'}   "
        f"safety {state}" + (f": {STATE_WORDS[state]}" if state in STATE_WORDS else "")
    ]
    s = st.get("session")
    if s:
        gains = _gains_text(s["gains"])
        lines.append(
            f"session   patient {s['patient']}, protocol {s.get('protocol') or '-'}, "
            f"running {time.time() - s['started_at']:.0f} s, id {s.get('id') or '-'}"
        )
        lines.append(f"assist    {gains}")
    else:
        lines.append("session   none")
    stale = st.get("stale") or {}
    jit, cost, lat = loop["loop_jitter_us"], loop["tick_cost_us"], loop["latency_ms"]
    latency = (
        f"EMG->command p99 {_cell(lat['p99'])} ms"
        if "latency_ms" not in stale
        else f"EMG->command: no EMG for {_age(stale['latency_ms'])}"
    )
    rate = f"{loop['control_rate_hz']:.1f} Hz"
    if loop.get("idle") and loop.get("idle_rate_hz"):  # no session: the keep-alive rate
        done = f", in sessions {rate}" if loop["control_rate_hz"] else ""
        rate = f"idle at {loop['idle_rate_hz']:g} Hz (no session){done}"
    lines.append(
        f"loop      {rate} (target {loop['target_rate_hz']:g}), "
        f"{loop['deadline_misses']} deadline misses; last {loop.get('window_s', 0):g} s: "
        f"start error p99 {fmt_us(jit['p99'])}, tick cost p99 {fmt_us(cost['p99'])}, {latency}"
    )
    if st.get("loop_error"):
        lines.append(f"LOOP ERROR {st['loop_error']}")
    joints = list(st["estimate_nm"])
    cols = ["estimate_nm", "command_nm", "applied_nm"]
    rows = [
        {"joint": j, **{c: None if c in stale else (st.get(c) or {}).get(j) for c in cols}}
        for j in joints
    ]
    lines.append(format_table(rows, ["joint", *cols]))
    for c, why in (("estimate_nm", "no EMG"), ("applied_nm", "no telemetry from the device")):
        if c in stale:  # the last values, with their age, never in the table as current
            last = st.get(c) or {}
            shown = ", ".join(f"{j} {_cell(v)}" for j, v in last.items()) or "none"
            lines.append(f"NOT CURRENT {c}: {why} for {_age(stale[c])}; last values (N m): {shown}")
    if link:
        rtt = link.get("rtt_ms") or {}
        lines.append(
            f"link      {'healthy' if link.get('healthy') else 'NOT HEALTHY'}, "
            f"{'enabled' if link.get('enabled') else 'disabled'}, "
            f"{link.get('commands_sent', 0)} commands, {link.get('telemetry_received', 0)} "
            f"telemetry, {link.get('crc_errors', 0)} CRC errors, rtt p99 {_cell(rtt.get('p99'))} ms"
        )
        lines.append(_device_faults(link, "applied_nm" in stale))
    acq = st.get("acquisition") or {}
    if acq:
        lines.append(
            f"EMG       {acq.get('samples', 0)} samples, {acq.get('overflow_samples', 0)} lost"
            + (f", error: {acq['error']}" if acq.get("error") else "")
        )
    rec = st.get("recorder") or {}
    if rec:
        lines.append(
            f"recording {rec.get('db_path') or 'none'}; {rec.get('written_chunks', 0)} chunks "
            f"on disk, {rec.get('failed_chunks', 0)} lost to write errors, "
            f"{rec.get('dropped', 0)} dropped, {rec.get('write_errors', 0)} write errors"
            + (f", last: {rec['last_error']}" if rec.get("last_error") else "")
        )
    faults = st.get("faults") or []
    if faults:
        lines.append(f"faults    {len(faults)} recent, newest last:")
        for f in faults[-5:]:
            cleared = f.get("cleared_at")
            lines.append(
                f"  {_clock(f.get('wall_time'))}  {f.get('kind')}: {f.get('detail')}"
                + (f" (cleared {_clock(cleared)})" if cleared else "")
            )
    else:
        lines.append("faults    none")
    return "\n".join(lines)


def _age(age_s: float | None) -> str:
    """How long an input has been missing: ``12.3 s``, or ``ever`` (none came yet)."""
    return "ever (none received yet)" if age_s is None else f"{fmt_num(float(age_s))} s"


def _device_faults(link: dict[str, Any], stale: bool) -> str:
    """The device's faults now (its newest report), in words, apart from their history."""
    current = link.get("device_faults_current")
    history = link.get("device_faults") or []
    if current is None:
        now = "unknown (no telemetry yet)"
    else:
        now = ", ".join(n.replace("_", " ") for n in current) or "none"
        if stale:
            now += " (as last reported: no telemetry now)"
    past = f"; {len(history)} reported since start" if history else ""
    if history:
        past += f", last: {history[-1].replace('_', ' ')}"
    return f"device    faults now: {now}{past}"


# What each safety state means for the patient, in the clinician's words.
STATE_WORDS = {
    "NORMAL": "all inputs healthy",
    "DEGRADED": "an input is marginal, watched",
    "SAFE_STOP": "a fault was detected, torque is ramping to zero",
    "FAULT_LATCHED": "assistance OFF until a person clears the fault (exoctl fault clear)",
    "ESTOP": "e-stop, assistance OFF until a person clears it (exoctl fault clear)",
}
_OFF_STATES = ("SAFE_STOP", "FAULT_LATCHED", "ESTOP")


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "--:--:--"
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _gains_text(gains: Any) -> str:
    if isinstance(gains, dict):
        return ", ".join(f"{j} {fmt_num(float(g))}" for j, g in gains.items())
    return "-" if gains is None else f"{fmt_num(float(gains))} on every joint"


def assist_message(r: dict[str, Any]) -> str:
    """What an ``assist set`` does to the patient's assistance, given the daemon's answer."""
    level = _gains_text(r.get("assist_gain"))
    state = r.get("safety_state")
    if state in _OFF_STATES:
        why = "the e-stop is latched" if state == "ESTOP" else "a fault is latched"
        if state == "SAFE_STOP":
            why = "a fault was just detected"
        return (
            f"assist level set to {level}, but assistance stays OFF: {why}. After "
            "`exoctl fault clear` it resumes at this level, ramped in."
        )
    if r.get("session") is False:
        return (
            f"assist level set to {level}, but no session is running, so nothing is assisted; "
            "`exoctl session start --assist ...` sets the level of the next session."
        )
    return f"assistance changes to {level}, ramped (no step in torque)."


def clear_message(r: dict[str, Any]) -> str:
    gains = r.get("assist_gain")
    if gains:
        ramp = r.get("ramp_in_s")
        over = f" over {fmt_num(float(ramp))} s" if ramp is not None else ""
        return f"fault cleared: assistance resumes at {_gains_text(gains)}, ramping in{over}."
    return "fault cleared; no session is running (assistance starts with `exoctl session start`)."
