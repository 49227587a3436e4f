"""Training, adversarial adaptation and ONNX export of the torque network (PyTorch, CPU).

- ``train_network``: supervised, on labelled tick sets (windows of the past, MSE on torques
  standardised per joint), AdamW with a cosine learning rate.
- ``adapt_network``: domain-adversarial adaptation (DANN, Ganin & Lempitsky 2015). A gradient-
  reversal layer sits between the fused features z and a domain classifier that tells the
  labelled calibration session(s) from unlabelled later ones; the feature extractor learns to
  make them indistinguishable while still regressing the labelled torques. Only the later
  sessions' inputs are used, never their torques. Before that, the scale of the EMG-derived
  features (h, a) is re-estimated on the later sessions (their per-channel amplitude is what
  drifts most: electrode gain, fatigue), by default from each feature's floor (its 10th
  percentile, see ``FLOOR_QUANTILE``); angles and velocities come from encoders and keep the
  calibration's statistics. The default ``mode="adapter"`` keeps the trained network frozen
  and learns the EMG features' input scaling adversarially; ``mode="dann"`` trains the whole
  feature extractor with the reversed gradient (on the simulator's drifted sessions it lost
  more regression accuracy than it gained alignment). Measured (docs/adaptation.md): the
  accuracy gained comes from the amplitude re-estimation; the adversarial map, held near it,
  adds nothing measurable (R^2 within 0.004 of the re-estimation alone over 16 simulated
  patients), and held more loosely it lowers the R^2: a later session differs also by what the
  patient really does, which no input map should align away.
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

from exoctl.estimation.torque_model import save_model, window_input
from exoctl.training.linear_model import OPSET

from .evaluation import RIDGE_LAMBDAS
from .features import TickSet
from .network import DomainClassifier, MultiScaleNet

__all__ = [
    "FLOOR_QUANTILE",
    "RENORMALISE",
    "adapt_network",
    "emg_augmentation",
    "export_onnx",
    "set_threads",
    "train_network",
    "torch_predict",
]

Progress = Callable[[str], None]

# How the EMG features' statistics are re-estimated on the later sessions before the
# adversarial step (``adapt_network(renormalise=...)``, ``exoctl adapt --renormalise``).
RENORMALISE = ("floor", "scale", "full", "none")
# The percentile whose ratio (later / calibration session) estimates a feature's amplitude
# factor under "floor". Why a low percentile and not the RMS: an electrode's gain or a
# fatigued muscle's amplitude multiplies the whole of a channel's amplitude distribution,
# its resting floor included, while a change in what the patient does (weakness, spasticity,
# another gait) moves mostly the bursts. An RMS ratio mistakes weaker bursts for a lower gain
# and scales them back up: on the simulator's drifted sessions it lost hip accuracy that the
# floor ratio keeps (exoctl.training.experiment, variants "adapted" and "rms_adv"). It needs a
# floor above the noise: a channel silent for most of the session gives no usable estimate.
FLOOR_QUANTILE = 10.0
LOSSES = ("mse", "huber")
FLOOR_MIN = 0.01  # a floor below this fraction of the feature's RMS is no floor (see below)


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


def _amplitude_ratio(
    source: Sequence[TickSet], target: Sequence[TickSet], how: str, n: int
) -> tuple[np.ndarray, int]:
    """Per-feature amplitude factor target / source of the first ``n`` columns, and how many
    features fell back from their floor to their RMS (under ``how="floor"``)."""

    def levels(sets: Sequence[TickSet]) -> tuple[np.ndarray, np.ndarray]:
        X = np.vstack([ts.X[ts.warm :, :n] for ts in sets]).astype(np.float64)
        rms = np.maximum(np.sqrt(np.mean(X**2, axis=0)), 1e-9)
        return np.percentile(X, FLOOR_QUANTILE, axis=0), rms

    (f_s, r_s), (f_t, r_t) = levels(source), levels(target)
    by_rms = r_t / r_s
    if how != "floor":
        return by_rms, 0
    # a floor at zero (a synergy activation NNLS holds at 0 for much of the stride) says
    # nothing about the amplitude: that feature falls back to its RMS ratio
    usable = (f_s > FLOOR_MIN * r_s) & (f_t > FLOOR_MIN * r_t)
    ratio = np.where(usable, f_t / np.where(usable, f_s, 1.0), by_rms)
    return ratio, int(n - usable.sum())


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


def adapt_network(
    net: MultiScaleNet,
    source: Sequence[TickSet],
    target: Sequence[TickSet],
    *,
    n_emg_features: int,
    epochs: int = 8,
    samples_per_epoch: int = 20000,
    batch: int = 256,
    lr: float = 5e-4,
    lam_max: float = 0.3,
    renormalise: str = "floor",
    adversarial: bool = True,
    mode: str = "adapter",
    adapter_pull: float = 10.0,
    seed: int = 0,
    progress: Progress | None = None,
) -> tuple[MultiScaleNet, dict]:
    """A copy of ``net`` adapted to the unlabelled ``target`` sets; returns it and a report.

    ``n_emg_features``: the first columns (h and a) whose normalisation is re-estimated on the
    target; the rest (angles, velocities) keep the source statistics. ``renormalise`` (one of
    ``RENORMALISE``): ``"floor"`` one factor per feature, the ratio of its low percentiles
    (``FLOOR_QUANTILE``), the form a change of electrode gain or of fatigue amplitude takes;
    ``"scale"`` the same from the ratio of root-mean-squares; ``"full"`` mean and standard
    deviation re-estimated; ``"none"`` the source statistics kept. ``adapter_pull``: how hard
    the adversarial input map (``mode="adapter"``) is held near the re-estimated statistics.
    """
    if renormalise not in RENORMALISE:
        raise ValueError(f"renormalise={renormalise!r}: allowed {', '.join(RENORMALISE)}")
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    out = copy.deepcopy(net)
    src_mean, src_std = out.x_mean.clone(), out.x_std.clone()
    tgt_mean, tgt_std = src_mean.clone(), src_std.clone()
    report: dict = {"renormalised": renormalise, "adversarial": adversarial, "mode": mode}
    if renormalise in ("floor", "scale"):
        ratio, fell_back = _amplitude_ratio(source, target, renormalise, n_emg_features)
        r = torch.as_tensor(ratio, dtype=torch.float32)
        tgt_mean[:n_emg_features] = src_mean[:n_emg_features] * r
        tgt_std[:n_emg_features] = src_std[:n_emg_features] * r
        report["amplitude_factors"] = [round(float(v), 4) for v in ratio]
        if renormalise == "floor":
            report["floor_fallback_to_rms"] = fell_back
    elif renormalise == "full":
        m, s = _stats(target)
        tgt_mean[:n_emg_features] = torch.as_tensor(m[:n_emg_features], dtype=torch.float32)
        tgt_std[:n_emg_features] = torch.as_tensor(s[:n_emg_features], dtype=torch.float32)
    if adversarial and mode == "adapter":
        report["adapter_pull"] = adapter_pull
        tgt_mean, tgt_std, rep = _adversarial_adapter(
            out, source, target, tgt_mean, tgt_std, n_emg_features, epochs=epochs,
            samples_per_epoch=samples_per_epoch, batch=batch, lr=lr, rng=rng, progress=progress,
            pull=adapter_pull,
        )  # fmt: skip
        report.update(rep)
    elif adversarial:
        src = _Pool(source, out.window, labelled=True)
        tgt = _Pool(target, out.window, labelled=False)
        disc = DomainClassifier(out.head.in_features)
        params = list(out.parameters()) + list(disc.parameters())
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=1e-4)
        per_epoch = max(1, min(samples_per_epoch, len(src)) // batch)
        total = epochs * per_epoch
        step = 0
        t0 = time.monotonic()
        out.train()
        disc.train()
        for ep in range(epochs):
            reg_sum = dom_sum = acc_sum = 0.0
            for _ in range(per_epoch):
                p = step / max(total - 1, 1)
                disc.grl.lam = lam_max * (2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0)
                xs_, ys_ = src.batch(rng.integers(0, len(src), batch))
                assert ys_ is not None  # the source pool is labelled
                xt, _ = tgt.batch(rng.integers(0, len(tgt), batch))
                pred, zs = out.forward_scaled(xs_, src_mean, src_std)
                _, zt = out.forward_scaled(xt, tgt_mean, tgt_std)
                reg = F.mse_loss(pred, (ys_ - out.y_mean) / out.y_std)
                logits = disc(torch.cat([zs, zt]))
                labels = torch.cat([torch.zeros(batch), torch.ones(batch)])
                dom = F.binary_cross_entropy_with_logits(logits, labels)
                loss = reg + dom
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
                reg_sum += float(reg.detach())
                dom_sum += float(dom.detach())
                acc_sum += float(((logits > 0).float() == labels).float().mean())
            if progress:
                progress(
                    f"adapt epoch {ep + 1}/{epochs}  regression {reg_sum / per_epoch:.4f}  "
                    f"domain {dom_sum / per_epoch:.3f} (accuracy {acc_sum / per_epoch:.2f}; "
                    f"0.5 = aligned)  {time.monotonic() - t0:.0f} s"
                )
        report["final_domain_accuracy"] = round(acc_sum / per_epoch, 4)
        report["final_regression_loss"] = round(reg_sum / per_epoch, 5)
    out.x_mean.copy_(tgt_mean)
    out.x_std.copy_(tgt_std)
    out.eval()
    return out, report


def _adversarial_adapter(
    net: MultiScaleNet,
    source: Sequence[TickSet],
    target: Sequence[TickSet],
    tgt_mean: torch.Tensor,
    tgt_std: torch.Tensor,
    n_emg: int,
    *,
    epochs: int,
    samples_per_epoch: int,
    batch: int,
    lr: float,
    rng: np.random.Generator,
    progress: Progress | None,
    pull: float,
) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Adversarial alignment through a per-feature affine input map of the EMG features only.

    The trained network is frozen (its mapping from features to torque is what the labels
    taught it); the target's input normalisation of the EMG-derived features (h, a) is learned
    so that a domain classifier behind the gradient-reversal layer cannot tell target windows
    from source windows in the fused feature space z. Constrained this way, alignment can undo
    channel-level drift (gain, fatigue amplitude) but cannot rewrite the torque mapping, which
    is what unconstrained DANN did on drifted sessions (it traded regression accuracy for
    alignment). ``pull`` keeps the map near its start (the re-estimated statistics).
    """
    src = _Pool(source, net.window, labelled=False)
    tgt = _Pool(target, net.window, labelled=False)
    for p in net.parameters():
        p.requires_grad_(False)
    log_scale = torch.zeros(n_emg, requires_grad=True)
    shift = torch.zeros(n_emg, requires_grad=True)
    # the classifier sees z and the newest tick's normalised features: the linear path reads
    # the latter directly, so a drift there must be visible to the adversary too
    disc = DomainClassifier(net.head.in_features + net.skip_in)
    disc.grl.lam = 1.0
    opt_d = torch.optim.Adam(disc.parameters(), lr=1e-3)
    opt_a = torch.optim.Adam([log_scale, shift], lr=lr * 10)
    per_epoch = max(1, min(samples_per_epoch, len(tgt)) // batch)
    net.eval()
    t0 = time.monotonic()
    acc = 0.0

    def maps() -> tuple[torch.Tensor, torch.Tensor]:
        std = torch.cat([tgt_std[:n_emg] * torch.exp(-log_scale), tgt_std[n_emg:]])
        mean = torch.cat([tgt_mean[:n_emg] + shift * tgt_std[:n_emg], tgt_mean[n_emg:]])
        return mean, std

    for ep in range(epochs):
        acc_sum = 0.0
        for _ in range(per_epoch):
            xs_, _ = src.batch(rng.integers(0, len(src), batch))
            xt, _ = tgt.batch(rng.integers(0, len(tgt), batch))
            with torch.no_grad():
                zs, ls = net.embed(xs_)
            mean, std = maps()
            zt, lt = net.embed(xt, mean, std)
            logits = disc(torch.cat([torch.cat([zs, ls], 1), torch.cat([zt, lt], 1)]))
            labels = torch.cat([torch.zeros(batch), torch.ones(batch)])
            dom = F.binary_cross_entropy_with_logits(logits, labels)
            loss = dom + pull * (log_scale.pow(2).mean() + shift.pow(2).mean())
            opt_d.zero_grad(set_to_none=True)
            opt_a.zero_grad(set_to_none=True)
            loss.backward()  # the reversal layer turns the classifier's gain into the map's loss
            opt_d.step()
            opt_a.step()
            acc_sum += float(((logits.detach() > 0).float() == labels).float().mean())
        acc = acc_sum / per_epoch
        if progress:
            progress(
                f"adapt epoch {ep + 1}/{epochs}  domain accuracy {acc:.2f} (0.5 = aligned)  "
                f"{time.monotonic() - t0:.0f} s"
            )
    for p in net.parameters():
        p.requires_grad_(True)
    with torch.no_grad():
        mean, std = maps()
    return (
        mean.detach(),
        std.detach(),
        {
            "final_domain_accuracy": round(acc, 4),
            "scale_change_max": round(float(log_scale.detach().abs().max()), 4),
        },
    )


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
    metadata = {**metadata, "input": window_input(net.window, metadata["input"]["tick_rate_hz"])}
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
