"""Muscle synergies: offline extraction (NMF) and online synergy activations (NNLS).

Orientation (binding for every caller): activations are stored as A (n_samples, n_muscles),
one row per sample, as they come out of the signal chain. The synergy model is

    a(t) ~ W h(t),   i.e.   A.T ~ W @ H,   W (m, k) >= 0,  H (k, n) >= 0,

so W has one row per muscle (in the calibration's muscle order) and one column per synergy, and
H has one row per synergy and one column per sample. ``nmf`` normalises every column of W to
unit Euclidean norm (the scale goes into H), which removes NMF's arbitrary split of scale between
W and H (synergy order is still arbitrary between calibrations).

Online, h(t) = argmin_{h >= 0} ||W h - a(t)||_2 for the fixed W of the calibration. Because W has
full column rank (checked) the solution is unique, so a correct solver agrees with
``scipy.optimize.nnls``. ``OnlineNNLS`` is a Lawson-Hanson active-set solver warm-started from
the previous tick's passive set and solution: consecutive activations are close, so usually the
previous set is still optimal. For every passive set P a (2k, m) matrix is precomputed that maps
a to [h_P; -gradient] (h_P from the pseudo-inverse of W's columns in P, the gradient
W^T (a - W h_P)), so confirming the warm set (h_P >= 0, gradient <= tol outside P) is one
matrix-vector product and one min. When it fails, Lawson-Hanson continues from the previous
solution. All 2^k sets are precomputed for k <= 10 (K is 3-6 in practice); lazily beyond.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from exoctl.errors import NonFiniteEmg

__all__ = ["OnlineNNLS", "SynergyChoice", "choose_k", "nmf", "vaf", "vaf_per_muscle"]

_PRECOMPUTE_MAX_K = 10


class OnlineNNLS:
    """h = argmin ||W h - a||, h >= 0, for a fixed W (m, k); warm-started, preallocated."""

    def __init__(self, W: np.ndarray) -> None:
        W = np.array(W, dtype=np.float64, copy=True, order="C")
        if W.ndim != 2 or W.shape[0] < 1 or W.shape[1] < 1:
            raise ValueError(f"W must be a (muscles, synergies) matrix, got shape {W.shape}")
        if not np.all(np.isfinite(W)):
            raise ValueError("W contains NaN or infinite values")
        m, k = W.shape
        if k > m or np.linalg.matrix_rank(W) < k:
            raise ValueError(
                f"W ({m} muscles x {k} synergies) must have full column rank {k}: the synergy "
                "activations would not be unique"
            )
        self.W = W
        self.n_muscles, self.k = m, k
        self._Wt = np.ascontiguousarray(W.T)
        self._G = W.T @ W
        scale = float(np.linalg.norm(W, 2))
        # optimality tolerance on the gradient W^T (a - W h), relative to ||W|| ||a||
        self._rtol = 1e-11 * scale
        self._pinv: dict[int, np.ndarray] = {}
        self._fast: dict[int, np.ndarray] = {}
        if k <= _PRECOMPUTE_MAX_K:
            for mask in range(1 << k):
                self._fast_for(mask)
        self._h = np.zeros(k)
        self._z = np.zeros(k)
        self._c = np.zeros(k)
        self._g = np.zeros(k)
        self._y = np.zeros(2 * k)
        self._mask = 0
        self.iterations_last = 0
        """Active-set iterations of the last solve (0: the warm set was already optimal)."""

    def _pinv_for(self, mask: int) -> np.ndarray:
        """(k, m): a -> least-squares h on the passive set ``mask``, zero elsewhere."""
        P = self._pinv.get(mask)
        if P is None:
            idx = [j for j in range(self.k) if mask >> j & 1]
            P = np.zeros((self.k, self.n_muscles))
            if idx:
                P[idx, :] = np.linalg.pinv(self.W[:, idx])
            self._pinv[mask] = P
        return P

    def _fast_for(self, mask: int) -> np.ndarray:
        """(2k, m): a -> [h_P ; -(gradient W^T (a - W h_P))], one product for the KKT test."""
        R = self._fast.get(mask)
        if R is None:
            P = self._pinv_for(mask)
            R = np.vstack([P, -(self._Wt - self._G @ P)])
            self._fast[mask] = R
        return R

    def reset(self) -> None:
        self._h[:] = 0.0
        self._mask = 0

    def solve(self, a: np.ndarray) -> np.ndarray:
        """Synergy activations h (k,) for muscle activations a (m,); a view valid until next call."""
        if a.shape != (self.n_muscles,):
            raise ValueError(f"expected activations of shape ({self.n_muscles},), got {a.shape}")
        # optimality tolerance relative to ||W|| ||a||; NaN/inf in a makes it non-finite
        tol = self._rtol * (1.0 + math.sqrt(float(np.dot(a, a))))
        if not math.isfinite(tol):
            raise NonFiniteEmg("activations contain NaN or infinite values")
        # fast path: the previous passive set is still optimal iff its least-squares solution
        # is feasible (h >= 0) and no zero variable's gradient points inwards (g <= tol).
        k = self.k
        y = self._y
        np.matmul(self._fast_for(self._mask), a, out=y)
        if y.min() >= -tol:
            np.maximum(y[:k], 0.0, out=self._h)
            self.iterations_last = 0
            return self._h
        np.matmul(self._Wt, a, out=self._c)
        self._active_set(a, tol)
        return self._h

    def _active_set(self, a: np.ndarray, tol: float) -> None:
        """Lawson-Hanson from the feasible point (previous h, previous passive set)."""
        k = self.k
        c, z, g, h = self._c, self._z, self._g, self._h
        mask = self._mask
        # make the start consistent: h is zero outside the passive set, >= 0 inside
        for j in range(k):
            if not mask >> j & 1 or h[j] < 0.0:
                h[j] = 0.0
        it = 0
        max_it = 30 * k + 30
        while True:
            # inner loop: move towards the unconstrained optimum on the passive set, dropping
            # variables that hit zero, until that optimum is feasible
            while True:
                it += 1
                np.matmul(self._pinv_for(mask), a, out=z)
                neg = [j for j in range(k) if mask >> j & 1 and z[j] <= 0.0]
                if not neg:
                    break
                step, hit = min((h[j] / (h[j] - z[j]), j) for j in neg)
                h += step * (z - h)
                h[hit] = 0.0  # the blocking variable lands exactly on the bound
                for j in range(k):
                    if mask >> j & 1 and h[j] <= 0.0:
                        mask &= ~(1 << j)
                        h[j] = 0.0
                if it > max_it:
                    break
            h[:] = z
            np.matmul(self._G, h, out=g)
            np.subtract(c, g, out=g)
            best, best_j = tol, -1
            for j in range(k):
                if not mask >> j & 1 and g[j] > best:
                    best, best_j = g[j], j
            if best_j < 0 or it > max_it:
                break
            mask |= 1 << best_j
        self._mask = mask
        self.iterations_last = it
        if it > max_it:  # cycling through rounding; never seen, but never return garbage
            h[:] = _cold_nnls(self.W, a)
            self._mask = sum(1 << j for j in range(k) if h[j] > 0.0)


def _cold_nnls(W: np.ndarray, a: np.ndarray) -> np.ndarray:
    from scipy.optimize import nnls

    return nnls(W, a)[0]


# ----------------------------------------------------------------------------- offline NMF


def nmf(
    A: np.ndarray,
    k: int,
    *,
    seed: int = 0,
    max_iter: int = 500,
    tol: float = 1e-6,
) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative factorisation A.T ~ W @ H of activations A (n_samples, m_muscles).

    Returns W (m, k) with unit-norm columns and H (k, n). Hierarchical alternating least
    squares (HALS, Cichocki & Phan 2009) from an NNDSVD-style start with seeded random fill;
    stops after ``max_iter`` sweeps or when the relative error improves by less than ``tol``.
    Deterministic for a given seed.
    """
    A = np.asarray(A, dtype=np.float64)
    if A.ndim != 2:
        raise ValueError(f"A must be (n_samples, n_muscles), got shape {A.shape}")
    n, m = A.shape
    k = int(k)
    if not (1 <= k <= m):
        raise ValueError(f"k must be between 1 and the number of muscles {m}, got {k}")
    if n < k:
        raise ValueError(f"need at least k={k} samples, got {n}")
    if not np.all(np.isfinite(A)):
        raise ValueError("activations contain NaN or infinite values")
    if A.min() < 0:
        raise ValueError(f"activations must be non-negative for NMF (min {A.min():g})")
    X = A.T  # (m, n)
    normX2 = float(np.sum(X * X))
    if normX2 == 0.0:
        raise ValueError("activations are all zero: nothing to factorise")
    W, H = _nndsvd(X, k, np.random.default_rng(seed))
    eps = 1e-12
    prev = math.inf
    for _ in range(max_iter):
        # update H rows: H_j <- max(0, H_j + (W^T X - W^T W H)_j / (W^T W)_jj)
        WtX = W.T @ X
        WtW = W.T @ W
        for j in range(k):
            H[j] = np.maximum(eps, H[j] + (WtX[j] - WtW[j] @ H) / max(WtW[j, j], eps))
        XHt = X @ H.T
        HHt = H @ H.T
        for j in range(k):
            W[:, j] = np.maximum(eps, W[:, j] + (XHt[:, j] - W @ HHt[:, j]) / max(HHt[j, j], eps))
        # error via traces, cheap: ||X - WH||^2 = ||X||^2 - 2 tr(W^T X H^T) + tr(W^T W H H^T)
        err2 = normX2 - 2.0 * float(np.sum(W * XHt)) + float(np.sum((W.T @ W) * HHt))
        err = math.sqrt(max(err2, 0.0) / normX2)
        if prev - err < tol * max(prev, 1e-300) and math.isfinite(prev):
            break
        prev = err
    norms = np.linalg.norm(W, axis=0)
    norms[norms == 0] = 1.0
    W /= norms
    H *= norms[:, None]
    return W, H


