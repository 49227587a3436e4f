"""Session report: one self-contained HTML file with inline SVG charts.

HTML + SVG needs no plotting library, opens in any browser on the clinic PC, prints, and can
be attached to a patient record as one file. Charts: estimated vs applied torque per joint,
synergy activations, other recorded streams, the control-loop timing histogram, and the
events on a timeline (faults, e-stops, assist changes, overflows).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.service import recorder as R

W, H = 900, 220
ML, MR, MT, MB = 60, 150, 24, 30
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip
MAX_POINTS = 1500
EVENT_COLOURS = {"fault": "#d62728", "estop": "#d62728", "recorder_overflow": "#ff7f0e"}


def _decimate(t: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Min/max per bucket so spikes survive the thinning."""
    n = t.shape[0]
    if n <= MAX_POINTS:
        return t, y
    buckets = MAX_POINTS // 2
    edges = np.linspace(0, n, buckets + 1).astype(int)
    tt, yy = [], []
    for a, b in zip(edges[:-1], edges[1:], strict=True):
        if b <= a:
            continue
        seg = y[a:b]
        i, j = int(np.argmin(seg)), int(np.argmax(seg))
        for k in sorted({i, j}):
            tt.append(t[a + k])
            yy.append(seg[k])
    return np.asarray(tt), np.asarray(yy)


def _scale(v: np.ndarray, lo: float, hi: float, a: float, b: float) -> np.ndarray:
    if hi - lo <= 0:
        hi = lo + 1.0
    return a + (v - lo) / (hi - lo) * (b - a)


