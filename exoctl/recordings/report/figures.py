"""The report's charts, drawn with matplotlib and embedded as inline SVG.

matplotlib's object API (``Figure``) is used without pyplot: no global state, no GUI backend,
safe in any thread. Text is drawn as paths so a chart looks the same on every PC. Colours are
the Okabe-Ito palette (distinguishable with the common colour-vision deficiencies), and every
series differs by line style or width as well as colour, so a print in grey still reads.

Nothing here draws 60 000 points a line: session-long views show one value per stride or per
second, gait views one mean +- sd curve over 101 points of the cycle.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from exoctl.recordings.report import analysis as A

BLUE, ORANGE, GREEN, SKY, VERMILLION, YELLOW, PURPLE = (
    "#0072B2", "#E69F00", "#009E73", "#56B4E9", "#D55E00", "#F0E442", "#CC79A7",
)  # fmt: skip
STATE_COLOURS = {
    "NORMAL": GREEN,
    "DEGRADED": YELLOW,
    "SAFE_STOP": ORANGE,
    "FAULT_LATCHED": VERMILLION,
    "ESTOP": "#882255",
}
STATE_WORDS = {
    "NORMAL": "assisting",
    "DEGRADED": "assisting, held down",
    "SAFE_STOP": "stopping (fault)",
    "FAULT_LATCHED": "off: fault",
    "ESTOP": "off: e-stop",
}
SERIES = {  # label, colour, line style, width, alpha, z-order
    "estimated": ("patient's own torque (estimated from EMG)", BLUE, "-", 1.8, 1.0, 3),
    "applied": ("applied by the exoskeleton", GREEN, "-", 4.5, 0.55, 2),
    "commanded": ("commanded", "#333333", (0, (4, 2)), 1.5, 1.0, 4),
}
JOINT_STYLE = {"hip": ("o", BLUE), "knee": ("s", PURPLE)}  # left filled/solid, right hollow/dashed
RC: Any = {  # matplotlib rcParams (typed there as a dict of literal keys)
    "font.size": 10.5,
    "axes.titlesize": 11.5,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e4e4e4",
    "legend.frameon": False,
    "svg.fonttype": "path",
    "svg.hashsalt": "exoctl-report",  # stable ids: the same recording gives the same file
}


def joint_label(name: str) -> str:
    base, _, side = name.rpartition("_")
    return f"{base.capitalize()} {'left' if side == 'l' else 'right'}" if side in "lr" else name


def mmss(v: float, _pos: Any = None) -> str:
    v = max(0.0, float(v))
    return f"{int(v // 60)}:{int(v % 60):02d}"


def to_svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _figure(w: float, h: float) -> Figure:
    import matplotlib

    with matplotlib.rc_context(RC):
        return Figure(figsize=(w, h), layout="constrained")


def _legend(ax: Any, **kw: Any) -> None:
    """A legend when something is labelled (an empty one warns and draws a box)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def _time_axis(ax: Any, t_end: float) -> None:
    ax.set_xlim(0, max(t_end, 1.0))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=10, steps=[1, 2, 3, 5, 6, 10]))
    ax.xaxis.set_major_formatter(FuncFormatter(mmss))


def _joint_style(name: str) -> tuple[str, str, bool]:
    """Marker, colour and whether it is the left side."""
    base, _, side = name.rpartition("_")
    marker, colour = JOINT_STYLE.get(base, ("^", SKY))
    return marker, colour, side != "r"


def _incident_labels(ax: Any, incs: list[A.Incident], t_end: float) -> None:
    """Incident numbers above the state band; numbers closer than 2 % of the session width
    share one label ("4-6")."""
    groups: list[list[int]] = []
    for k, inc in enumerate(incs, 1):
        if groups and inc.t_s - incs[groups[-1][-1] - 1].t_s < 0.02 * max(t_end, 1.0):
            groups[-1].append(k)
        else:
            groups.append([k])
    for g in groups:
        text = str(g[0]) if len(g) == 1 else f"{g[0]}-{g[-1]}"
        ax.annotate(text, (incs[g[0] - 1].t_s, 1.0), xytext=(0, 3), textcoords="offset points",
                    ha="center", va="bottom", fontsize=9, fontweight="bold",
                    annotation_clip=False)  # fmt: skip