def _nndsvd(X: np.ndarray, k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """NNDSVD initialisation (Boutsidis & Gallopoulos 2008), zeros filled with small noise."""
    U, S, Vt = np.linalg.svd(X, full_matrices=False)
    m, n = X.shape
    W = np.zeros((m, k))
    H = np.zeros((k, n))
    W[:, 0] = np.sqrt(S[0]) * np.abs(U[:, 0])
    H[0] = np.sqrt(S[0]) * np.abs(Vt[0])
    for j in range(1, k):
        x, y = U[:, j], Vt[j]
        xp, xn = np.maximum(x, 0), np.maximum(-x, 0)
        yp, yn = np.maximum(y, 0), np.maximum(-y, 0)
        np_, nn_ = np.linalg.norm(xp) * np.linalg.norm(yp), np.linalg.norm(xn) * np.linalg.norm(yn)
        if np_ >= nn_:
            u, v, s = (
                xp / max(np.linalg.norm(xp), 1e-300),
                yp / max(np.linalg.norm(yp), 1e-300),
                np_,
            )
        else:
            u, v, s = (
                xn / max(np.linalg.norm(xn), 1e-300),
                yn / max(np.linalg.norm(yn), 1e-300),
                nn_,
            )
        W[:, j] = np.sqrt(S[j] * s) * u
        H[j] = np.sqrt(S[j] * s) * v
    avg = float(X.mean())
    W[W < 1e-9] = avg * 0.01 * rng.random(int(np.count_nonzero(W < 1e-9)))
    H[H < 1e-9] = avg * 0.01 * rng.random(int(np.count_nonzero(H < 1e-9)))
    return W, H


def vaf(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> float:
    """Variance accounted for, 1 - ||A.T - W H||^2 / ||A.T||^2 (uncentred, as in synergy work)."""
    X = np.asarray(A, dtype=np.float64).T
    R = X - W @ H
    den = float(np.sum(X * X))
    if den == 0.0:
        raise ValueError("activations are all zero: VAF is undefined")
    return 1.0 - float(np.sum(R * R)) / den


def vaf_per_muscle(A: np.ndarray, W: np.ndarray, H: np.ndarray) -> np.ndarray:
    """VAF of each muscle's row (m,); a muscle that is never active gets NaN."""
    X = np.asarray(A, dtype=np.float64).T
    R = X - W @ H
    den = np.sum(X * X, axis=1)
    out = np.full(X.shape[0], np.nan)
    ok = den > 0
    out[ok] = 1.0 - np.sum(R * R, axis=1)[ok] / den[ok]
    return out


@dataclass(frozen=True)
class SynergyChoice:
    """Result of ``choose_k``: the chosen K, its factors, and the VAF curve."""

    k: int
    W: np.ndarray
    H: np.ndarray
    vaf: float
    vaf_by_k: dict[int, float]
    vaf_muscle_by_k: dict[int, np.ndarray] = field(repr=False)
    reached_threshold: bool


def choose_k(
    A: np.ndarray,
    vaf_threshold: float = 0.9,
    k_max: int | None = None,
    *,
    k: int | None = None,
    seed: int = 0,
    max_iter: int = 500,
) -> SynergyChoice:
    """Smallest K whose VAF reaches ``vaf_threshold`` (or the fixed ``k``), with VAF per K.

    Every K from 1 to ``k_max`` (default: number of muscles, at most 8) is factorised so that
    the whole VAF curve can be reported; when no K reaches the threshold, K = k_max and
    ``reached_threshold`` is False (the caller warns).
    """
    A = np.asarray(A, dtype=np.float64)
    m = A.shape[1] if A.ndim == 2 else 0
    if not 0.0 < vaf_threshold <= 1.0:
        raise ValueError(f"vaf_threshold must be in (0, 1], got {vaf_threshold}")
    if k_max is None:
        k_max = min(m, 8) if k is None else k
    if k is not None and not 1 <= k <= m:
        raise ValueError(f"fixed k={k} must be between 1 and the number of muscles {m}")
    k_max = max(int(k_max), k or 1)
    if not 1 <= k_max <= m:
        raise ValueError(f"k_max must be between 1 and the number of muscles {m}, got {k_max}")
    results: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    vaf_by_k: dict[int, float] = {}
    vaf_m: dict[int, np.ndarray] = {}
    for kk in range(1, k_max + 1):
        W, H = nmf(A, kk, seed=seed, max_iter=max_iter)
        results[kk] = (W, H)
        vaf_by_k[kk] = vaf(A, W, H)
        vaf_m[kk] = vaf_per_muscle(A, W, H)
    if k is not None:
        chosen, reached = k, vaf_by_k[k] >= vaf_threshold
    else:
        hits = [kk for kk in range(1, k_max + 1) if vaf_by_k[kk] >= vaf_threshold]
        chosen, reached = (hits[0], True) if hits else (k_max, False)
    W, H = results[chosen]
    return SynergyChoice(
        k=chosen,
        W=W,
        H=H,
        vaf=vaf_by_k[chosen],
        vaf_by_k=vaf_by_k,
        vaf_muscle_by_k=vaf_m,
        reached_threshold=reached,
    )
