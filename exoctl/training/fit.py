"""Training, adversarial adaptation and ONNX export of the torque network (PyTorch, CPU).

- ``train_network``: supervised, on labelled tick sets (windows of the past, MSE on torques
  standardised per joint), AdamW with a cosine learning rate.
- ``adapt_network`` (adversarial adaptation) is in ``exoctl.training.adapt``.
- ``export_onnx``: the streaming form (default) or the window form, free batch axis, exoctl
  metadata.

Torch runs on one thread by default (``set_threads``; a 2-core target; the controller never
imports this).
"""

from __future__ import annotations

import copy
import math
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

from exoctl.estimation.input_kinds import Window
from exoctl.estimation.torque_model import save_model
from exoctl.training.linear_model import OPSET

from .evaluation import RIDGE_LAMBDAS
from .features import TickSet
from .network import MultiScaleNet

__all__ = [
    "emg_augmentation",
    "export_onnx",
    "set_threads",
    "train_network",
    "torch_predict",
]

Progress = Callable[[str], None]

LOSSES = ("mse", "huber")


def set_threads(n: int = 1) -> None:
    """Torch's intra-op threads, at most two. One by default: on a 2-core machine shared with
    other work, two threads spend their time waiting for each other (measured under a load
    average of 13-16: 20 training batches took 2.1 s on one thread, 27 s on two)."""
    torch.set_num_threads(max(1, min(int(n), 2)))


class _Pool:
    """All windows of several tick sets without copying: padded, concatenated, unfolded."""

    def __init__(self, sets: Sequence[TickSet], window: int, labelled: bool) -> None:
        xs, ys, ends = [], [], []
        off = 0
        for ts in sets:
            pad = np.repeat(ts.X[:1], window - 1, axis=0)
            xs.append(np.vstack([pad, ts.X]))
            if labelled:
                ys.append(ts.y)
            ends.append(off + window - 1 + np.arange(ts.warm, ts.n))
            off += ts.n + window - 1
        self.X = torch.from_numpy(np.ascontiguousarray(np.vstack(xs), dtype=np.float32))
        self.unf = self.X.unfold(0, window, 1)  # (rows - window + 1, F, window), a view
        self.ends = np.concatenate(ends)
        self.y = None
        if labelled:
            # y aligned with the padded rows: row r of X is tick r - (window - 1) of its set
            yy = []
            for ts in sets:
                yy.append(np.zeros((window - 1, ts.torques.shape[1]), np.float32))
                yy.append(ts.torques.astype(np.float32))
            self.y = torch.from_numpy(np.vstack(yy))
        self.window = window

    def __len__(self) -> int:
        return len(self.ends)

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        e = self.ends[idx]
        x = self.unf[torch.from_numpy(e - self.window + 1)].transpose(1, 2)  # (B, N, F)
        y = None if self.y is None else self.y[torch.from_numpy(e)]
        return x, y


def _stats(sets: Sequence[TickSet]) -> tuple[np.ndarray, np.ndarray]:
    X = np.vstack([ts.X[ts.warm :] for ts in sets]).astype(np.float64)
    return X.mean(0), np.maximum(X.std(0), 1e-6)


