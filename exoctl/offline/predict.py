"""A model's estimate over a tick set, in its input kind's batch form, through onnxruntime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from exoctl.estimation.torque_model import METADATA_KEY, ModelInfo, session_options

from .features import TickSet

__all__ = ["predict"]


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
