"""The report's HTML: summary block, charts, fault table, patient view, technical appendix."""

from __future__ import annotations

import datetime as dt
import html
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.control.safety.faults import BY_EVENT
from exoctl.service import store
from exoctl.service.events import describe, gains_text
from exoctl.service.report import analysis as A
from exoctl.service.report import figures as F

CSS = """
body { font-family: "DejaVu Sans", "Liberation Sans", Arial, sans-serif; margin: 24px auto;
       max-width: 1060px; color: #1d1d1d; line-height: 1.35; }
h1 { font-size: 24px; margin: 0 0 2px; } h2 { font-size: 19px; margin: 28px 0 8px;
     border-bottom: 2px solid #e6e6e6; padding-bottom: 3px; }
.sub { color: #555; margin-bottom: 14px; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 10px; }
.card { border: 1px solid #dcdcdc; border-radius: 6px; padding: 8px 12px; background: #fafafa; }
.card .k { font-size: 12.5px; color: #555; } .card .v { font-size: 21px; font-weight: bold; }
.card .n { font-size: 12px; color: #555; }
.card.alert { border-color: #D55E00; background: #fff4ec; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13.5px; }
th, td { text-align: left; padding: 4px 10px; border-bottom: 1px solid #e8e8e8; vertical-align: top; }
th { background: #f3f3f3; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.tech { color: #777; font-size: 11.5px; }
.fault td:first-child { font-weight: bold; color: #D55E00; }
svg { max-width: 100%; height: auto; display: block; margin: 6px 0; }
details { margin-top: 26px; } summary { font-size: 17px; font-weight: bold; cursor: pointer; }
.note { color: #555; font-size: 12.5px; } tr.current td { font-weight: bold; }
@media print { details { display: block; } .card { break-inside: avoid; } }
"""


def _esc(x: Any) -> str:
    return html.escape(str(x))


def clock(epoch: float | None, with_date: bool = False) -> str:
    """Local wall-clock time of the machine making the report."""
    if epoch is None:
        return "-"
    d = dt.datetime.fromtimestamp(epoch).astimezone()
    return d.strftime("%Y-%m-%d %H:%M:%S %Z" if with_date else "%H:%M:%S")


def minutes(seconds: float) -> str:
    return F.mmss(seconds) + " min"


def _num(v: float, fmt: str = ".1f", unit: str = "") -> str:
    return "-" if v is None or not np.isfinite(v) else f"{v:{fmt}}{unit}"


def _card(key: str, value: str, note: str = "", alert: bool = False) -> str:
    cls = "card alert" if alert else "card"
    return (
        f'<div class="{cls}"><div class="k">{_esc(key)}</div><div class="v">{_esc(value)}</div>'
        f'<div class="n">{_esc(note)}</div></div>'
    )


def _levels_text(s: A.Session) -> str:
    out: list[str] = []
    for e in s.events:
        if e["kind"] in ("session_start", "assist_change"):
            txt = gains_text((e.get("detail") or {}).get("gains"))
            if not out or out[-1] != txt:
                out.append(txt)
    return " → ".join(out) or "-"


def summary_block(s: A.Session, m: A.Summary) -> str:
    dur = max(m.duration_s, 1e-9)
    sym = ", ".join(f"{k} {_num(v, '.0f', ' %')}" for k, v in m.symmetry.items()) or "-"
    strides = " / ".join(f"{'left' if k == 'l' else 'right'} {v}" for k, v in m.strides.items())
    side_s = " / ".join(f"{v:.2f} s" for v in m.stride_s.values())
    interrupted = m.faults + m.estops
    cards = [
        _card("Duration", minutes(m.duration_s), f"ended: {s.info.get('end_reason') or 'unfinished'}"),
        _card("Time assisted", minutes(m.assisted_s), f"{100 * m.assisted_s / dur:.0f} % of the session"),
        _card("Interruptions", f"{m.faults} fault{'s' * (m.faults != 1)}, {m.estops} e-stop{'s' * (m.estops != 1)}",
              f"assistance off {minutes(m.off_s)}", alert=interrupted > 0),
        _card("Cadence", _num(m.cadence_spm, ".0f", " steps/min"), f"strides {strides or '-'}; {side_s}"),
    ]  # fmt: skip
    rows = "".join(
        f"<tr><td>{_esc(F.joint_label(j))}</td><td class=num>{_num(f.peak_applied)}</td>"
        f"<td class=num>{_num(f.mean_applied)}</td><td class=num>{_num(f.peak_estimated)}</td></tr>"
        for j, f in m.joints.items()
    )
    return (
        f'<div class="cards">{"".join(cards)}</div>'
        f"<p><b>Assistance level:</b> {_esc(_levels_text(s))}<br>"
        f"<b>Left/right difference</b> (0 % = symmetric): {_esc(sym)}</p>"
        "<table><tr><th>Joint</th><th>Peak applied<br>torque (N m)</th><th>Mean applied torque"
        "<br>while assisted (N m)</th><th>Patient's own peak torque<br>per stride (N m, median)"
        f"</th></tr>{rows}</table>"
    )


