"""Scores, the ridge baseline, and batch inference through onnxruntime (no PyTorch needed).

Every figure the tools report comes from the exported ONNX file run by onnxruntime, the way the
controller runs it, never from the training framework's own forward pass: what is scored is
what ships. ``predict`` feeds the model's input (windows, segment sums) in batches (the graphs
have a free batch axis; the controller binds a batch of one).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from exoctl.estimation.torque_model import (
    METADATA_KEY,
    ModelInfo,
    save_model,
    session_options,
)
from exoctl.training.linear_model import OPSET, fit_ridge

from .features import TickSet

__all__ = [
    "BASELINE_LAGS_MS",
    "RIDGE_LAGS_MS",
    "fit_lagged_ridge",
    "load_info",
    "predict",
    "write_ridge_onnx",
]

RIDGE_LAGS_MS = (0.0, 25.0, 50.0, 100.0, 200.0, 398.0)
"""Lags of the synergy activations the simulator experiment's ridge sees (the window's span)."""
BASELINE_LAGS_MS = (0.0, 25.0, 50.0, 75.0, 100.0, 150.0, 200.0)
"""The lagged-ridge baseline of ``exoctl train --model-type ridge`` and the real-data protocol:
every per-tick feature (EMG features, angles and velocities when used) at these lags."""
RIDGE_LAMBDAS = tuple(10.0**e for e in range(-6, 2))


def load_info(path: Path) -> ModelInfo:
    """The exoctl metadata of an ONNX model file (via onnxruntime, as the controller reads it)."""
    from exoctl.estimation.torque_model import TorqueModel

    return TorqueModel(path).info


def predict(
    path: Path | str, ts: TickSet, ticks: np.ndarray | None = None, every: int = 1
) -> np.ndarray:
    """Torque (len(ticks), J) of an exported model over a tick set, through onnxruntime (its
    input kind's batch form).

    ``every`` > 1 scores the estimate the controller commands with the model run on every
    ``every``-th tick only (``estimator.model_every_ticks``): tick i gets the model's output at
    tick i - i % every (ticks counted from the set's first, as the estimator counts its rows
    from its start), held in between."""
    sess = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    info = ModelInfo.from_json(Path(path), sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    if ticks is None:
        ticks = np.arange(ts.n)
    if every > 1:
        ran = np.asarray(ticks) - np.asarray(ticks) % every
        runs, held = np.unique(ran, return_inverse=True)
        return predict(path, ts, runs)[held]
    missing = [f for f in info.features if f not in ts.names]
    if missing:
        raise ValueError(
            f"{path}: the model needs features {missing} that the data does not give "
            f"(it gives {list(ts.names)})"
        )
    X = ts.X[:, [ts.names.index(f) for f in info.features]]
    out = []
    for i in range(0, len(ticks), 2048):
        w = info.input.batch(X, ticks[i : i + 2048])
        out.append(sess.run(["torque"], {"features": w})[0])
    return np.vstack(out)


def _lagged(X: np.ndarray, ticks: np.ndarray, lags: np.ndarray) -> np.ndarray:
    rows = np.clip(ticks[:, None] - lags[None, :], 0, None)
    return X[rows].reshape(len(ticks), -1)


def _lagged_design(
    sets: Sequence[TickSet], n_columns: int, lags: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    out = []
    for ts in sets:
        ticks = np.arange(ts.warm, ts.n)
        out.append((_lagged(ts.X[:, :n_columns], ticks, lags), ts.torques[ticks]))
    return out


def fit_lagged_ridge(
    sets: Sequence[TickSet],
    k: int,
    tick_rate_hz: float,
    lam: float | str = 1e-3,
    lags_ms: Sequence[float] = RIDGE_LAGS_MS,
):
    """Ridge on the first ``k`` per-tick features at lags ``lags_ms``.

    ``lam`` a number: returns (lags in ticks, coef, intercept), the simulator experiment's
    baseline (h only, lags to 400 ms). ``lam="auto"``: the features standardised, the penalty
    chosen from ``RIDGE_LAMBDAS`` on the last 20 % of every training set's ticks (never on
    scored data), then refitted on all of it; returns (lags, coef, intercept, lambda).
    """
    lags = np.array(sorted({int(round(ms * tick_rate_hz / 1000.0)) for ms in lags_ms}))
    parts = _lagged_design(sets, k, lags)
    X = np.vstack([p[0] for p in parts]).astype(np.float64)
    y = np.vstack([p[1] for p in parts]).astype(np.float64)
    if lam != "auto":
        coef, intercept = fit_ridge(X, y, float(lam))
        return lags, coef, intercept
    xm, xs = X.mean(0), np.maximum(X.std(0), 1e-9)
    tr, va = [], []
    off = 0
    for Xp, _ in parts:
        cut = int(0.8 * len(Xp))
        tr.append(np.arange(off, off + cut))
        va.append(np.arange(off + cut, off + len(Xp)))
        off += len(Xp)
    tr_i, va_i = np.concatenate(tr), np.concatenate(va)
    Z = (X - xm) / xs
    best = (math.inf, RIDGE_LAMBDAS[0])
    for cand in RIDGE_LAMBDAS:
        c, b = fit_ridge(Z[tr_i], y[tr_i], cand)
        err = float(np.mean(((Z[va_i] @ c + b) - y[va_i]) ** 2 / y[tr_i].var(0)))
        best = min(best, (err, cand))
    c, b = fit_ridge(Z, y, best[1])
    coef = c / xs[:, None]
    return lags, coef, b - xm @ coef, best[1]


def write_ridge_onnx(
    path: Path,
    lags: np.ndarray,
    coef: np.ndarray,
    intercept: np.ndarray,
    window: int,
    metadata: dict,
) -> None:
    """Window input (batch, window, K) -> Gather the lagged rows -> MatMul + Add."""
    from onnx import TensorProto, helper, numpy_helper

    k = coef.shape[0] // len(lags)
    j = coef.shape[1]
    pos = (window - 1 - lags).astype(np.int64)
    graph = helper.make_graph(
        [
            helper.make_node("Gather", ["features", "rows"], ["lagged"], axis=1),
            helper.make_node("Reshape", ["lagged", "flat_shape"], ["flat"]),
            helper.make_node("MatMul", ["flat", "coef"], ["mm"]),
            helper.make_node("Add", ["mm", "intercept"], ["torque"]),
        ],
        "exoctl_lagged_ridge",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["batch", window, k])],
        [helper.make_tensor_value_info("torque", TensorProto.FLOAT, ["batch", j])],
        [
            numpy_helper.from_array(pos, "rows"),
            numpy_helper.from_array(np.array([-1, len(lags) * k], dtype=np.int64), "flat_shape"),
            numpy_helper.from_array(coef.astype(np.float32), "coef"),
            numpy_helper.from_array(intercept.astype(np.float32).reshape(1, j), "intercept"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    save_model(model, path, "exoctl.training", metadata)
