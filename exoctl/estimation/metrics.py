"""Accuracy figures, computed in one place: R^2, RMSE and NRMSE per joint (numpy only).

Every tool that reports how well a torque estimate fits a measured or simulated torque (``exoctl
train``/``evaluate``, the real-data protocol, the HIL runner's summary, the benchmarks) takes
its numbers from here, so an R^2 means the same everywhere: 1 - SS_res / SS_tot about the mean
of the scored truth itself (not of the training data), NaN when the truth is constant.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["joint_metrics", "r2", "rmse", "summarise"]


def r2(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    """Coefficient of determination per column of (n, j) arrays (a 1-D pair gives a scalar)."""
    y = np.asarray(y, dtype=np.float64)
    yhat = np.asarray(yhat, dtype=np.float64)
    ss_res = np.sum((y - yhat) ** 2, axis=0)
    ss_tot = np.sum((y - y.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / np.where(ss_tot > 0, ss_tot, 1.0), np.nan)


def rmse(y: np.ndarray, yhat: np.ndarray) -> np.ndarray:
    y = np.asarray(y, dtype=np.float64)
    return np.sqrt(np.mean((y - np.asarray(yhat, dtype=np.float64)) ** 2, axis=0))


def joint_metrics(
    y: np.ndarray, yhat: np.ndarray, joints: Sequence[str], body_mass_kg: float | None = None
) -> dict[str, dict[str, float]]:
    """R^2, RMSE (N m, and N m/kg with the mass), NRMSE (RMSE / range of the truth) per joint."""
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    yhat = np.asarray(yhat, dtype=np.float64).reshape(len(yhat), -1)
    r2s, errs = r2(y, yhat), rmse(y, yhat)
    out = {}
    for j, name in enumerate(joints):
        rng = float(y[:, j].max() - y[:, j].min())
        m = {
            "r2": float(r2s[j]),
            "rmse_nm": float(errs[j]),
            "nrmse": float(errs[j]) / rng if rng > 0 else float("nan"),
        }
        if body_mass_kg:
            m["rmse_nm_per_kg"] = float(errs[j]) / body_mass_kg
        out[name] = {k: round(v, 5) for k, v in m.items()}
    return out


def summarise(per_joint: dict[str, dict[str, float]]) -> dict[str, float]:
    """Mean R^2 over hips and over knees (the paper reports them per joint type)."""
    out = {}
    for kind in ("hip", "knee"):
        vals = [m["r2"] for j, m in per_joint.items() if j.startswith(kind)]
        if vals:
            out[f"r2_{kind}"] = round(float(np.mean(vals)), 5)
    return out