def overview(s: A.Session, summ: A.Summary, incs: list[A.Incident], assisted: np.ndarray) -> str:
    """Safety state, assistance level and the applied torque per stride, over the session."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(10, 5.4)
        ax0, ax1, ax2 = fig.subplots(3, 1, sharex=True, height_ratios=[0.7, 2, 2.4])
        segs = A.state_segments(s)
        for state, colour in STATE_COLOURS.items():
            bars = [(a, b - a) for a, b, st in segs if st == state]
            if bars:
                ax0.broken_barh(bars, (0, 1), color=colour, label=STATE_WORDS[state])
        _incident_labels(ax0, incs, s.t_end)
        ax0.set_yticks([])
        ax0.grid(False)
        ax0.set_title("Assistance over the session (numbers: faults, see the table below)", pad=16)
        _legend(ax0, loc="upper left", bbox_to_anchor=(1.0, 1.25), fontsize=9)

        times, rows = A.assist_levels(s)
        xs = np.append(times, s.t_end)
        for label, idx in _level_lines(s.joints, rows):
            base = s.joints[idx[0]].rpartition("_")[0]
            hip = base == "hip" or label == "all joints"
            ax1.step(xs, np.append(rows[:, idx[0]], rows[-1, idx[0]]) * 100, where="post",
                     color="#333333" if label == "all joints" else _joint_style(s.joints[idx[0]])[1],
                     lw=4.0 if hip else 1.8, alpha=0.6 if hip else 1.0, zorder=2 if hip else 3,
                     ls="-" if hip else (0, (4, 2)), label=label)  # fmt: skip
        for a, b, st in segs:
            if st in A.OFF_STATES:
                ax1.axvspan(a, b, color=STATE_COLOURS[st], alpha=0.25, lw=0)
        ax1.set_ylabel("level set (%)")
        ax1.set_ylim(0, max(10.0, float(rows.max()) * 100 * 1.25))
        _legend(ax1, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9)

        for j, name in enumerate(s.joints):
            cyc = A.cycles_within(summ.cycles.get(name.rpartition("_")[2], np.zeros((0, 2))),
                                  s.t, assisted)  # fmt: skip
            if not cyc.size:
                continue
            peaks = A.per_cycle_peak(s.t, s.applied[:, j], cyc)
            marker, colour, left = _joint_style(name)
            ax2.plot(cyc[:, 0], peaks, marker, ms=3.8, color=colour, mfc=None if left else "white",
                     ls="none", label=joint_label(name))  # fmt: skip
        ax2.set_ylabel("peak applied\ntorque (N m)")
        ax2.set_xlabel("time into the session (min:s); one point per assisted stride")
        ax2.set_ylim(bottom=0)
        if not ax2.get_legend_handles_labels()[0]:
            ax2.text(0.5, 0.5, "no assisted strides found (joint angles are needed)",
                     transform=ax2.transAxes, ha="center", color="#555555")  # fmt: skip
        _legend(ax2, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=9, markerscale=1.6)
        _time_axis(ax2, s.t_end)
        return to_svg(fig)


def _level_lines(joints: list[str], rows: np.ndarray) -> list[tuple[str, list[int]]]:
    """One line per group of joints whose level was always the same: all joints, or per
    joint type (both sides), or per joint."""
    if np.allclose(rows, rows[:, :1]):
        return [("all joints", list(range(len(joints))))]
    out: list[tuple[str, list[int]]] = []
    for base, idx in _groups(joints).items():
        if np.allclose(rows[:, idx], rows[:, idx[:1]]):
            out.append((f"{base}s (both sides)", idx))
        else:
            out += [(joint_label(joints[j]), [j]) for j in idx]
    return out


def _groups(joints: list[str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for j, name in enumerate(joints):
        out.setdefault(name.rpartition("_")[0] or name, []).append(j)
    return out


def gait(s: A.Session, summ: A.Summary, assisted: np.ndarray) -> tuple[str, dict[str, int]]:
    """Per joint, torque over the gait cycle, mean +- sd over the assisted strides."""
    import matplotlib

    lg = A.legs(s.joints)
    bases = sorted({b for sides in lg.values() for b in sides}, key=["hip", "knee"].index
                   if all(b in ("hip", "knee") for sides in lg.values() for b in sides) else str)  # fmt: skip
    counts: dict[str, int] = {}
    with matplotlib.rc_context(RC):
        fig = _figure(10, 3.2 * max(1, len(bases)))
        axes = np.atleast_2d(fig.subplots(max(1, len(bases)), 2, sharex=True, squeeze=False))
        pct = np.linspace(0, 100, A.CYCLE_POINTS)
        for r, base in enumerate(bases):
            for c, side in enumerate(("l", "r")):
                ax = axes[r, c]
                j = lg.get(side, {}).get(base)
                cyc = summ.cycles.get(side, np.zeros((0, 2)))
                cyc = A.cycles_within(cyc, s.t, assisted)
                counts[side] = int(cyc.shape[0])
                ax.set_title(f"{joint_label(f'{base}_{side}')}  (n = {cyc.shape[0]} strides)")
                if j is None or not cyc.size:
                    ax.text(0.5, 0.5, "no assisted strides", transform=ax.transAxes, ha="center")
                    continue
                for key in ("applied", "estimated", "commanded"):
                    label, colour, ls, lw, alpha, z = SERIES[key]
                    m = A.cycle_matrix(s.t, getattr(s, key)[:, j], cyc)
                    mean, sd = np.nanmean(m, axis=0), np.nanstd(m, axis=0)
                    ax.fill_between(pct, mean - sd, mean + sd, color=colour, alpha=0.15, lw=0,
                                    zorder=1)  # fmt: skip
                    ax.plot(pct, mean, color=colour, ls=ls, lw=lw, alpha=alpha, zorder=z,
                            label=label)  # fmt: skip
                ax.axhline(0, color="#999999", lw=0.8, zorder=0)
                ax.set_xlim(0, 100)
                if c == 0:
                    ax.set_ylabel("torque (N m)\n+ flexion, - extension")
                if r == len(bases) - 1:
                    ax.set_xlabel("gait cycle (%), from peak hip flexion")
        handles, labels = axes[0, 0].get_legend_handles_labels()
        if handles:
            order = [labels.index(SERIES[k][0]) for k in ("estimated", "commanded", "applied")]
            fig.legend([handles[i] for i in order], [labels[i] for i in order], loc="outside upper center",
                       ncols=3, fontsize=10)  # fmt: skip
        return to_svg(fig), counts


def trend(rows: list[dict[str, Any]], current: str) -> str:
    """The patient's sessions side by side: time assisted, cadence, torque, symmetry."""
    import matplotlib

    with matplotlib.rc_context(RC):
        fig = _figure(10, 5.6)
        (a, b), (c, d) = fig.subplots(2, 2, sharex=True)
        x = np.arange(len(rows))
        labels = [r["label"] for r in rows]
        cur = [i for i, r in enumerate(rows) if r["id"] == current]
        a.bar(x, [r["duration_s"] / 60 for r in rows], color="#dddddd")
        a.bar(x, [r["assisted_s"] / 60 for r in rows], color=GREEN, width=0.5)
        a.set_title("Time assisted (min), of the session's length (grey)")
        cad = [r["cadence_spm"] for r in rows]
        b.plot(x, cad, "o-", color=BLUE, lw=2)
        b.set_title("Cadence (steps/min)")
        b.set_ylim(0, 1.25 * max([v for v in cad if np.isfinite(v)] or [100]))
        for name in rows[-1]["peak_applied"]:
            marker, colour, left = _joint_style(name)
            c.plot(x, [r["peak_applied"].get(name, np.nan) for r in rows], marker=marker,
                   ls="-" if left else "--", mfc=None if left else "white", color=colour, lw=1.8,
                   label=joint_label(name))  # fmt: skip
        c.set_title("Peak applied torque (N m)")
        _legend(c, fontsize=8.5, ncols=4, loc="upper left")
        for k, (name, style) in enumerate((("stride time", "o-"), ("hip torque (patient)", "s--"),
                                           ("knee torque (patient)", "^:"))):  # fmt: skip
            d.plot(x, [r["symmetry"].get(name, np.nan) for r in rows], style, lw=1.8,
                   color=(BLUE, ORANGE, PURPLE)[k], label=name)  # fmt: skip
        d.set_title("Left/right difference (%, 0 = symmetric)")
        _legend(d, fontsize=8.5, ncols=3, loc="upper left")
        for ax in (a, c, d):
            ax.set_ylim(0, ax.get_ylim()[1] * 1.35)  # room for the legend above the data
        for ax in (a, b, c, d):
            ax.set_xticks(x, labels, rotation=0, fontsize=8.5)
            for i in cur:
                ax.axvspan(i - 0.45, i + 0.45, color="#fff3c4", zorder=0)
        return to_svg(fig)