def _axes(x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str) -> list[str]:
    out = [f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{H - MT - MB}" '
           'fill="none" stroke="#888"/>']  # fmt: skip
    for v in np.linspace(y0, y1, 5):
        y = _scale(np.array([v]), y0, y1, H - MB, MT)[0]
        out.append(f'<line x1="{ML - 4}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
        out.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{v:.3g}</text>')
    for v in np.linspace(x0, x1, 6):
        x = _scale(np.array([v]), x0, x1, ML, W - MR)[0]
        out.append(f'<text x="{x:.1f}" y="{H - MB + 16}" text-anchor="middle">{v:.3g}</text>')
    out.append(f'<text x="{(ML + W - MR) / 2}" y="{H - 2}" text-anchor="middle">'
               f"{html.escape(xlabel)}</text>")  # fmt: skip
    out.append(f'<text x="12" y="{(MT + H - MB) / 2}" transform="rotate(-90 12 '
               f'{(MT + H - MB) / 2})" text-anchor="middle">{html.escape(ylabel)}</text>')  # fmt: skip
    return out


def svg_lines(
    title: str,
    t: np.ndarray,
    series: list[tuple[str, np.ndarray]],
    *,
    xlabel: str = "time in session (s)",
    ylabel: str = "",
    dashed: set[str] | None = None,
    events: list[dict[str, Any]] | None = None,
) -> str:
    """A line chart; ``series`` = [(label, y)], every y the length of ``t``."""
    if t.size == 0 or not series:
        return f"<p><em>{html.escape(title)}: no data</em></p>"
    ys = [y[np.isfinite(y)] for _, y in series]
    y0 = min(float(y.min()) for y in ys if y.size) if any(y.size for y in ys) else 0.0
    y1 = max(float(y.max()) for y in ys if y.size) if any(y.size for y in ys) else 1.0
    pad = 0.05 * (y1 - y0 or 1.0)
    y0, y1 = y0 - pad, y1 + pad
    x0, x1 = float(t.min()), float(t.max())
    if x1 <= x0:
        x1 = x0 + 1.0
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
             f'<text x="{ML}" y="15" font-weight="bold">{html.escape(title)}</text>']  # fmt: skip
    parts += _axes(x0, x1, y0, y1, xlabel, ylabel)
    for e in events or []:
        x = _scale(np.array([e["t_s"]]), x0, x1, ML, W - MR)[0]
        if ML <= x <= W - MR:
            c = EVENT_COLOURS.get(e["kind"], "#999")
            parts.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{H - MB}" stroke="{c}" '
                         f'stroke-dasharray="2,3"><title>{html.escape(e["kind"])}</title></line>')  # fmt: skip
    for i, (label, y) in enumerate(series):
        tt, yy = _decimate(t, y)
        ok = np.isfinite(yy)
        xs = _scale(tt[ok], x0, x1, ML, W - MR)
        ps = _scale(yy[ok], y0, y1, H - MB, MT)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(xs, ps, strict=True))
        c = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5,3"' if dashed and label in dashed else ""
        parts.append(
            f'<polyline fill="none" stroke="{c}" stroke-width="1.2"{dash} points="{pts}"/>'
        )
        ly = MT + 12 + 14 * i
        parts.append(f'<line x1="{W - MR + 8}" x2="{W - MR + 28}" y1="{ly - 4}" y2="{ly - 4}" '
                     f'stroke="{c}" stroke-width="2"{dash}/>')  # fmt: skip
        parts.append(f'<text x="{W - MR + 32}" y="{ly}">{html.escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def svg_histogram(title: str, values: dict[str, np.ndarray], *, xlabel: str, bins: int = 60) -> str:
    vals = {k: v[np.isfinite(v)] for k, v in values.items()}
    vals = {k: v for k, v in vals.items() if v.size}
    if not vals:
        return f"<p><em>{html.escape(title)}: no data</em></p>"
    lo = min(float(v.min()) for v in vals.values())
    hi = max(float(np.percentile(v, 99.9)) for v in vals.values())
    if hi <= lo:
        hi = lo + 1e-3
    edges = np.linspace(lo, hi, bins + 1)
    counts = {k: np.histogram(np.clip(v, lo, hi), edges)[0] for k, v in vals.items()}
    cmax = max(int(c.max()) for c in counts.values()) or 1
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" '
             f'viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="11">',
             f'<text x="{ML}" y="15" font-weight="bold">{html.escape(title)}</text>']  # fmt: skip
    parts += _axes(lo, hi, 0, cmax, xlabel, "count")
    bw = (W - ML - MR) / bins
    for i, (k, c) in enumerate(counts.items()):
        col = PALETTE[i % len(PALETTE)]
        for j, n in enumerate(c):
            if n == 0:
                continue
            h = (H - MT - MB) * n / cmax
            parts.append(f'<rect x="{ML + j * bw:.1f}" y="{H - MB - h:.1f}" width="{bw:.1f}" '
                         f'height="{h:.1f}" fill="{col}" fill-opacity="0.5"/>')  # fmt: skip
        v = vals[k]
        ly = MT + 12 + 14 * i
        parts.append(f'<rect x="{W - MR + 8}" y="{ly - 9}" width="20" height="8" fill="{col}" '
                     'fill-opacity="0.5"/>')  # fmt: skip
        parts.append(f'<text x="{W - MR + 32}" y="{ly}">{html.escape(k)} '
                     f"p50 {np.median(v):.3g} p99 {np.percentile(v, 99):.3g}</text>")  # fmt: skip
    parts.append("</svg>")
    return "\n".join(parts)


