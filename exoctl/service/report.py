"""Session report: one self-contained HTML file with inline SVG charts.

HTML + SVG needs no plotting library, opens in any browser on the clinic PC, prints, and can
be attached to a patient record as one file. Charts: estimated, commanded and applied (the
firmware's telemetry) torque per joint, joint angles, safety state, synergy activations and
other recorded streams, the control-loop timing histogram, and the events on a timeline
(faults, e-stops, assist changes, overflows).
"""

from __future__ import annotations

import datetime as dt
import html
import json
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.service import recorder as R

W, H = 940, 220
ML, MR, MT, MB = 60, 190, 24, 30
PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf"]  # fmt: skip
MAX_POINTS = 1500
EVENT_COLOURS = {"fault": "#d62728", "estop": "#d62728", "recorder_overflow": "#ff7f0e"}
STATE_LABELS = "0 normal, 1 degraded, 2 safe stop, 3 fault latched, 4 e-stop"


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


def nice_ticks(lo: float, hi: float, n: int = 5) -> np.ndarray:
    """Round tick values (steps of 1, 2, 2.5 or 5 x 10^k) within [lo, hi]."""
    span = hi - lo
    if not np.isfinite(span) or span <= 0:
        return np.array([lo])
    raw = span / max(1, n)
    mag = 10.0 ** np.floor(np.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    ticks = np.arange(np.ceil(lo / step) * step, hi + step * 1e-9, step)
    return np.round(ticks, 12)


class _Svg:
    """One chart: frame, ticks, legend; coordinates mapped from data to pixels."""

    def __init__(self, title: str, height: int) -> None:
        self.h = height
        self.parts = [
            f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height}" '
            f'viewBox="0 0 {W} {height}" font-family="sans-serif" font-size="11">',
            f'<text x="{ML}" y="15" font-weight="bold">{html.escape(title)}</text>',
        ]

    def axes(self, x0: float, x1: float, y0: float, y1: float, xlabel: str, ylabel: str) -> None:
        self.x0, self.x1, self.y0, self.y1 = x0, x1, y0, y1
        h, p = self.h, self.parts
        p.append(
            f'<rect x="{ML}" y="{MT}" width="{W - ML - MR}" height="{h - MT - MB}" '
            'fill="none" stroke="#888"/>'
        )
        for v in nice_ticks(y0, y1, 5):
            y = self.y(v)
            p.append(f'<line x1="{ML - 4}" x2="{W - MR}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eee"/>')
            p.append(f'<text x="{ML - 6}" y="{y + 4:.1f}" text-anchor="end">{v + 0.0:g}</text>')
        for v in nice_ticks(x0, x1, 8):
            x = self.x(v)
            p.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{h - MB}" y2="{h - MB + 4}" stroke="#888"/>'
            )
            p.append(f'<text x="{x:.1f}" y="{h - MB + 16}" text-anchor="middle">{v + 0.0:g}</text>')
        p.append(
            f'<text x="{(ML + W - MR) / 2}" y="{h - 2}" text-anchor="middle">'
            f"{html.escape(xlabel)}</text>"
        )
        mid = (MT + h - MB) / 2
        p.append(
            f'<text x="12" y="{mid}" transform="rotate(-90 12 {mid})" text-anchor="middle">'
            f"{html.escape(ylabel)}</text>"
        )

    def x(self, v: Any) -> Any:
        return _scale(np.asarray(v, dtype=float), self.x0, self.x1, ML, W - MR)

    def y(self, v: Any) -> Any:
        return _scale(np.asarray(v, dtype=float), self.y0, self.y1, self.h - MB, MT)

    def legend(self, i: int, label: str, colour: str, dash: str = "", box: bool = False) -> None:
        ly = MT + 12 + 14 * i
        if box:
            self.parts.append(
                f'<rect x="{W - MR + 8}" y="{ly - 9}" width="20" height="8" fill="{colour}" '
                'fill-opacity="0.5"/>'
            )
        else:
            self.parts.append(
                f'<line x1="{W - MR + 8}" x2="{W - MR + 28}" y1="{ly - 4}" y2="{ly - 4}" '
                f'stroke="{colour}" stroke-width="2"{dash}/>'
            )
        self.parts.append(f'<text x="{W - MR + 32}" y="{ly}">{html.escape(label)}</text>')

    def done(self) -> str:
        return "\n".join([*self.parts, "</svg>"])


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
    finite = [y[np.isfinite(y)] for _, y in series]
    finite = [y for y in finite if y.size]
    if t.size == 0 or not finite:
        return f"<p><em>{html.escape(title)}: no data</em></p>"
    y0 = min(float(y.min()) for y in finite)
    y1 = max(float(y.max()) for y in finite)
    pad = 0.05 * (y1 - y0 or 1.0)
    x0, x1 = float(t.min()), float(t.max())
    if x1 <= x0:
        x1 = x0 + 1.0
    g = _Svg(title, max(H, MT + MB + 14 * len(series) + 10))  # room for every legend entry
    g.axes(x0, x1, y0 - pad, y1 + pad, xlabel, ylabel)
    for e in events or []:
        x = float(g.x(e["t_s"]))
        if ML <= x <= W - MR:
            c = EVENT_COLOURS.get(e["kind"], "#999")
            g.parts.append(
                f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{MT}" y2="{g.h - MB}" stroke="{c}" '
                f'stroke-dasharray="2,3"><title>{html.escape(e["kind"])}</title></line>'
            )
    for i, (label, y) in enumerate(series):
        tt, yy = _decimate(t, y)
        ok = np.isfinite(yy)
        pts = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(g.x(tt[ok]), g.y(yy[ok]), strict=True))
        c = PALETTE[i % len(PALETTE)]
        dash = ' stroke-dasharray="5,3"' if dashed and label in dashed else ""
        g.parts.append(
            f'<polyline fill="none" stroke="{c}" stroke-width="1.2"{dash} points="{pts}"/>'
        )
        g.legend(i, label, c, dash)
    return g.done()


