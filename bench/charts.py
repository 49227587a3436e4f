"""The benchmark report's two charts (horizontal bars, lines; log scale), drawn with matplotlib.

The same library as the session report and ``exoctl evaluate --plot`` (the optional ``report``
extra, which ``make bench`` installs). Each function returns the SVG text; without matplotlib
it returns a small SVG that says so, so the Markdown report keeps its links and its tables.
"""

from __future__ import annotations

import io
import math
from html import escape
from typing import Any

COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9")  # Okabe-Ito
RC: Any = {  # matplotlib rcParams (typed there as a dict of literal keys)
    "font.size": 10.5,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "exoctl-bench",
}


def _fmt(v: float) -> str:
    return f"{v:,.0f}" if v >= 100 else f"{v:.3g}"


def _svg(fig) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _unavailable(title: str, why: str) -> str:
    return (
        '<svg xmlns="http://www.w3.org/2000/svg" width="520" height="60" viewBox="0 0 520 60">\n'
        '<rect width="520" height="60" fill="white"/>\n'
        f'<text x="10" y="22" font-family="sans-serif" font-size="14">{escape(title)}</text>\n'
        f'<text x="10" y="46" font-family="sans-serif" font-size="12">{escape(why)}</text>\n'
        "</svg>\n"
    )


def _matplotlib():
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        return None
    return matplotlib, Figure


def bars(title: str, items: list[tuple[str, float]], unit: str) -> str:
    """Horizontal bars on a log axis, the value printed at each bar; ``items`` (label, > 0)."""
    items = [(k, v) for k, v in items if v and v > 0 and math.isfinite(v)]
    mpl = _matplotlib()
    if not items:
        return _unavailable(title, "no data")
    if mpl is None:
        return _unavailable(title, "not drawn: matplotlib is not installed (exoctl[report])")
    matplotlib, Figure = mpl
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8, 0.45 * len(items) + 1.2), layout="constrained")
        ax = fig.subplots()
        labels = [k for k, _ in items][::-1]
        values = [v for _, v in items][::-1]
        colours = [COLORS[i % len(COLORS)] for i in range(len(items))][::-1]
        ax.barh(labels, values, color=colours, height=0.65)
        ax.set_xscale("log")
        for y, v in enumerate(values):
            ax.annotate(f" {_fmt(v)} {unit}", (v, y), va="center", fontsize=9.5)
        ax.set_xlim(min(values) / 2, max(values) * 8)  # room for the printed values
        ax.set_xlabel(f"{unit} (log scale)")
        ax.grid(axis="x", color="#e4e4e4")
        ax.set_axisbelow(True)
        ax.set_title(title, fontweight="bold")
        return _svg(fig)


def lines(
    title: str, xs: list[float], series: dict[str, list[float]], xlabel: str, unit: str
) -> str:
    """Lines over categorical x positions (labelled with ``xs``), y on a log axis."""
    ok = lambda v: v is not None and v > 0 and math.isfinite(v)  # noqa: E731
    if not xs or not any(ok(v) for ys in series.values() for v in ys):
        return _unavailable(title, "no data")
    mpl = _matplotlib()
    if mpl is None:
        return _unavailable(title, "not drawn: matplotlib is not installed (exoctl[report])")
    matplotlib, Figure = mpl
    with matplotlib.rc_context(RC):
        fig = Figure(figsize=(8, 4), layout="constrained")
        ax = fig.subplots()
        pos = list(range(len(xs)))
        for n, (name, ys) in enumerate(series.items()):
            pts = [(p, v) for p, v in zip(pos, ys, strict=False) if ok(v)]
            if pts:
                ax.plot(*zip(*pts, strict=True), "o-", lw=2, color=COLORS[n % len(COLORS)],
                        label=name)  # fmt: skip
        ax.set_yscale("log")
        ax.set_xticks(pos, [f"{x:g}" for x in xs])
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{unit} (log scale)")
        ax.grid(color="#e4e4e4")
        ax.legend(frameon=False)
        ax.set_title(title, fontweight="bold")
        return _svg(fig)
