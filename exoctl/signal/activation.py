"""Activation dynamics (Lloyd & Besier 2003, as in CEINMS): excitation e -> activation a.

Per muscle, per sample:

    e <- clamp(e, 0, 1), delayed by the electromechanical delay d (``delay_s``)
    u(t) = alpha e(t - d) - beta1 u(t-1) - beta2 u(t-2)
    beta1 = c1 + c2,  beta2 = c1 c2,  alpha = 1 + beta1 + beta2     (unit gain at steady state)
    a(t) = (exp(A u(t)) - 1) / (exp(A) - 1),  shape factor A in (-3, 0)

Rate conversion (why ``reference_rate_hz``): c1 and c2 are per-sample coefficients, so the same
numbers give a different time course at another update rate. The recursion's characteristic
polynomial is z^2 + beta1 z + beta2 = (z + c1)(z + c2): its poles are p_i = -c_i, real and in
(0, 1) for c_i in (-1, 0). We map each pole to its continuous-time counterpart
s_i = ln(p_i) * f_ref and re-discretise at the running rate f: p_i' = exp(s_i / f) =
(-c_i) ** (f_ref / f), i.e. c_i' = -(-c_i) ** (f_ref / f), and recompute alpha for unit steady
gain. The time constants tau_i = -1 / s_i are then the same at every rate (step responses
agree to within one sample period). Bounds (CEINMS calibration bounds) apply to the stated
values: c1, c2 in [-0.995, -0.005], A in [-2.999, -0.001], 0 <= delay_s <= 0.2.

Every parameter may differ per muscle. The delay is rounded to whole samples at the running
rate. Because e is clamped to [0, 1] and
the impulse response of two positive real poles is positive, u and a stay within [0, 1].
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from exoctl.errors import NonFiniteEmg

from ._lti import BlockLti, sos_to_ss

__all__ = ["ActivationDynamics", "convert_coefficients"]

C_BOUNDS = (-0.995, -0.005)
A_BOUNDS = (-2.999, -0.001)
MAX_DELAY_S = 0.2


def convert_coefficients(c1: float, c2: float, reference_rate_hz: float, fs_hz: float):
    """(c1, c2) stated at ``reference_rate_hz`` -> the equivalent (c1, c2) at ``fs_hz``."""
    ratio = float(reference_rate_hz) / float(fs_hz)
    return -((-float(c1)) ** ratio), -((-float(c2)) ** ratio)


def _check(name: str, value: float, lo: float, hi: float) -> float:
    v = float(value)
    if not (math.isfinite(v) and lo <= v <= hi):
        raise ValueError(f"activation {name} = {value!r} is outside the allowed [{lo}, {hi}]")
    return v


def _per_muscle(name: str, value: Any, m: int, lo: float, hi: float) -> np.ndarray:
    """A scalar or one value per muscle -> (m,) float array, every value within [lo, hi]."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim == 0:
        _check(name, float(arr), lo, hi)
        return np.full(m, float(arr))
    if arr.shape != (m,):
        raise ValueError(
            f"activation {name} must be one number or {m} numbers (one per muscle), "
            f"got shape {arr.shape}"
        )
    for i, v in enumerate(arr):
        _check(f"{name}[{i}]", v, lo, hi)
    return arr.copy()


@dataclass
class _Group:
    """Muscles sharing (c1, c2, delay, A): one filter runs all of them."""

    idx: np.ndarray  # muscle indices
    delay: int  # samples
    lti: BlockLti
    buf_in: np.ndarray  # (max_chunk, len(idx)) for chunks longer than the filter's block
    buf_out: np.ndarray