def svg_histogram(title: str, values: dict[str, np.ndarray], *, xlabel: str, bins: int = 60) -> str:
    """Overlaid histograms (one per series) with p50/p99 in the legend; the x range ends at
    the largest 99.9th percentile so that one outlier does not squash the rest (max is in
    the legend)."""
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
    g = _Svg(title, max(H, MT + MB + 14 * len(vals) + 10))
    g.axes(lo, hi, 0, cmax, xlabel, "count")
    bw = (W - ML - MR) / bins
    for i, (k, c) in enumerate(counts.items()):
        col = PALETTE[i % len(PALETTE)]
        for j, n in enumerate(c):
            if n:
                top = float(g.y(n))
                g.parts.append(
                    f'<rect x="{ML + j * bw:.1f}" y="{top:.1f}" width="{bw:.1f}" '
                    f'height="{g.h - MB - top:.1f}" fill="{col}" fill-opacity="0.5"/>'
                )
        g.legend(i, k, col, box=True)
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{np.median(v):.3g}</td>"
        f"<td>{np.percentile(v, 99):.3g}</td><td>{v.max():.3g}</td><td>{v.size}</td></tr>"
        for k, v in vals.items()
    )
    return (
        g.done()
        + f"<table><tr><th>{html.escape(xlabel)}</th><th>p50</th><th>p99</th><th>max</th>"
        + f"<th>n</th></tr>{rows}</table>"
    )


def svg_timeline(events: list[dict[str, Any]], t_end: float) -> str:
    if not events:
        return "<p><em>no events</em></p>"
    kinds = sorted({e["kind"] for e in events})
    h = MT + MB + 18 * len(kinds)
    x1 = max(t_end, max(e["t_s"] for e in events), 1e-3)
    g = _Svg("Events", h)
    g.x0, g.x1 = 0.0, x1
    for i, k in enumerate(kinds):
        y = MT + 10 + 18 * i
        g.parts.append(f'<line x1="{ML}" x2="{W - MR}" y1="{y}" y2="{y}" stroke="#eee"/>')
        g.parts.append(f'<text x="{W - MR + 8}" y="{y + 4}">{html.escape(k)}</text>')
        c = EVENT_COLOURS.get(k, PALETTE[i % len(PALETTE)])
        for e in (e for e in events if e["kind"] == k):
            x = float(g.x(max(0.0, e["t_s"])))
            tip = html.escape(f"{e['t_s']:.3f} s {k} {json.dumps(e['detail'])}")
            g.parts.append(
                f'<circle cx="{x:.1f}" cy="{y}" r="4" fill="{c}"><title>{tip}</title></circle>'
            )
    for v in nice_ticks(0, x1, 8):
        g.parts.append(
            f'<text x="{float(g.x(v)):.1f}" y="{h - MB + 16}" text-anchor="middle">{v:g}</text>'
        )
    g.parts.append(
        f'<text x="{(ML + W - MR) / 2}" y="{h - 2}" text-anchor="middle">time in session (s)</text>'
    )
    return g.done()


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
    est, cmd, tel = data.get("torque_estimated"), data.get("torque_command"), data.get("telemetry")
    applied = None
    if tel is not None:  # what the firmware reports it applied
        idx = [i for i, c in enumerate(tel[2]) if c.startswith("applied_")]
        if idx:
            applied = (tel[0], tel[1][:, idx], [tel[2][i][len("applied_") :] for i in idx])
    if est is not None or cmd is not None:
        cols = (est or cmd)[2]  # type: ignore[index]
        for j, name in enumerate(cols):
            series: list[tuple[str, np.ndarray]] = []
            t = None
            for label, s in (("estimated", est), ("commanded", cmd), ("applied", applied)):
                if s is None or j >= s[1].shape[1] or not s[0].size:
                    continue
                if t is None:
                    t = s[0]
                    series.append((label, s[1][:, j]))
                else:  # the other streams on the first one's time base
                    series.append((label, np.interp(t, s[0], s[1][:, j])))
            if t is not None:
                sections.append(
                    svg_lines(
                        f"Torque, {name}", t, series, ylabel="N m", dashed={"commanded"},
                        events=events,
                    )
                )  # fmt: skip
    if tel is not None:
        t, d, cols = tel
        ang = [(c[len("angle_") :], d[:, i]) for i, c in enumerate(cols) if c.startswith("angle_")]
        if ang:
            sections.append(svg_lines("Joint angles", t, ang, ylabel="rad", events=events))
        if "safety_state" in cols:
            k = cols.index("safety_state")
            sections.append(
                svg_lines(f"Safety state ({STATE_LABELS})", t, [("state", d[:, k])], events=events)
            )
    skip = {"torque_estimated", "torque_command", "telemetry", "loop_timing", "emg_raw"}
    for s in ["synergy", *[n for n in names if n not in skip and n != "synergy"]]:
        if s not in data or data[s][1].shape[1] > 32:
            continue
        t, d, cols = data[s]
        title = "Synergy activations" if s == "synergy" else s.replace("_", " ").capitalize()
        sections.append(
            svg_lines(title, t, [(c, d[:, i]) for i, c in enumerate(cols)], events=events)
        )
    if "loop_timing" in data:
        t, d, cols = data["loop_timing"]
        sections.append(
            svg_histogram(
                "Control loop timing", {c: d[:, i] * 1e3 for i, c in enumerate(cols)},
                xlabel="milliseconds",
            )
        )  # fmt: skip
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