def _skip_design(ts: TickSet, lags: Sequence[int], xm: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """The linear path's input rows of a tick set's trained ticks (lag-major, as in ``embed``),
    the rows before the first tick padded with it (as the windows are)."""
    Xn = (ts.X - xm) / xs
    ticks = np.arange(ts.warm, ts.n)
    return np.hstack([Xn[np.clip(ticks - lag, 0, None)] for lag in lags])


def emg_augmentation(n_emg_features: int) -> dict:
    """``train_network`` keywords of the recipe every exoctl network is trained with: the first
    ``n_emg_features`` columns (h and a) multiplied per window by exp(N(0, 0.2^2)) per column,
    and each dropped to its mean with probability 0.1. Why: a later session's EMG amplitudes
    are never those of the calibration; adaptation re-estimates them only approximately, and
    a network that relies on exact amplitudes turns that error into torque error (without it,
    the floor re-estimation barely helped the hip in the bench; docs/adaptation.md)."""
    return {"augment": (0, int(n_emg_features), 0.2), "channel_dropout": 0.1}


def train_network(
    sets: Sequence[TickSet],
    scales_ticks: Sequence[int],
    *,
    epochs: int = 20,
    samples_per_epoch: int = 40000,
    batch: int = 256,
    lr: float = 2e-3,
    seed: int = 0,
    progress: Progress | None = None,
    augment: tuple[int, int, float] | None = None,
    channel_dropout: float = 0.0,
    skip_ridge: float | str = 0.01,
    loss: str = "mse",
    validation: float = 0.0,
    **arch,
) -> MultiScaleNet:
    """Fit a ``MultiScaleNet`` on labelled tick sets; returns it in eval mode.

    ``augment = (start, stop, sigma)``: multiply feature columns start..stop-1 of every
    training window by a random per-window, per-column factor exp(N(0, sigma^2)) — EMG
    amplitude changes between sessions (electrode gain, fatigue) the model should not rely on.

    ``validation``: the fraction at the end of every set held back from fitting (training
    data still: never a scored part). On it the linear path's penalty is chosen
    (``skip_ridge="auto"``, from ``RIDGE_LAMBDAS``), the epoch whose weights are kept, and
    whether the branches' correction is kept at all: when no epoch beats the linear path alone
    on it, the correction is switched off (the head zeroed). What was chosen is in
    ``net.training_report``.
    """
    if loss not in LOSSES:
        raise ValueError(f"loss={loss!r}: allowed {', '.join(LOSSES)}")
    if skip_ridge == "auto" and not validation:
        raise ValueError("skip_ridge='auto' chooses the penalty on a validation part: give one")
    loss_fn = F.mse_loss if loss == "mse" else F.smooth_l1_loss  # Huber, delta 1 sd
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    val_sets: list[TickSet] = []
    if validation:
        from .pipeline import split_tail

        heads_tails = [split_tail(ts, validation) for ts in sets]
        sets = [h for h, _ in heads_tails]
        val_sets = [t for _, t in heads_tails if t.n > t.warm]
    n_f, n_j = sets[0].X.shape[1], sets[0].torques.shape[1]
    net = MultiScaleNet(n_f, n_j, scales_ticks, **arch)
    pool = _Pool(sets, net.window, labelled=True)
    xm, xs = _stats(sets)
    Y = np.vstack([ts.torques[ts.warm :] for ts in sets]).astype(np.float64)
    net.set_normalisation(xm, xs, Y.mean(0), np.maximum(Y.std(0), 1e-6))
    y_mean, y_std = net.y_mean, net.y_std
    report: dict = {"loss": loss, "validation_fraction": validation}
    # The linear path first, in closed form (ridge, standardised), then frozen: the branches
    # learn only what it leaves, so a drifted input moves the estimate about as much as it
    # moves a linear model, not as much as an unconstrained network's.
    Xn = np.vstack([_skip_design(ts, net.skip_lags, xm, xs) for ts in sets])
    Yn = (Y - Y.mean(0)) / np.maximum(Y.std(0), 1e-6)
    if skip_ridge == "auto":
        Xv = np.vstack([_skip_design(ts, net.skip_lags, xm, xs) for ts in val_sets])
        Yv = (np.vstack([ts.torques[ts.warm :] for ts in val_sets]) - Y.mean(0)) / np.maximum(
            Y.std(0), 1e-6
        )
        G, r = Xn.T @ Xn, Xn.T @ Yn
        errs = {
            lam: float(
                np.mean((Xv @ np.linalg.solve(G + lam * len(Xn) * np.eye(len(G)), r) - Yv) ** 2)
            )
            for lam in RIDGE_LAMBDAS
        }
        skip_ridge = min(errs, key=lambda k: errs[k])
        report["skip_lambda_validation_mse"] = {f"{k:g}": round(v, 5) for k, v in errs.items()}
    report["skip_lambda"] = float(skip_ridge)
    coef = np.linalg.solve(Xn.T @ Xn + float(skip_ridge) * len(Xn) * np.eye(Xn.shape[1]), Xn.T @ Yn)
    with torch.no_grad():
        net.skip.weight.copy_(torch.as_tensor(coef.T, dtype=torch.float32))
        net.skip.bias.zero_()
    net.skip.requires_grad_(False)
    val = _Pool(val_sets, net.window, labelled=True) if val_sets else None
    params = [p for p in net.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
    per_epoch = max(1, min(samples_per_epoch, len(pool)) // batch)
    total = epochs * per_epoch
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=total, pct_start=0.15)
    t0 = time.monotonic()
    best: tuple[float, int, dict | None] = (math.inf, 0, None)
    if val is not None:
        best = (_val_loss(net, val, linear_only=True), 0, None)
        report["linear_validation_mse"] = round(best[0], 5)
        report["validation_mse_by_epoch"] = []
    net.train()
    for ep in range(epochs):
        loss_sum = 0.0
        for _ in range(per_epoch):
            x, y = pool.batch(rng.integers(0, len(pool), batch))
            assert y is not None  # the pool was built labelled=True
            if augment is not None:
                a0, a1, sig = augment
                g = torch.exp(sig * torch.randn(batch, 1, a1 - a0))
                emg = x[:, :, a0:a1] * g
                if channel_dropout > 0:  # a lost or shifted electrode: the others must cover
                    keep = (torch.rand(batch, 1, a1 - a0) >= channel_dropout).float()
                    emg = emg * keep + net.x_mean[a0:a1] * (1.0 - keep)
                x = torch.cat([x[:, :, :a0], emg, x[:, :, a1:]], dim=2)
            pred, _ = net.forward_scaled(x)
            err = loss_fn(pred, (y - y_mean) / y_std)
            opt.zero_grad(set_to_none=True)
            err.backward()
            opt.step()
            sched.step()
            loss_sum += float(err.detach())
        msg = f"epoch {ep + 1}/{epochs}  loss {loss_sum / per_epoch:.4f} (standardised {loss})"
        if val is not None:
            v = _val_loss(net, val)
            report["validation_mse_by_epoch"].append(round(v, 5))
            msg += f"  validation MSE {v:.4f}"
            if v < best[0]:
                best = (v, ep + 1, copy.deepcopy(net.state_dict()))
            net.train()
        if progress:
            progress(f"{msg}  {time.monotonic() - t0:.0f} s")
    net.eval()
    if val is not None:
        report["kept_epoch"] = best[1]  # 0: the branches' correction did not help: off
        if best[2] is None:
            with torch.no_grad():
                net.head.weight.zero_()
                net.head.bias.zero_()
        else:
            net.load_state_dict(best[2])
        # the choices made, the linear path is refitted on every training tick (the held-back
        # part included, as the baseline's ridge is) to what the kept correction leaves
        _refit_skip(net, sets, val_sets, float(skip_ridge))
    net.training_report = report
    return net


@torch.no_grad()
def _refit_skip(
    net: MultiScaleNet, sets: Sequence[TickSet], val_sets: Sequence[TickSet], lam: float
) -> None:
    full = _Pool([*sets, *val_sets], net.window, labelled=True)
    xm, xs = net.x_mean.numpy().astype(np.float64), net.x_std.numpy().astype(np.float64)
    targets = []
    for part in np.array_split(np.arange(len(full)), max(1, len(full) // 2048)):
        x, y = full.batch(part)
        assert y is not None  # the pool was built labelled=True
        z, _ = net.embed(x)
        targets.append(((y - net.y_mean) / net.y_std - net._residual(z)).numpy())
    X = np.vstack([_skip_design(ts, net.skip_lags, xm, xs) for ts in [*sets, *val_sets]])
    Y = np.vstack(targets).astype(np.float64)
    Xc, ym = X - X.mean(0), Y.mean(0)
    coef = np.linalg.solve(Xc.T @ Xc + lam * len(X) * np.eye(X.shape[1]), Xc.T @ (Y - ym))
    net.skip.weight.copy_(torch.as_tensor(coef.T, dtype=torch.float32))
    net.skip.bias.copy_(torch.as_tensor(ym - X.mean(0) @ coef, dtype=torch.float32))


@torch.no_grad()
def _val_loss(net: MultiScaleNet, val: _Pool, linear_only: bool = False, most: int = 4096) -> float:
    """Standardised MSE on (at most ``most``, evenly spaced) validation windows."""
    net.eval()
    idx = np.linspace(0, len(val) - 1, min(most, len(val))).astype(np.int64)
    total, n = 0.0, 0
    for part in np.array_split(idx, max(1, len(idx) // 1024)):
        x, y = val.batch(part)
        assert y is not None  # the validation pool is labelled
        z, last = net.embed(x)
        pred = net.skip(last) if linear_only else net._residual(z) + net.skip(last)
        total += float(((pred - (y - net.y_mean) / net.y_std) ** 2).sum())
        n += pred.numel()
    return total / n


@torch.no_grad()
def torch_predict(net: MultiScaleNet, windows_: np.ndarray) -> np.ndarray:
    net.eval()
    return net(torch.from_numpy(np.ascontiguousarray(windows_, dtype=np.float32))).numpy()


class _Export(torch.nn.Module):
    def __init__(self, net: MultiScaleNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features)


def export_onnx(net: MultiScaleNet, path: Path, metadata: dict, form: str = "stream") -> None:
    """Write the network as ONNX with metadata: ``form="stream"`` (default) the streaming form
    the controller runs cheaply (segment sums in, see ``stream_export``), ``"window"`` the
    torch export of the window form, input (batch, window, F), opset ``OPSET``."""
    import onnx

    if form == "stream":
        from .stream_export import export_stream_onnx

        export_stream_onnx(copy.deepcopy(net).eval(), path, metadata)
        return
    if form != "window":
        raise ValueError(f"form must be 'stream' or 'window', got {form!r}")
    rate = float(metadata["input"]["tick_rate_hz"])
    metadata = {**metadata, "input": Window(net.window, rate).entry()}
    path = Path(path)
    net = copy.deepcopy(net).eval()
    dummy = torch.zeros(1, net.window, net.n_features)
    tmp = path.with_name(path.name + ".export.tmp")
    # The TorchScript exporter: the torch.export-based one needs onnxscript, one more
    # dependency, and this graph (convolutions, matmuls, softmax) needs nothing newer.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            _Export(net),
            (dummy,),
            str(tmp),
            input_names=["features"],
            output_names=["torque"],
            opset_version=OPSET,
            dynamo=False,
            dynamic_axes={"features": {0: "batch"}, "torque": {0: "batch"}},
            do_constant_folding=True,
        )
    model = onnx.load(str(tmp))
    tmp.unlink()
    save_model(model, path, "exoctl.training", metadata)