class ActivationDynamics:
    """Neural excitation e (n, m) in [0, 1] -> muscle activation a (n, m) in [0, 1].

    ``process`` returns a view into a preallocated buffer, valid until the next call.
    Every parameter may be one number for all muscles or a sequence of ``n_muscles`` values.
    Muscles with identical parameters share one filter, so the common case (one set for all)
    costs one small matrix product per chunk; the per-muscle values are exposed as (m,) arrays.
    """

    def __init__(
        self,
        n_muscles: int,
        fs_hz: float,
        *,
        c1: float | Sequence[float] = -0.5,
        c2: float | Sequence[float] = -0.5,
        shape_a: float | Sequence[float] = -1.0,
        delay_s: float | Sequence[float] = 0.0,
        reference_rate_hz: float = 1000.0,
        max_chunk: int = 4096,
    ) -> None:
        if int(n_muscles) < 1:
            raise ValueError(f"n_muscles must be >= 1, got {n_muscles}")
        if int(max_chunk) < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        self.n_muscles = m = int(n_muscles)
        self.fs_hz = _check("fs_hz", fs_hz, 1e-9, 1e7)
        self.reference_rate_hz = _check("reference_rate_hz", reference_rate_hz, 1e-9, 1e7)
        self.c1 = _per_muscle("c1", c1, m, *C_BOUNDS)
        self.c2 = _per_muscle("c2", c2, m, *C_BOUNDS)
        self.shape_a = _per_muscle("shape_a", shape_a, m, *A_BOUNDS)
        self.delay_s = _per_muscle("delay_s", delay_s, m, 0.0, MAX_DELAY_S)
        self.max_chunk = int(max_chunk)

        # coefficients at the running rate (see module docstring)
        ratio = self.reference_rate_hz / self.fs_hz
        self.c1_at_rate = -((-self.c1) ** ratio)
        self.c2_at_rate = -((-self.c2) ** ratio)
        self.beta1 = self.c1_at_rate + self.c2_at_rate
        self.beta2 = self.c1_at_rate * self.c2_at_rate
        self.alpha = 1.0 + self.beta1 + self.beta2
        self.delay_samples = np.rint(self.delay_s * self.fs_hz).astype(np.int64)

        groups: dict[tuple[float, float, int, float], list[int]] = {}
        for j in range(m):
            key = (self.c1[j], self.c2[j], int(self.delay_samples[j]), self.shape_a[j])
            groups.setdefault(key, []).append(j)
        self._groups: list[_Group] = []
        for (_c1, _c2, d, a), idx in groups.items():
            j = idx[0]
            # u(t) = alpha e - beta1 u(t-1) - beta2 u(t-2) as one second-order section; the shape
            # factor A multiplies the filter's output rows (free), the state stays u
            sos = np.array([[self.alpha[j], 0.0, 0.0, 1.0, self.beta1[j], self.beta2[j]]])
            lti = BlockLti(*sos_to_ss(sos), len(idx), output_gain=a)
            self._groups.append(
                _Group(
                    np.array(idx, dtype=np.intp),
                    d,
                    lti,
                    np.zeros((self.max_chunk, len(idx))),
                    np.zeros((self.max_chunk, len(idx))),
                )
            )
        self._single = len(self._groups) == 1
        self._dmax = int(self.delay_samples.max())
        # linear delay line: rows [0, dmax) are the last dmax clamped inputs, new input after
        self._line = np.zeros((self._dmax + self.max_chunk, m))
        self._u = np.zeros((self.max_chunk, m))
        self._inv_den = 1.0 / np.expm1(self.shape_a)

    @classmethod
    def from_settings(
        cls, n_muscles: int, fs_hz: float, settings: Any, max_chunk: int = 4096
    ) -> ActivationDynamics:
        """Built from anything with ``c1, c2, shape_a, delay_s, reference_rate_hz`` (the
        configuration's ``estimator.activation``, a calibration's chain settings), so that the
        estimator, the model builders and calibration all run the same dynamics."""
        return cls(
            n_muscles,
            fs_hz,
            c1=settings.c1,
            c2=settings.c2,
            shape_a=settings.shape_a,
            delay_s=settings.delay_s,
            reference_rate_hz=settings.reference_rate_hz,
            max_chunk=max_chunk,
        )

    def reset(self) -> None:
        for g in self._groups:
            g.lti.reset()
        self._line[:] = 0.0

    @property
    def time_constants_s(self) -> tuple[np.ndarray, np.ndarray]:
        """Per muscle, the two time constants of the linear part (independent of fs_hz)."""
        return (
            -1.0 / (np.log(-self.c1) * self.reference_rate_hz),
            -1.0 / (np.log(-self.c2) * self.reference_rate_hz),
        )

    def process(self, e: np.ndarray) -> np.ndarray:
        """Advance by one chunk e (n, m) of consecutive samples; returns a (n, m), a view."""
        if e.ndim != 2 or e.shape[1] != self.n_muscles:
            raise ValueError(f"expected excitation of shape (n, {self.n_muscles}), got {e.shape}")
        n = e.shape[0]
        if n > self.max_chunk:
            raise ValueError(f"chunk of {n} samples exceeds max_chunk={self.max_chunk}")
        # clip maps NaN to NaN: refuse it, it would stick in the recursion for ever
        if not math.isfinite(np.add.reduce(e, axis=None)):
            raise NonFiniteEmg("excitation chunk contains NaN or infinite values")
        D = self._dmax
        line = self._line
        if self._single and n <= self._groups[0].lti.block:
            # a control tick with one parameter set: the filter's own buffers, no extra copies
            lti = self._groups[0].lti
            if D:
                np.clip(e, 0.0, 1.0, out=line[D : D + n])
                np.copyto(lti.input_rows(n), line[:n])
                line[:D] = line[n : n + D]  # numpy handles the overlap
            else:
                np.clip(e, 0.0, 1.0, out=lti.input_rows(n))
            u = lti.advance(n)  # A * u
        else:
            u = self._u[:n]
            np.clip(e, 0.0, 1.0, out=line[D : D + n])
            for g in self._groups:
                src = line[D - g.delay : D - g.delay + n]
                if self._single:
                    g.lti.run(src, u)
                elif n <= g.lti.block:
                    np.take(src, g.idx, axis=1, out=g.lti.input_rows(n))
                    u[:, g.idx] = g.lti.advance(n)
                else:
                    np.take(src, g.idx, axis=1, out=g.buf_in[:n])
                    g.lti.run(g.buf_in[:n], g.buf_out[:n])
                    u[:, g.idx] = g.buf_out[:n]
            if D:
                line[:D] = line[n : n + D]
        # a = (exp(A u) - 1) / (exp(A) - 1), in place (A u comes out of the filters)
        np.expm1(u, out=u)
        np.multiply(u, self._inv_den, out=u)
        np.clip(u, 0.0, 1.0, out=u)
        return u