def activations(s: A.Session) -> str | None:
    """Muscle activations as a heat map and synergies, each a mean over 5 s (several strides:
    a bin near the stride length would alias the gait cycle into stripes)."""
    import matplotlib

    act, syn = s.extra.get("activation"), s.extra.get("synergy")
    if act is None or not act.t.size:
        return None
    with matplotlib.rc_context(RC):
        fig = _figure(10, 5.2)
        ax0, ax1 = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1.4])
        t0 = s.info["start_mono"]
        m, names = act.matrix()
        edges = np.arange(0.0, max(s.t_end, 5.0) + 1e-9, 5.0)  # whole bins only
        binned = _binned(act.t - t0, m, edges)
        im = ax0.imshow(binned.T, aspect="auto", origin="lower", cmap="viridis", vmin=0,
                        extent=(edges[0], edges[-1], -0.5, len(names) - 0.5),
                        interpolation="nearest")  # fmt: skip
        ax0.set_yticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        ax0.grid(False)
        ax0.set_title("Muscle activation (mean over 5 s, 0-1)")
        fig.colorbar(im, ax=ax0, fraction=0.03)
        if syn is not None and syn.t.size:
            sm, snames = syn.matrix()
            sb = _binned(syn.t - t0, sm, edges)
            mids = (edges[:-1] + edges[1:]) / 2
            for k in range(sb.shape[1]):
                ax1.plot(mids, sb[:, k], lw=1.6, label=snames[k].replace("_", " "),
                         color=(BLUE, ORANGE, GREEN, VERMILLION, PURPLE, SKY)[k % 6])  # fmt: skip
            ax1.set_title("Synergy activations (mean over 5 s)")
            _legend(ax1, fontsize=8.5, ncols=min(6, sb.shape[1]), loc="upper left")
        ax1.set_xlabel("time into the session (min:s)")
        _time_axis(ax1, s.t_end)
        return to_svg(fig)