def svg_timeline(events: list[dict[str, Any]], t_end: float) -> str:
    if not events:
        return "<p><em>no events</em></p>"
    kinds = sorted({e["kind"] for e in events})
    h = MT + MB + 18 * len(kinds)
    x1 = max(t_end, max(e["t_s"] for e in events), 1e-3)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" '
             f'viewBox="0 0 {W} {h}" font-family="sans-serif" font-size="11">',
             f'<text x="{ML}" y="15" font-weight="bold">Events</text>']  # fmt: skip
    for i, k in enumerate(kinds):
        y = MT + 10 + 18 * i
        parts.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y}" y2="{y}" stroke="#eee"/>')
        parts.append(f'<text x="{W - MR + 8}" y="{y + 4}">{html.escape(k)}</text>')
        for e in (e for e in events if e["kind"] == k):
            x = ML + (W - ML - MR) * max(0.0, e["t_s"]) / x1
            c = EVENT_COLOURS.get(k, PALETTE[i % len(PALETTE)])
            tip = html.escape(f"{e['t_s']:.3f} s {k} {json.dumps(e['detail'])}")
            parts.append(f'<circle cx="{x:.1f}" cy="{y}" r="4" fill="{c}"><title>{tip}</title>'
                         "</circle>")  # fmt: skip
    for v in np.linspace(0, x1, 6):
        x = ML + (W - ML - MR) * v / x1
        parts.append(f'<text x="{x:.1f}" y="{h - MB + 16}" text-anchor="middle">{v:.3g}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def build_report(db: str | Path, session_id: str | None = None) -> str:
    with R.open_session_db(db) as conn:
        info = R.session_info(conn, session_id)
        names = R.stream_names(conn)
        data = {}
        for s in names:
            t, d = R.read_stream(conn, s)
            d2 = d.reshape(d.shape[0], -1) if d.ndim != 1 else d.reshape(-1, 1)
            data[s] = (t - info["start_mono"], d2, R.stream_columns(conn, s, d2.shape[1]))
        events = R.read_events(conn)
    for e in events:
        e["t_s"] = e["t"] - info["start_mono"]
    t_end = max([float(v[0].max()) for v in data.values() if v[0].size] + [0.0])

    sections: list[str] = []
    est, cmd = data.get("torque_estimated"), data.get("torque_command")
    if est is not None or cmd is not None:
        cols = (est or cmd)[2]  # type: ignore[index]
        for j, name in enumerate(cols):
            series, t = [], None
            for label, s in (("estimated", est), ("applied", cmd)):
                if s is None or j >= s[1].shape[1]:
                    continue
                t_s, d_s, _ = s
                if t is None:
                    t = t_s
                    series.append((label, d_s[:, j]))
                else:  # put the second stream on the first one's time base
                    series.append((label, np.interp(t, t_s, d_s[:, j]) if t_s.size else t * np.nan))
            if t is not None:
                sections.append(
                    svg_lines(
                        f"Torque, {name}",
                        t,
                        series,
                        ylabel="N m",
                        dashed={"applied"},
                        events=events,
                    )  # fmt: skip
                )
    skip = {"torque_estimated", "torque_command", "loop_timing", "emg_raw"}
    for s in ["synergy", *[n for n in names if n not in skip and n != "synergy"]]:
        if s not in data:
            continue
        t, d, cols = data[s]
        if d.shape[1] > 16:
            continue
        title = "Synergy activations" if s == "synergy" else s.replace("_", " ").capitalize()
        sections.append(
            svg_lines(title, t, [(c, d[:, i]) for i, c in enumerate(cols)], events=events)
        )
    if "loop_timing" in data:
        t, d, cols = data["loop_timing"]
        sections.append(
            svg_histogram(
                "Control loop timing",
                {c: d[:, i] * 1e3 for i, c in enumerate(cols)},
                xlabel="milliseconds",
            )
        )
    sections.append(svg_timeline(events, t_end))

    ev_rows = "".join(
        f"<tr><td>{e['t_s']:.3f}</td><td>{html.escape(e['kind'])}</td>"
        f"<td><code>{html.escape(json.dumps(e['detail']))}</code></td></tr>"
        for e in events[:500]
    )
    ident = {
        "Session": info["id"],
        "Patient": info["patient"],
        "Protocol": info["protocol"] or "-",
        "Start": _when(info["start_time"]),
        "Stop": _when(info["stop_time"]),
        "Duration": f"{info['duration_s']:.1f} s" if info["duration_s"] else f"~{t_end:.1f} s",
        "End reason": info["end_reason"] or "(unfinished: the recording was not closed)",
        "Model": f"{info['model_id'] or '-'} sha256 {info['model_sha256'] or '-'}",
        "Calibration": f"{info['calibration_id'] or '-'} sha256 {info['calibration_sha256'] or '-'}",
        "Software": info["software_version"],
    }
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in ident.items()
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>exoctl session {html.escape(info["id"])}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 1em; }}
th, td {{ text-align: left; padding: 2px 10px; border-bottom: 1px solid #eee; font-size: 13px; }}
svg {{ display: block; margin: 1em 0; }}
</style></head><body>
<h1>Session {html.escape(info["id"])}</h1>
<table>{rows}</table>
<h2>Charts</h2>
{"".join(sections)}
<h2>Events ({len(events)})</h2>
<table><tr><th>t (s)</th><th>kind</th><th>detail</th></tr>{ev_rows}</table>
</body></html>
"""


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def write_report(db: str | Path, session_id: str | None, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise R.RecorderError(
            f"report format {out.suffix or '(none)'} not supported: use a .html file name "
            "(PNG would need matplotlib, which exoctl does not depend on)"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(build_report(db, session_id), encoding="utf-8")
    return out
