"""The summary of a replay: the live estimate against the recording's measured moments.

Each tick is scored at its own time on the recording's time axis (the time its command was
written, mapped through the stream's clock), against the measured moment at that instant:
no delay compensation. The delay the live path adds is reported beside the scores, measured
by cross-correlation, never used to align them. For a dataset trial the offline evaluation
(``exoctl evaluate``'s features and onnxruntime over the whole trial) is scored on the same
ticks, so the two can be compared figure by figure.

What the patient would have received: the commanded torque's peak and mean magnitude per
joint, the time spent at the joint's torque limit, and which joints the model does not drive.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from exoctl.estimation import metrics
from exoctl.hil.replay import Recording, ReplaySpec

__all__ = ["MAX_LAG_S", "cross_correlation_delay", "offline_estimate", "score_replay"]

MAX_LAG_S = 0.3  # delays searched: 0 .. this (the estimate lags what it estimates)


def cross_correlation_delay(
    t: np.ndarray, estimate: np.ndarray, t_ref: np.ndarray, ref: np.ndarray, step_s: float
) -> float | None:
    """The lag d (s, 0..MAX_LAG_S) maximising the correlation of ``estimate(t)`` with
    ``ref(t - d)``; None when either is constant or too short."""
    if t.size < 10 or np.std(estimate) == 0:
        return None
    lags = np.arange(0.0, MAX_LAG_S + step_s / 2, step_s)
    best, best_c = None, -np.inf
    for d in lags:
        r = np.interp(t - d, t_ref, ref)
        if np.std(r) == 0:
            continue
        c = float(np.corrcoef(estimate, r)[0, 1])
        if c > best_c:
            best, best_c = float(d), c
    return best


def offline_estimate(cfg, spec: ReplaySpec, model: str) -> tuple[np.ndarray, Any, Any]:
    """``exoctl evaluate``'s estimate over the whole trial: (trial time of each tick, the
    estimate (ticks, model joints), the tick set with its measured moments)."""
    from pathlib import Path

    from exoctl.data.dataset import load_dataset
    from exoctl.estimation.torque_model import TorqueModel
    from exoctl.offline.predict import predict
    from exoctl.offline.tick_sets import dataset_tick_sets
    from exoctl.signal.calibration import load_calibration

    assert spec.data is not None and spec.trial is not None  # a dataset trial's replay
    info = TorqueModel(Path(model)).info
    cal = load_calibration(cfg.estimator.calibration)  # the one the controller ran with
    ds = load_dataset(spec.data)
    kin = any(f.startswith(("angle:", "velocity:")) for f in info.features)
    rate = info.tick_rate_hz  # None for a model without a past
    data = dataset_tick_sets(
        cfg, ds, [spec.trial], cal, kinematics=kin, need_torque=True, tick_rate_hz=rate
    )
    ts = data.sets[0]
    trial = ds.load_trial(str(spec.trial))
    t = float(trial.t[0]) + np.arange(ts.n) / ts.tick_rate_hz
    # held between runs as live (its phase counted from the trial's start, not the replay's)
    return t, predict(model, ts, every=cfg.estimator.model_every_ticks), ts


def score_replay(
    cfg,
    rec: Recording,
    t0: float,
    log: dict[str, np.ndarray],
    t_session: float,
    warmup_s: float,
    model_joints: tuple[str, ...],
    offline: tuple[np.ndarray, np.ndarray, Any] | None,
) -> dict[str, Any]:
    """The ``replay`` section of the summary (see the module docstring).

    ``t0``: the stream-clock time of the recording's first streamed sample; ``log``: the
    controller's tick log (``t`` its command times, ``estimate``, ``command``)."""
    joints = tuple(cfg.joint_names)
    rate = float(cfg.tick_rate_hz)
    t_tick = np.asarray(log["t"], dtype=np.float64)
    tau = float(rec.t[0]) + (t_tick - t0)  # each tick on the recording's time axis
    est = np.asarray(log["estimate"], dtype=np.float64)
    cmd = np.asarray(log["command"], dtype=np.float64)
    first = max(rec.start_s, float(rec.t[0]) + (t_session + warmup_s - t0))
    last = float(rec.t[-1])
    ok = (tau >= first) & (tau <= last) & np.isfinite(est).all(axis=1)
    out: dict[str, Any] = {
        "recording": rec.describe(),
        "scored_from_s": round(first, 4),
        "scored_to_s": round(last, 4),
        "scored_ticks": int(ok.sum()),
        "assisted_joints": [j for j in joints if j in model_joints],
        "unassisted_joints": [j for j in joints if j not in model_joints],
    }
    live: dict[str, dict[str, float | None]] = {}
    delay: dict[str, float | None] = {}
    off: dict[str, dict[str, float | None]] = {}
    path_delay: dict[str, float | None] = {}
    for name in model_joints:
        if rec.torque is None or name not in rec.joints or not ok.any():
            live[name] = {"r2": None, "rmse_nm": None}
            delay[name] = None
            continue
        jd, jr = joints.index(name), rec.joints.index(name)
        y = np.interp(tau[ok], rec.t, rec.torque[:, jr])
        yhat = est[ok, jd]
        live[name] = {
            "r2": round(float(metrics.r2(y, yhat)), 4),
            "rmse_nm": round(float(metrics.rmse(y, yhat)), 3),
        }
        d = cross_correlation_delay(tau[ok], yhat, rec.t, rec.torque[:, jr], 1.0 / rate)
        delay[name] = None if d is None else round(1000.0 * d, 1)
        if offline is not None:
            t_off, y_off, ts = offline
            idx = np.unique(np.clip(np.rint((tau[ok] - t_off[0]) * ts.tick_rate_hz), 0,
                                    len(t_off) - 1).astype(int))  # fmt: skip
            jm = model_joints.index(name)
            yo, yt = y_off[idx, jm], ts.torques[idx, jm]
            off[name] = {
                "r2": round(float(metrics.r2(yt, yo)), 4),
                "rmse_nm": round(float(metrics.rmse(yt, yo)), 3),
            }
            d = cross_correlation_delay(tau[ok], yhat, t_off, y_off[:, jm], 1.0 / rate)
            path_delay[name] = None if d is None else round(1000.0 * d, 1)
    out["live"] = live
    out["delay_ms"] = delay
    age = np.asarray(log.get("telemetry_age", np.zeros(0)), dtype=np.float64)
    if age.size == ok.size and ok.any() and np.isfinite(age[ok]).any():
        a = age[ok][np.isfinite(age[ok])] * 1000.0
        # how old the replayed angles were when a tick used them (the live path's own delay)
        out["telemetry_age_ms"] = {
            "p50": round(float(np.percentile(a, 50)), 3),
            "p99": round(float(np.percentile(a, 99)), 3),
            "max": round(float(a.max()), 3),
        }
    paired = np.asarray(log.get("paired", np.zeros(0)), dtype=np.float64)
    if paired.size == ok.size and ok.any() and np.isfinite(paired[ok]).any():
        # how far before its command each estimate's instant was: EMG and kinematics are
        # paired at the newest instant both cover (exoctl.estimation.pairing)
        lag = (t_tick - paired)[ok]
        lag = lag[np.isfinite(lag)] * 1000.0
        out["estimate_lag_ms"] = {
            "p50": round(float(np.percentile(lag, 50)), 3),
            "p99": round(float(np.percentile(lag, 99)), 3),
            "max": round(float(lag.max()), 3),
        }
    if offline is not None:
        out["offline"] = off
        out["live_path_delay_ms"] = path_delay
    # what the patient would have received, over the whole replay
    limits = np.array([j.torque_limit_nm for j in cfg.device.joints])
    at_limit = np.abs(cmd) >= limits - 0.01 if cmd.size else np.zeros((0, len(joints)), bool)
    out["command"] = {
        name: {
            "peak_nm": round(float(np.abs(cmd[:, i]).max()), 3) if cmd.size else None,
            "mean_abs_nm": round(float(np.abs(cmd[:, i]).mean()), 3) if cmd.size else None,
            "at_limit_s": round(float(at_limit[:, i].sum()) / rate, 3),
        }
        for i, name in enumerate(joints)
    }
    return out
