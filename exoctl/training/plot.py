"""A PNG of estimated against true torque (``exoctl evaluate --plot``), drawn with matplotlib.

One panel per joint over the first ``seconds`` of the scored ticks: the truth in black on top of
the estimate in vermillion (Okabe-Ito), a zero line, the joint's R^2 in the panel title. matplotlib
is the field's plotting library and comes with the optional ``report`` extra (it also draws
the session reports and the benchmark charts); the object API is used, without pyplot.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["plot_torques"]

TRUTH, ESTIMATE = "#000000", "#D55E00"


def plot_torques(
    path: Path | str,
    t: np.ndarray,
    y: np.ndarray,
    yhat: np.ndarray,
    joints: Sequence[str],
    r2: dict[str, float] | None = None,
    *,
    seconds: float = 10.0,
    width_in: float = 10.0,
    panel_in: float = 1.9,
) -> Path:
    """Estimated against true torque, one panel per joint, the first ``seconds``; a PNG."""
    try:
        import matplotlib
        from matplotlib.figure import Figure
    except ImportError:
        raise ValueError(
            "--plot draws with matplotlib, which is not installed: pip install 'exoctl[report]'"
        ) from None
    n = int(np.searchsorted(t, t[0] + seconds)) if len(t) else 0
    n = max(n, min(len(t), 2))
    t, y, yhat = t[:n] - (t[0] if len(t) else 0.0), y[:n], yhat[:n]
    rc: Any = {"font.size": 10, "axes.spines.top": False, "axes.spines.right": False,
          "axes.grid": True, "grid.color": "#e4e4e4"}  # fmt: skip
    with matplotlib.rc_context(rc):
        fig = Figure(figsize=(width_in, panel_in * len(joints) + 0.6), layout="constrained")
        axes = np.atleast_1d(fig.subplots(len(joints), 1, sharex=True, squeeze=False)[:, 0])
        for j, (ax, name) in enumerate(zip(axes, joints, strict=True)):
            ax.axhline(0.0, color="#999999", lw=0.8)
            ax.plot(t, yhat[:, j], color=ESTIMATE, lw=1.2, label="estimated", zorder=2)
            ax.plot(t, y[:, j], color=TRUTH, lw=1.8, label="true", zorder=3)
            title = name if not r2 or name not in r2 else f"{name}   R² {r2[name]:.3f}"
            ax.set_title(title, loc="left", fontweight="bold", fontsize=10.5)
            ax.set_ylabel("N m")
        axes[0].legend(loc="upper right", ncols=2, framealpha=0.9)
        axes[-1].set_xlabel(f"time (s), first {t[-1] if len(t) else 0:.1f} s of the scored ticks")
        path = Path(path)
        fig.savefig(path, format="png", dpi=110)
    return path