def _titles(ds: list[Any], counted: bool = True) -> list[str]:
    """Distinct titles in order, a repeated one with its count: "EMG signal interrupted x3"."""
    counts: dict[str, int] = {}
    for d in ds:
        counts[d.title] = counts.get(d.title, 0) + 1
    return [t if n == 1 or not counted else f"{t} ×{n}" for t, n in counts.items()]


def fault_table(s: A.Session, incs: list[A.Incident]) -> str:
    if not incs:
        return "<p>No faults and no emergency stop in this session.</p>"
    start = s.info["start_time"]
    rows = []
    for k, inc in enumerate(incs, 1):
        first = [describe(e) for e in inc.events if e["t_s"] - inc.t_s <= 0.25]
        later = [describe(e) for e in inc.events if e["t_s"] - inc.t_s > 0.25]
        causes: list[str] = []
        for d in first:
            fault = BY_EVENT.get(d.kind)
            cause = fault.cause if fault else ""
            if cause and cause not in causes:
                causes.append(cause)
        what = _esc(" + ".join(_titles(first, counted=False)))  # detected together
        if later:
            what += f"<br><i>then, while off: {_esc(', '.join(_titles(later)))}</i>"
        tech = "; ".join(dict.fromkeys(d.technical for d in first if d.technical))
        if inc.cleared_s is not None:
            cleared = f"at {clock(start + inc.cleared_s)}"
        else:
            cleared = f"continued as #{k + 1}" if k < len(incs) else "not cleared"
        rows.append(
            f'<tr class="fault"><td>{k}</td><td>{clock(start + inc.t_s)}</td>'
            f"<td>{F.mmss(inc.t_s)}</td><td>{what}<div class=tech>{_esc(tech)}</div></td>"
            f"<td>{_esc('; '.join(causes))}</td><td class=num>{F.mmss(inc.off_s)}</td>"
            f"<td>{_esc(cleared)}</td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>Clock time</th><th>Into session</th><th>What happened</th>"
        "<th>Likely cause / what to check</th><th>Assistance off (min:s)</th><th>Cleared by "
        f"the clinician</th></tr>{''.join(rows)}</table>"
    )


def event_log(s: A.Session) -> str:
    rows = []
    for e in s.events[:1000]:
        d = describe(e)
        rows.append(
            f"<tr><td>{clock(s.info['start_time'] + e['t_s'])}</td><td>{F.mmss(e['t_s'])}</td>"
            f"<td>{_esc(d.text)}"
            + (f'<div class="tech">{_esc(d.technical)}</div>' if d.technical else "")
            + "</td></tr>"
        )
    more = (
        f"<p class=note>{len(s.events) - 1000} more events in the export.</p>"
        if len(s.events) > 1000
        else ""
    )
    return (
        "<table><tr><th>Clock time</th><th>Into session</th><th>Event</th></tr>"
        + "".join(rows)
        + "</table>"
        + more
    )


def trend_rows(db: Path, current: dict[str, Any], history: int) -> list[dict[str, Any]]:
    """The summary figures of the patient's sessions up to this one (the last ``history``)."""
    files = [p for p in sorted(db.parent.glob(f"*{store.DB_SUFFIX}")) if p.stem <= current["id"]]
    rows = []
    for p in files[-history:]:
        try:
            s = A.load(p, extra=False)
        except Exception:  # an unreadable session is listed by `sessions list`, not here
            continue
        if s.info["patient"] != current["patient"]:
            continue
        m = A.summarise(s)
        rows.append(
            {
                "id": s.info["id"],
                "label": dt.datetime.fromtimestamp(s.info["start_time"]).strftime("%d %b\n%H:%M"),
                "start_time": s.info["start_time"],
                "duration_s": m.duration_s,
                "assisted_s": m.assisted_s,
                "cadence_spm": m.cadence_spm,
                "faults": m.faults,
                "estops": m.estops,
                "peak_applied": {j: f.peak_applied for j, f in m.joints.items()},
                "symmetry": m.symmetry,
                "level": _levels_text(s),
            }
        )
    return rows


