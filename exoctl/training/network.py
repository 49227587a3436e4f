"""The torque network: multi-scale temporal branches, fused by self-attention (PyTorch).

The method's "continuous estimation model with multi-scale feature fusion and self-attention":
the same per-tick signals (synergy activations h, muscle activations a and, when used, joint
angles and velocities) seen over several window lengths (e.g. 50, 100, 200, 400 ms) by parallel
branches. Each branch average-pools its window to the same number of steps (a longer window
sees slower structure at a coarser step) and runs two small 1-D convolutions; its output is
one token per scale. Self-attention lets the scales weigh each other; the fused vector ``z`` is
what the domain classifier of the adversarial adaptation looks at, and a head gives one
correction per joint, added to a linear map of the newest tick's features (fitted first, in
closed form; with ``skip_lags`` it sees the window's ticks at those lags, e.g. 0-200 ms, as
the lagged-ridge baseline does). The correction is bounded (tanh): on the simulator's drifted sessions an
unconstrained network extrapolated far worse than a linear model (knee R^2 0.8 vs 0.95), since
one session's gait fills only a thin manifold of the feature space.

Causal by construction: the input is the window of the *past* N ticks, newest last; nothing
reaches beyond the newest tick (the convolutions' edge padding is zeros, not future samples).
Normalisation (per-feature mean/std, per-joint torque scale) lives inside the module as
buffers, so the exported ONNX graph takes raw features and returns N m.

Attention is written out (matmul + softmax) rather than ``nn.MultiheadAttention`` so the ONNX
export is a plain, fixed-opset graph that onnxruntime runs on one thread without fused kernels
of uncertain availability.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DomainClassifier", "GradientReversal", "MultiScaleNet", "grad_reverse"]


class _Branch(nn.Module):
    def __init__(self, n_features: int, length: int, steps: int, channels: int, dim: int) -> None:
        super().__init__()
        if length % steps:
            raise ValueError(f"window length {length} ticks is not a multiple of {steps} steps")
        self.length, self.pool = length, length // steps
        self.conv1 = nn.Conv1d(n_features, channels, 3, padding=1)
        self.conv2 = nn.Conv1d(channels, channels, 3, padding=1)
        self.proj = nn.Linear(channels * steps, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x (B, F, N)
        z = x[:, :, x.shape[2] - self.length :]
        if self.pool > 1:
            z = F.avg_pool1d(z, self.pool, self.pool)
        z = F.gelu(self.conv1(z))
        z = F.gelu(self.conv2(z))
        return self.proj(z.flatten(1))


class MultiScaleNet(nn.Module):
    # Normalisation buffers (register_buffer in __init__), declared so a type checker sees
    # Tensors rather than nn.Module.__getattr__'s "Tensor | Module".
    x_mean: torch.Tensor
    x_std: torch.Tensor
    y_mean: torch.Tensor
    y_std: torch.Tensor
    _skip_rows: torch.Tensor
    training_report: dict[str, Any]  # set by fit.train_network: what it chose and why

    def __init__(
        self,
        n_features: int,
        n_joints: int,
        scales_ticks: Sequence[int],
        *,
        steps: int = 5,
        channels: int = 24,
        dim: int = 32,
        heads: int = 4,
        hidden: int = 64,
        dropout: float = 0.1,
        residual_bound: float = 0.3,
        skip_lags: Sequence[int] | None = None,
    ) -> None:
        super().__init__()
        self.scales = [int(s) for s in scales_ticks]
        self.window = max(self.scales)
        lags = sorted({int(v) for v in skip_lags}) if skip_lags else [0]
        if lags[0] < 0 or lags[-1] >= self.window:
            raise ValueError(f"skip_lags {lags} must lie within the window (0..{self.window - 1})")
        self.skip_lags = lags
        self.n_features, self.n_joints = n_features, n_joints
        self.config: dict[str, Any] = {
            "steps": steps,
            "channels": channels,
            "dim": dim,
            "heads": heads,
            "hidden": hidden,
            "dropout": dropout,
            "residual_bound": residual_bound,
        }
        if skip_lags:
            self.config["skip_lags"] = lags
        self.residual_bound = residual_bound
        self.branches = nn.ModuleList(
            [_Branch(n_features, s, steps, channels, dim) for s in self.scales]
        )
        self.scale_embed = nn.Parameter(torch.zeros(len(self.scales), dim))
        self.heads, self.dh = heads, dim // heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))
        self.fuse = nn.Sequential(
            nn.Linear(len(self.scales) * dim, hidden), nn.GELU(), nn.Dropout(dropout)
        )
        self.head = nn.Linear(hidden, n_joints)
        # Linear path from the newest tick: torque is close to linear in the activations
        # (moment arm x force), and a linear map extrapolates to drifted inputs far better
        # than the nonlinear branches, which then only have to learn the remainder.
        self.skip_in = n_features * len(lags)
        self.skip = nn.Linear(self.skip_in, n_joints)
        self.register_buffer(  # derived from the config: not in the state dict
            "_skip_rows",
            torch.tensor([self.window - 1 - v for v in lags], dtype=torch.long),
            persistent=False,
        )
        self.register_buffer("x_mean", torch.zeros(n_features))
        self.register_buffer("x_std", torch.ones(n_features))
        self.register_buffer("y_mean", torch.zeros(n_joints))
        self.register_buffer("y_std", torch.ones(n_joints))

    def set_normalisation(self, x_mean, x_std, y_mean, y_std) -> None:
        for name, v in (("x_mean", x_mean), ("x_std", x_std), ("y_mean", y_mean), ("y_std", y_std)):
            getattr(self, name).copy_(torch.as_tensor(v, dtype=torch.float32))

    def embed(
        self,
        x: torch.Tensor,
        x_mean: torch.Tensor | None = None,
        x_std: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw window (B, N, F) -> (fused features z (B, hidden), the linear path's input: the
        newest tick normalised (B, F), or with ``skip_lags`` the ticks at those lags (B, F x L)).

        ``x_mean``/``x_std`` override the stored input normalisation (adaptation trains source
        and target batches each with its own statistics).
        """
        mean = self.x_mean if x_mean is None else x_mean
        std = self.x_std if x_std is None else x_std
        x = ((x - mean) / std).transpose(1, 2)
        if len(self.skip_lags) == 1 and self.skip_lags[0] == 0:
            last = x[:, :, -1]
        else:  # lag-major: [all features at lag 0, all at the next lag, ...]
            last = x.index_select(2, self._skip_rows).transpose(1, 2).flatten(1)
        tokens = torch.stack([b(x) for b in self.branches], dim=1) + self.scale_embed
        b, s, d = tokens.shape
        q, k, v = self.qkv(self.norm1(tokens)).chunk(3, dim=-1)
        q = q.reshape(b, s, self.heads, self.dh).transpose(1, 2)
        k = k.reshape(b, s, self.heads, self.dh).transpose(1, 2)
        v = v.reshape(b, s, self.heads, self.dh).transpose(1, 2)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.dh), dim=-1)
        ctx = (att @ v).transpose(1, 2).reshape(b, s, d)
        tokens = tokens + self.out(ctx)
        tokens = tokens + self.ffn(self.norm2(tokens))
        return self.fuse(tokens.flatten(1)), last

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Raw window (B, N, F) -> torque (B, J) in N m."""
        z, last = self.embed(x)
        return (self._residual(z) + self.skip(last)) * self.y_std + self.y_mean

    def _residual(self, z: torch.Tensor) -> torch.Tensor:
        """The branches' correction, bounded (standardised units): on drifted inputs far from
        the training data a network's output can run anywhere; this part cannot."""
        b = self.residual_bound
        return b * torch.tanh(self.head(z) / b) if b > 0 else self.head(z)

    def forward_scaled(
        self,
        x: torch.Tensor,
        x_mean: torch.Tensor | None = None,
        x_std: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(standardised torque, z): what training works with."""
        z, last = self.embed(x, x_mean, x_std)
        return self._residual(z) + self.skip(last), z


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Identity forward, gradient times -lam backward (Ganin & Lempitsky 2015)."""
    return _Reverse.apply(x, lam)


class GradientReversal(nn.Module):
    def __init__(self, lam: float = 1.0) -> None:
        super().__init__()
        self.lam = lam

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lam)


class DomainClassifier(nn.Module):
    """Labelled calibration session (0) vs unlabelled later session (1), from z."""

    def __init__(self, hidden: int, width: int = 64) -> None:
        super().__init__()
        self.grl = GradientReversal()
        self.net = nn.Sequential(
            nn.Linear(hidden, width), nn.GELU(), nn.Linear(width, width), nn.GELU(),
            nn.Linear(width, 1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.grl(z)).squeeze(-1)