def _binned(t: np.ndarray, m: np.ndarray, edges: np.ndarray) -> np.ndarray:
    idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, edges.size - 2)
    sums = np.zeros((edges.size - 1, m.shape[1]))
    np.add.at(sums, idx, np.nan_to_num(m))
    n = np.bincount(idx, minlength=edges.size - 1)[:, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, sums / np.maximum(n, 1), np.nan)


def loop_timing(s: A.Session) -> tuple[str | None, list[dict[str, Any]]]:
    """Histogram of the control loop's timing figures (ms), and their percentiles."""
    import matplotlib

    lt = s.extra.get("loop_timing")
    if lt is None or not lt.t.size:
        return None, []
    stats = []
    with matplotlib.rc_context(RC):
        fig = _figure(10, 3.0)
        ax = fig.subplots()
        for k, col in enumerate(lt.columns):
            v = np.asarray(col.values, dtype=float) * 1e3
            v = v[np.isfinite(v)]
            if not v.size:
                continue
            p50, p99, mx = np.percentile(v, 50), np.percentile(v, 99), v.max()
            stats.append({"figure": col.name, "p50": p50, "p99": p99, "max": mx, "n": v.size})
            hi = max(np.percentile(v, 99.9), 1e-3)
            ax.hist(np.clip(v, None, hi), bins=80, range=(min(0.0, v.min()), hi), histtype="step",
                    lw=1.8, color=(BLUE, ORANGE, GREEN, VERMILLION, PURPLE)[k % 5],
                    label=f"{col.name.replace('_', ' ')} (p50 {p50:.3g}, p99 {p99:.3g} ms)")  # fmt: skip
        ax.set_yscale("log")
        ax.set_xlabel("milliseconds (x axis ends at the 99.9th percentile)")
        ax.set_ylabel("ticks")
        ax.set_title("Control loop timing")
        _legend(ax, fontsize=9)
        return to_svg(fig), stats