def trend_section(rows: list[dict[str, Any]], current: str) -> str:
    if len(rows) < 2:
        return "<p>This is the patient's first recorded session: no trend yet.</p>"
    table = "".join(
        f"<tr{' class=current' if r['id'] == current else ''}>"
        f"<td>{clock(r['start_time'], True)}</td><td>{minutes(r['duration_s'])}</td>"
        f"<td>{minutes(r['assisted_s'])}</td><td class=num>{_num(r['cadence_spm'], '.0f')}</td>"
        f"<td class=num>{r['faults']} / {r['estops']}</td><td>{_esc(r['level'])}</td></tr>"
        for r in rows
    )
    return (
        F.trend(rows, current)
        + "<table><tr><th>Session</th><th>Length</th><th>Assisted</th><th>Cadence (steps/min)"
        f"</th><th>Faults / e-stops</th><th>Assistance level</th></tr>{table}</table>"
    )


def identity(s: A.Session) -> str:
    i = s.info
    rows = {
        "Session id": i["id"],
        "Patient": i["patient"],
        "Protocol": i["protocol"] or "-",
        "Start": clock(i["start_time"], True),
        "Stop": clock(i["stop_time"], True),
        "End reason": i["end_reason"] or "(unfinished: the recording was not closed)",
        "Model": f"{i['model_id'] or '-'}, sha256 {i['model_sha256'] or '-'}",
        "Calibration": f"{i['calibration_id'] or '-'}, sha256 {i['calibration_sha256'] or '-'}",
        "Software": i["software_version"],
    }
    return (
        "<table>"
        + "".join(f"<tr><th>{_esc(k)}</th><td>{_esc(v)}</td></tr>" for k, v in rows.items())
        + "</table>"
    )


def build(db: Path, session_id: str | None, *, history: int) -> str:
    s = A.load(db, session_id)
    m = A.summarise(s)
    incs = A.incidents(s)
    assisted = A.assisted_mask(s)
    gait_svg, counts = F.gait(s, m, assisted)
    rows = trend_rows(db, s.info, history)
    act = F.activations(s)
    timing, tstats = F.loop_timing(s)
    trows = "".join(
        f"<tr><td>{_esc(r['figure'])}</td><td class=num>{r['p50']:.3g}</td><td class=num>"
        f"{r['p99']:.3g}</td><td class=num>{r['max']:.3g}</td><td class=num>{r['n']}</td></tr>"
        for r in tstats
    )
    i = s.info
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Session report {_esc(i["patient"])} {_esc(clock(i["start_time"], True))}</title>
<style>{CSS}</style></head><body>
<h1>Session report: patient {_esc(i["patient"])}</h1>
<div class="sub">{_esc(clock(i["start_time"], True))} · {_esc(i["protocol"] or "no protocol recorded")}
 · session {_esc(i["id"])}</div>
<h2>Summary</h2>
{summary_block(s, m)}
{F.overview(s, m, incs, assisted)}
<h2>Faults and emergency stops</h2>
{fault_table(s, incs)}
<h2>Torque over the gait cycle</h2>
<p class="note">Mean (line) ± one standard deviation (band) over the strides during which
assistance was on throughout: left {counts.get("l", 0)}, right {counts.get("r", 0)} strides.
Assistance is the level set times the patient's own torque, so the commanded and applied
curves scale with the level; the applied curve is what the exoskeleton reported.</p>
{gait_svg}
<h2>Progress across sessions</h2>
{trend_section(rows, i["id"])}
<details><summary>Event log ({len(s.events)} events)</summary>
{event_log(s)}
</details>
<details><summary>Technical details</summary>
{identity(s)}
{act or "<p>No muscle activations recorded.</p>"}
{timing or "<p>No loop timing recorded.</p>"}
<table><tr><th>loop figure (ms)</th><th>p50</th><th>p99</th><th>max</th><th>ticks</th></tr>{trows}</table>
</details>
</body></html>
"""
