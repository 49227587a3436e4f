"""Adversarial adaptation of a trained torque network to a later session (PyTorch, CPU).

``adapt_network``: domain-adversarial adaptation (DANN, Ganin & Lempitsky 2015). A gradient-
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

Split from ``fit`` (training and export), whose window pool and feature statistics it uses.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence

import numpy as np
import torch
from torch.nn import functional as F

from .features import TickSet
from .fit import Progress, _Pool, _stats
from .network import DomainClassifier, MultiScaleNet

__all__ = ["FLOOR_QUANTILE", "RENORMALISE", "adapt_network"]

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
FLOOR_MIN = 0.01  # a floor below this fraction of the feature's RMS is no floor (see below)


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
