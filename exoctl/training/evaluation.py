"""Scores, the ridge baseline, and batch inference through onnxruntime (no PyTorch needed).

Every figure the tools report comes from the exported ONNX file run by onnxruntime, the way the
controller runs it, never from the training framework's own forward pass: what is scored is
what ships. ``predict`` feeds the model's input (windows, segment sums) in batches (the graphs
have a free batch axis; the controller binds a batch of one).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnxruntime as ort

from exoctl.estimation.torque_model import (
    METADATA_KEY,
    ModelInfo,
    batch_input,
    save_model,
    session_options,
)
from exoctl.training.linear_model import OPSET, fit_ridge

from .features import TickSet

__all__ = [
    "RIDGE_LAGS_MS",
    "fit_lagged_ridge",
    "joint_metrics",
    "load_info",
    "predict",
    "summarise",
    "write_ridge_onnx",
]

RIDGE_LAGS_MS = (0.0, 25.0, 50.0, 100.0, 200.0, 398.0)
"""Lags of the synergy activations the ridge baseline sees (the window's span)."""


def joint_metrics(
    y: np.ndarray, yhat: np.ndarray, joints: Sequence[str], body_mass_kg: float | None = None
) -> dict[str, dict[str, float]]:
    """R^2, RMSE (N m, and N m/kg with the mass), NRMSE (RMSE / range of the truth) per joint."""
    out = {}
    for j, name in enumerate(joints):
        t, e = y[:, j].astype(np.float64), yhat[:, j].astype(np.float64)
        ss_tot = float(np.sum((t - t.mean()) ** 2))
        rmse = float(np.sqrt(np.mean((t - e) ** 2)))
        rng = float(t.max() - t.min())
        m = {
            "r2": 1.0 - float(np.sum((t - e) ** 2)) / ss_tot if ss_tot > 0 else float("nan"),
            "rmse_nm": rmse,
            "nrmse": rmse / rng if rng > 0 else float("nan"),
        }
        if body_mass_kg:
            m["rmse_nm_per_kg"] = rmse / body_mass_kg
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


def load_info(path: Path) -> ModelInfo:
    """The exoctl metadata of an ONNX model file (via onnxruntime, as the controller reads it)."""
    from exoctl.estimation.torque_model import TorqueModel

    return TorqueModel(path).info


def predict(path: Path | str, ts: TickSet, ticks: np.ndarray | None = None) -> np.ndarray:
    """Torque (len(ticks), J) of an exported window model over a tick set, through onnxruntime."""
    sess = ort.InferenceSession(str(path), session_options(), providers=["CPUExecutionProvider"])
    info = ModelInfo.from_json(Path(path), sess.get_modelmeta().custom_metadata_map[METADATA_KEY])
    if ticks is None:
        ticks = np.arange(ts.n)
    missing = [f for f in info.features if f not in ts.names]
    if missing:
        raise ValueError(
            f"{path}: the model needs features {missing} that the data does not give "
            f"(it gives {list(ts.names)})"
        )
    X = ts.X[:, [ts.names.index(f) for f in info.features]]
    out = []
    for i in range(0, len(ticks), 2048):
        w = batch_input(info, X, ticks[i : i + 2048])
        out.append(sess.run(["torque"], {"features": w})[0])
    return np.vstack(out)


def _lagged(X: np.ndarray, ticks: np.ndarray, lags: np.ndarray) -> np.ndarray:
    rows = np.clip(ticks[:, None] - lags[None, :], 0, None)
    return X[rows].reshape(len(ticks), -1)


def fit_lagged_ridge(
    sets: Sequence[TickSet], k: int, tick_rate_hz: float, lam: float = 1e-3
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Ridge on the synergy activations h at a few lags; returns (lags in ticks, coef, intercept)."""
    lags = np.array(sorted({int(round(ms * tick_rate_hz / 1000.0)) for ms in RIDGE_LAGS_MS}))
    Xs, ys = [], []
    for ts in sets:
        ticks = np.arange(ts.warm, ts.n)
        Xs.append(_lagged(ts.X[:, :k], ticks, lags))
        ys.append(ts.torques[ticks])
    coef, intercept = fit_ridge(
        np.vstack(Xs).astype(np.float64), np.vstack(ys).astype(np.float64), lam
    )
    return lags, coef, intercept


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
