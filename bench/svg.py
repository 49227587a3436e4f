"""Two tiny SVG chart writers (horizontal bars, lines), log scale, no dependency.

Why by hand: matplotlib is not an exoctl dependency and the only environment that has it is
LibEMG's optional venv; plots must appear even where that venv could not be installed. The
charts here are two kinds, so a hundred lines of SVG are cheaper than a dependency.
"""

from __future__ import annotations

import math
from html import escape

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")
FONT = 'font-family="sans-serif" font-size="12"'


def _ticks(lo: float, hi: float) -> list[float]:
    a, b = math.floor(math.log10(lo)), math.ceil(math.log10(hi))
    return [10.0**e for e in range(a, b + 1)]


def _fmt(v: float) -> str:
    return f"{v:g}" if v >= 1 else f"{v:.2g}"


def bars(title: str, items: list[tuple[str, float]], unit: str) -> str:
    """Horizontal bars on a log axis; ``items`` are (label, value > 0)."""
    items = [(k, v) for k, v in items if v and v > 0 and math.isfinite(v)]
    w, left, right, row = 760, 300, 90, 26
    h = 60 + row * len(items) + 30
    if not items:
        return _empty(title)
    ticks = _ticks(min(v for _, v in items), max(v for _, v in items))
    lo, hi = math.log10(ticks[0]), math.log10(ticks[-1]) or 1.0
    span = (hi - lo) or 1.0
    x = lambda v: left + (w - left - right) * (math.log10(v) - lo) / span  # noqa: E731
    out = [_head(w, h, title)]
    for t in ticks:
        out.append(f'<line x1="{x(t):.1f}" y1="40" x2="{x(t):.1f}" y2="{h - 30}" stroke="#ddd"/>')
        out.append(
            f'<text x="{x(t):.1f}" y="{h - 12}" text-anchor="middle" {FONT}>{_fmt(t)} {unit}</text>'
        )
    for i, (label, v) in enumerate(items):
        y = 48 + i * row
        out.append(
            f'<text x="{left - 6}" y="{y + 14}" text-anchor="end" {FONT}>{escape(label)}</text>'
        )
        out.append(
            f'<rect x="{left}" y="{y}" width="{max(x(v) - left, 1):.1f}" height="{row - 8}" '
            f'fill="{COLORS[i % len(COLORS)]}"/>'
        )
        out.append(f'<text x="{x(v) + 4:.1f}" y="{y + 14}" {FONT}>{v:.3g}</text>')
    out.append("</svg>\n")
    return "\n".join(out)


def lines(
    title: str, xs: list[float], series: dict[str, list[float]], xlabel: str, unit: str
) -> str:
    """Line chart, x linear (categorical positions), y log."""
    vals = [v for ys in series.values() for v in ys if v and v > 0 and math.isfinite(v)]
    if not vals or not xs:
        return _empty(title)
    w, h, left, right, top, bottom = 760, 380, 80, 160, 40, 50
    ticks = _ticks(min(vals), max(vals))
    lo, hi = math.log10(ticks[0]), math.log10(ticks[-1])
    span = (hi - lo) or 1.0
    px = lambda i: left + (w - left - right) * (i / max(len(xs) - 1, 1))  # noqa: E731
    py = lambda v: h - bottom - (h - top - bottom) * (math.log10(v) - lo) / span  # noqa: E731
    out = [_head(w, h, title)]
    for t in ticks:
        out.append(
            f'<line x1="{left}" y1="{py(t):.1f}" x2="{w - right}" y2="{py(t):.1f}" stroke="#ddd"/>'
        )
        out.append(
            f'<text x="{left - 6}" y="{py(t) + 4:.1f}" text-anchor="end" {FONT}>{_fmt(t)} {unit}</text>'
        )
    for i, xv in enumerate(xs):
        out.append(
            f'<text x="{px(i):.1f}" y="{h - bottom + 18}" text-anchor="middle" {FONT}>{xv:g}</text>'
        )
    out.append(
        f'<text x="{(left + w - right) / 2:.0f}" y="{h - 10}" text-anchor="middle" {FONT}>{escape(xlabel)}</text>'
    )
    for n, (name, ys) in enumerate(series.items()):
        c = COLORS[n % len(COLORS)]
        pts = [(px(i), py(v)) for i, v in enumerate(ys) if v and v > 0 and math.isfinite(v)]
        if not pts:
            continue
        path = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        out.append(f'<polyline points="{path}" fill="none" stroke="{c}" stroke-width="2"/>')
        out += [f'<circle cx="{a:.1f}" cy="{b:.1f}" r="3" fill="{c}"/>' for a, b in pts]
        out.append(
            f'<text x="{w - right + 10}" y="{top + 16 + 18 * n}" fill="{c}" {FONT}>{escape(name)}</text>'
        )
    out.append("</svg>\n")
    return "\n".join(out)


def _head(w: int, h: int, title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">\n'
        f'<rect width="{w}" height="{h}" fill="white"/>\n'
        f'<text x="{w / 2:.0f}" y="22" text-anchor="middle" font-family="sans-serif" '
        f'font-size="14" font-weight="bold">{escape(title)}</text>'
    )


def _empty(title: str) -> str:
    return _head(400, 60, title) + '\n<text x="10" y="48" ' + FONT + ">no data</text>\n</svg>\n"
