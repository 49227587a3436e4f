"""Per-channel EMG gain from a later session's warm-up, estimated on matched conditions (numpy).

Why matched conditions: an electrode, skin or fatigue change multiplies a channel's whole
envelope by one factor; a change of speed, task or recovery changes what the muscle does at
each moment of the stride. Comparing amplitudes over a whole session cannot tell the two
apart (a patient who walks faster reads as a gain rise). Comparing them only where the joints
are in the same state (the same hip and knee angle and the same direction and speed of
motion, which the exoskeleton's encoders measure and the EMG gain cannot touch) leaves mostly
the gain: in each such cell the muscle does about the same work on both days. Three things
say when that is not so, and the guard (``exoctl.training.adapt_guard``) refuses:

- ``coverage``: the share of the warm-up that falls in cells the reference also visited. A
  change of task or speed moves the joints elsewhere (walking and running share few cells).
- ``spread``: how much the per-cell log ratios of one channel disagree. One gain gives one
  ratio everywhere; a change of behaviour gives ratios that vary with the stride's phase.
- the factors themselves, bounded (``FACTOR_BOUNDS``).

The factors multiply the calibration's MVC (``apply_gain``): the whole chain then sees the
envelope the reference session would have given, activations and synergies included.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

__all__ = [
    "ANGLE_BINS",
    "DEADBAND",
    "FACTOR_BOUNDS",
    "MIN_CELL_SAMPLES",
    "VELOCITY_BINS",
    "GainEstimate",
    "estimate_gain",
    "joint_state",
]

ANGLE_BINS = 5  # per joint angle, at the reference's quantiles
VELOCITY_BINS = 3  # per joint velocity, at the reference's quantiles
MIN_CELL_SAMPLES = 10  # a cell counts when both sessions have this many samples in it
QUIET_FRACTION = 0.05  # cells where the reference's mean is below this share of its 95th pct
FACTOR_BOUNDS = (0.4, 2.5)  # outside: an electrode problem, not a gain to correct
DEADBAND = 0.10  # |factor - 1| below this is left at 1: within the day-to-day scatter


@dataclass
class GainEstimate:
    """What ``estimate_gain`` found; ``factors`` = target envelope / reference envelope."""

    muscles: tuple[str, ...]
    factors: np.ndarray  # (m,) applied factors (deadband applied)
    raw_factors: np.ndarray  # (m,) before the deadband
    spread: np.ndarray  # (m,) weighted MAD of the per-cell log ratios
    coverage: float  # share of target samples in matched cells
    cells: int  # matched cells used
    samples: tuple[int, int]  # (reference, target) samples
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "muscles": list(self.muscles),
            "factors": [round(float(f), 4) for f in self.factors],
            "raw_factors": [round(float(f), 4) for f in self.raw_factors],
            "spread": [round(float(s), 4) for s in self.spread],
            "coverage": round(float(self.coverage), 4),
            "cells": int(self.cells),
            "samples": list(self.samples),
            "notes": list(self.notes),
        }


def joint_state(angles: np.ndarray, fs_hz: float) -> np.ndarray:
    """(n, 2j) joint angles and their velocities (central differences), per sample."""
    a = np.asarray(angles, dtype=np.float64)
    return np.hstack([a, np.gradient(a, 1.0 / fs_hz, axis=0)])


def _edges(x: np.ndarray, bins: int) -> np.ndarray:
    return np.quantile(x, np.linspace(0, 1, bins + 1)[1:-1])


def _cells(state: np.ndarray, edges: Sequence[np.ndarray]) -> np.ndarray:
    idx = np.zeros(len(state), dtype=np.int64)
    for c, e in enumerate(edges):
        idx = idx * (len(e) + 1) + np.searchsorted(e, state[:, c])
    return idx


def _weighted_median(x: np.ndarray, w: np.ndarray) -> float:
    o = np.argsort(x)
    cw = np.cumsum(w[o])
    return float(x[o][np.searchsorted(cw, 0.5 * cw[-1])])


def estimate_gain(
    ref_env: np.ndarray,
    ref_state: np.ndarray,
    tgt_env: np.ndarray,
    tgt_state: np.ndarray,
    muscles: Sequence[str],
    *,
    deadband: float = DEADBAND,
) -> GainEstimate:
    """Per-channel gain of ``tgt_env`` against ``ref_env`` (envelopes (n, m), one rate),
    compared in cells of joint state (``joint_state``: angles then velocities)."""
    ref_env = np.asarray(ref_env, dtype=np.float64)
    tgt_env = np.asarray(tgt_env, dtype=np.float64)
    m = ref_env.shape[1]
    if tgt_env.shape[1] != m or len(muscles) != m:
        raise ValueError(f"reference has {m} channels, target {tgt_env.shape[1]}")
    j2 = ref_state.shape[1]
    bins = [ANGLE_BINS] * (j2 // 2) + [VELOCITY_BINS] * (j2 - j2 // 2)
    edges = [_edges(ref_state[:, c], b) for c, b in enumerate(bins)]
    rc, tc = _cells(ref_state, edges), _cells(tgt_state, edges)
    n_cells = int(np.prod([b for b in bins]))
    nr = np.bincount(rc, minlength=n_cells)
    nt = np.bincount(tc, minlength=n_cells)
    ok = (nr >= MIN_CELL_SAMPLES) & (nt >= MIN_CELL_SAMPLES)
    coverage = float(ok[tc].mean()) if len(tc) else 0.0
    notes: list[str] = []
    raw = np.ones(m)
    spread = np.full(m, np.inf)
    if ok.sum() >= 3:
        sr = np.stack([np.bincount(rc, ref_env[:, i], n_cells) for i in range(m)], 1)
        st = np.stack([np.bincount(tc, tgt_env[:, i], n_cells) for i in range(m)], 1)
        mr = sr[ok] / nr[ok, None]
        mt = st[ok] / nt[ok, None]
        w = np.minimum(nr[ok], nt[ok]).astype(np.float64)
        loud = np.quantile(ref_env, 0.95, axis=0) * QUIET_FRACTION
        for i in range(m):
            use = (mr[:, i] > loud[i]) & (mt[:, i] > 0)
            if use.sum() < 3:
                notes.append(f"{muscles[i]}: too few active matched cells; left at 1")
                continue
            lr = np.log(mt[use, i] / mr[use, i])
            med = _weighted_median(lr, w[use])
            raw[i] = float(np.exp(med))
            spread[i] = _weighted_median(np.abs(lr - med), w[use])
    else:
        notes.append("fewer than 3 matched cells: the warm-up and the reference do not overlap")
    factors = np.where(np.abs(raw - 1.0) < deadband, 1.0, raw)
    return GainEstimate(
        tuple(muscles), factors, raw, spread, coverage, int(ok.sum()),
        (len(ref_env), len(tgt_env)), notes,
    )  # fmt: skip
