"""The steps from tick sets to model files, shared by ``exoctl train``/``adapt`` and the
real-data protocol (``exoctl.training.real_protocol``): one way to fit, export and score each
model kind, so that what the protocol reports is what the commands make.

PyTorch is imported inside the network steps only (this module is imported by the CLI's
commands when they run, never at CLI start).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exoctl.estimation.metrics import joint_metrics, summarise
from exoctl.signal.calibration import Calibration

from .evaluation import BASELINE_LAGS_MS, fit_lagged_ridge, predict, write_ridge_onnx
from .features import TickSet
from .pipeline import DataSource, TickData, model_metadata, scales_in_ticks, sidecar

__all__ = [
    "TASK_CHANGE_RATIO",
    "NetworkRecipe",
    "adapt_model",
    "fit_network_model",
    "fit_ridge_model",
    "load_torch",
    "save_torch",
    "score_sets",
    "set_metrics",
    "task_change",
]

Say = Callable[[str], None]


def _quiet(_msg: str) -> None:
    pass


@dataclass(frozen=True)
class NetworkRecipe:
    """How ``exoctl train`` and the real-data protocol train the network.

    ``skip_lags_ms``: the linear path sees the window at these lags (the lagged-ridge
    baseline's, 0-200 ms); ``validation``: the end of every training set held back to choose
    the linear path's penalty, the epoch kept and whether the branches' correction is kept at
    all (``fit.train_network``); ``loss``: ``mse`` or ``huber`` (spike-robust);
    ``residual_bound``: how far (in standard deviations of the torque) the branches' correction
    may move the linear path's estimate. Chosen on validation parts of the real data's
    training parts (docs/adaptation.md, real data).
    """

    windows_ms: tuple[float, ...] = (50.0, 100.0, 200.0, 400.0)
    epochs: int = 20
    samples_per_epoch: int = 40000
    seed: int = 0
    skip_lags_ms: tuple[float, ...] | None = BASELINE_LAGS_MS
    validation: float = 0.2
    loss: str = "mse"
    residual_bound: float = 1.0

    def train_kwargs(self, tick_rate_hz: float) -> dict:
        """``train_network`` keywords beyond the scales, at a tick rate."""
        kw: dict = {"loss": self.loss, "residual_bound": self.residual_bound}
        if self.validation:
            kw.update(validation=self.validation, skip_ridge="auto")
        if self.skip_lags_ms:
            kw["skip_lags"] = sorted(
                {int(round(ms * tick_rate_hz / 1000.0)) for ms in self.skip_lags_ms}
            )
        return kw


def _common(data: TickData, cal: Calibration, window: int, sources: Sequence[DataSource]) -> dict:
    return dict(
        muscles=tuple(cal.muscles),
        joints=data.spec.joints,
        cal=cal,
        window_ticks=window,
        tick_rate_hz=data.spec.tick_rate_hz,
        emg_rate_hz=data.emg_rates_hz[0] if len(data.emg_rates_hz) == 1 else data.emg_rates_hz,
        sources=list(sources),
        emg_signal=data.emg_signal,
    )


def fit_ridge_model(
    path: Path,
    heads: Sequence[TickSet],
    data: TickData,
    cal: Calibration,
    sources: Sequence[DataSource],
    *,
    extra: dict | None = None,
    window: int | None = None,
) -> dict:
    """The lagged-ridge baseline on every per-tick feature the data gives (EMG features, and
    angles/velocities when used) at lags 0-200 ms, its penalty chosen on the last 20 % of the
    training part; written as ONNX. Returns the metadata."""
    rate = data.spec.tick_rate_hz
    names = list(heads[0].names)
    lags, coef, b, lam = fit_lagged_ridge(
        list(heads), len(names), rate, lam="auto", lags_ms=BASELINE_LAGS_MS
    )
    window = window or int(lags.max()) + 1
    meta = model_metadata(
        model_type="ridge", features=names, windows_ms=None, metrics={},
        extra={**(extra or {}), "lags_ticks": lags.tolist(), "ridge_lambda": lam},
        **_common(data, cal, window, sources),
    )  # fmt: skip
    write_ridge_onnx(path, lags, coef, b, window, meta)
    return meta


def fit_network_model(
    path: Path,
    heads: Sequence[TickSet],
    data: TickData,
    cal: Calibration,
    sources: Sequence[DataSource],
    recipe: NetworkRecipe,
    *,
    extra: dict | None = None,
    say: Say = _quiet,
):
    """Train the paper's network on labelled tick sets, write ``path`` (ONNX) and its ``.pt``.

    Returns (the network, its metadata)."""
    from .fit import emg_augmentation, export_onnx, set_threads, train_network

    set_threads()
    rate = data.spec.tick_rate_hz
    scales = scales_in_ticks(recipe.windows_ms, rate)
    n_emg = cal.k + len(cal.muscles)
    net = train_network(
        list(heads), scales, epochs=recipe.epochs, seed=recipe.seed, progress=say,
        samples_per_epoch=recipe.samples_per_epoch, **emg_augmentation(n_emg),
        **recipe.train_kwargs(rate),
    )  # fmt: skip
    meta = model_metadata(
        model_type="network", features=heads[0].names, windows_ms=recipe.windows_ms,
        metrics={}, normalisation=_normalisation(net),
        extra={**(extra or {}), "architecture": net.config,
               "training": getattr(net, "training_report", {})},
        **_common(data, cal, max(scales), sources),
    )  # fmt: skip
    export_onnx(net, path, meta)
    save_torch(net, sidecar(path, "pt"), meta)
    return net, meta


def _normalisation(net) -> dict:
    return {
        "x_mean": net.x_mean.tolist(),
        "x_std": net.x_std.tolist(),
        "y_mean": net.y_mean.tolist(),
        "y_std": net.y_std.tolist(),
    }


# Joint-velocity spread of a target this far (ratio, either way) from the training data's
# means another task or speed, not another day of the same one (walk36 vs run81: 0.51-0.59).
TASK_CHANGE_RATIO = 1.5


def task_change(source: Sequence[TickSet], target: Sequence[TickSet]) -> dict[str, float]:
    """The velocity features (encoders, not EMG) whose standard deviation on the target differs
    from the source's by more than ``TASK_CHANGE_RATIO``: name -> target / source.

    Why: the amplitude step of ``exoctl adapt`` takes an EMG level change for an electrode
    gain change, which holds for a later session of the same task. When the task changes the
    muscles really work at another level, and scaling it away estimates the training task's
    moments (run81 -> walk36 on real data: R^2 hip -11, docs/adaptation.md)."""
    cols = [i for i, n in enumerate(source[0].names) if n.startswith("velocity:")]

    def spread(sets: Sequence[TickSet]) -> np.ndarray:
        return np.vstack([ts.X[ts.warm :, cols] for ts in sets]).astype(np.float64).std(axis=0)

    if not cols:
        return {}
    ratio = spread(target) / np.maximum(spread(source), 1e-12)
    return {
        source[0].names[c]: round(float(r), 3)
        for c, r in zip(cols, ratio, strict=True)
        if not 1.0 / TASK_CHANGE_RATIO <= r <= TASK_CHANGE_RATIO
    }


def adapt_model(
    net,
    meta: dict,
    source: Sequence[TickSet],
    target: Sequence[TickSet],
    out: Path,
    *,
    n_emg_features: int,
    target_source: DataSource,
    from_model: str,
    say: Say = _quiet,
    **adapt_kwargs,
):
    """Adapt a network to unlabelled target tick sets (their torques are never read) and write
    the adapted model beside ``out``'s sidecars. Returns (adapted network, its metadata)."""
    from .adapt import adapt_network
    from .fit import export_onnx, set_threads

    set_threads()
    target = [
        TickSet(
            t.name,
            t.X,
            None,
            t.tick_rate_hz,
            t.warm,
            t.names,
            t.body_mass_kg,
            t.fingerprint,
            t.info,
        )  # fmt: skip
        for t in target
    ]
    adapted, report = adapt_network(
        net, list(source), target, n_emg_features=n_emg_features, progress=say, **adapt_kwargs
    )
    meta = json.loads(json.dumps(meta))
    meta["normalisation"] = _normalisation(adapted)
    meta["adaptation"] = {"from_model": from_model, "target": target_source.__dict__, **report}
    changed = task_change(source, target)
    if changed:
        meta["adaptation"]["task_change"] = changed
        say(
            "WARNING: the target's joint velocities differ from the training data's "
            f"(standard deviation ratio {changed}): another task or speed. The amplitude step "
            "assumes the same task on another day; do not trust this adaptation "
            "(docs/adaptation.md, real recorded EMG)"
        )
    meta["metrics"] = {}
    export_onnx(adapted, out, meta)
    save_torch(adapted, sidecar(out, "pt"), meta)
    return adapted, meta


def score_sets(
    path: Path,
    sets: Sequence[TickSet],
    joints: Sequence[str],
    body_mass_kg: float | None = None,
    ticks: Sequence[np.ndarray] | None = None,
    every: int = 1,
) -> tuple[dict, np.ndarray, np.ndarray]:
    """A model file over tick sets through onnxruntime (as the controller runs it): metrics
    pooled over the sets' scored ticks (from each set's ``warm`` on, or the ``ticks`` given),
    the truth and the estimate (``every``: the model run on every ``every``-th tick only, its
    value held between, see ``predict``)."""
    ys, yh = [], []
    for i, ts in enumerate(sets):
        tt = np.arange(ts.warm, ts.n) if ticks is None else np.asarray(ticks[i])
        ys.append(ts.torques[tt])
        yh.append(predict(path, ts, tt, every))
    y, yhat = np.vstack(ys), np.vstack(yh)
    per = joint_metrics(y, yhat, joints, body_mass_kg)
    return {"joints": per, **summarise(per)}, y, yhat


def save_torch(net, path: Path, meta: dict) -> None:
    """The network's weights and architecture beside its ONNX file, for ``exoctl adapt``."""
    import torch

    torch.save(
        {
            "state_dict": net.state_dict(),
            "n_features": net.n_features,
            "n_joints": net.n_joints,
            "scales": net.scales,
            "config": net.config,
            "features": meta["features"],
            "training_data": meta["training_data"],
            "calibration_fingerprint": meta["calibration_fingerprint"],
        },
        path,
    )


def load_torch(path: Path):
    import torch

    from .network import MultiScaleNet

    doc = torch.load(path, map_location="cpu", weights_only=False)
    net = MultiScaleNet(doc["n_features"], doc["n_joints"], doc["scales"], **doc["config"])
    net.load_state_dict(doc["state_dict"])
    net.eval()
    return net, doc


def set_metrics(path: Path, metrics: dict) -> None:
    """Rewrite a model file's metadata with its metrics (measured after export)."""
    import onnx

    from exoctl.estimation.torque_model import METADATA_KEY, save_model

    model = onnx.load(str(path))
    doc = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    doc["metrics"] = metrics
    save_model(model, path, model.producer_name, doc)
