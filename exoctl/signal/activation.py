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

The delay is rounded to whole samples at the running rate. Because e is clamped to [0, 1] and
the impulse response of two positive real poles is positive, u and a stay within [0, 1].
"""

from __future__ import annotations

import math

import numpy as np

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


class ActivationDynamics:
    """Neural excitation e (n, m) in [0, 1] -> muscle activation a (n, m) in [0, 1].

    ``process`` returns a view into a preallocated buffer, valid until the next call.
    Per-muscle parameters may be given as sequences of length ``n_muscles``; the recursion is
    linear per muscle so scalars and per-muscle values cost the same.
    """

    def __init__(
        self,
        n_muscles: int,
        fs_hz: float,
        *,
        c1: float = -0.5,
        c2: float = -0.5,
        shape_a: float | np.ndarray = -1.0,
        delay_s: float = 0.0,
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
        self.c1 = _check("c1", c1, *C_BOUNDS)
        self.c2 = _check("c2", c2, *C_BOUNDS)
        shape = np.broadcast_to(np.asarray(shape_a, dtype=np.float64), (m,)).copy()
        for i, v in enumerate(shape):
            _check(f"shape_a[{i}]", v, *A_BOUNDS)
        self.shape_a = shape
        self.delay_s = _check("delay_s", delay_s, 0.0, MAX_DELAY_S)
        self.max_chunk = int(max_chunk)

        # coefficients at the running rate (see module docstring)
        d1, d2 = convert_coefficients(self.c1, self.c2, self.reference_rate_hz, self.fs_hz)
        self.c1_at_rate, self.c2_at_rate = d1, d2
        beta1, beta2 = d1 + d2, d1 * d2
        self.alpha = 1.0 + beta1 + beta2
        self.beta1, self.beta2 = beta1, beta2
        # u(t) = alpha e - beta1 u(t-1) - beta2 u(t-2) as one second-order section
        sos_a = np.array([[self.alpha, 0.0, 0.0, 1.0, beta1, beta2]])
        # With one shape factor for every muscle, A multiplies the filter's output rows for free.
        self._uniform_a = bool(np.all(shape == shape[0]))
        gain = float(shape[0]) if self._uniform_a else 1.0
        self._lti = BlockLti(*sos_to_ss(sos_a), m, output_gain=gain)

        self.delay_samples = int(round(self.delay_s * self.fs_hz))
        D = self.delay_samples
        # linear delay line: rows [0, D) are the last D clamped inputs, new input goes after
        self._line = np.zeros((D + self.max_chunk, m))
        self._u = np.zeros((self.max_chunk, m))
        self._inv_den = 1.0 / np.expm1(self.shape_a)

    def reset(self) -> None:
        self._lti.reset()
        self._line[:] = 0.0

    @property
    def time_constants_s(self) -> tuple[float, float]:
        """The two time constants of the linear part (independent of fs_hz by construction)."""
        return (
            -1.0 / (math.log(-self.c1) * self.reference_rate_hz),
            -1.0 / (math.log(-self.c2) * self.reference_rate_hz),
        )

    def process(self, e: np.ndarray) -> np.ndarray:
        """Advance by one chunk e (n, m) of consecutive samples; returns a (n, m), a view."""
        if e.ndim != 2 or e.shape[1] != self.n_muscles:
            raise ValueError(f"expected excitation of shape (n, {self.n_muscles}), got {e.shape}")
        n = e.shape[0]
        if n > self.max_chunk:
            raise ValueError(f"chunk of {n} samples exceeds max_chunk={self.max_chunk}")
        D = self.delay_samples
        # clip maps NaN to NaN: refuse it, it would stick in the recursion for ever
        if not math.isfinite(np.add.reduce(e, axis=None)):
            raise ValueError("excitation chunk contains NaN or infinite values")
        lti = self._lti
        if n <= lti.block:  # a control tick: the filter's own buffers, no extra copies
            if D:
                np.clip(e, 0.0, 1.0, out=self._line[D : D + n])
                np.copyto(lti.input_rows(n), self._line[:n])
                self._line[:D] = self._line[n : n + D]  # numpy handles the overlap
            else:
                np.clip(e, 0.0, 1.0, out=lti.input_rows(n))
            u = lti.advance(n)  # A * u when A is uniform, else u
        else:
            u = self._u[:n]
            np.clip(e, 0.0, 1.0, out=self._line[D : D + n])
            lti.run(self._line[:n], u)
            if D:
                self._line[:D] = self._line[n : n + D]
        # a = (exp(A u) - 1) / (exp(A) - 1), in place (A already applied when uniform)
        if not self._uniform_a:
            np.multiply(u, self.shape_a, out=u)
        np.expm1(u, out=u)
        np.multiply(u, self._inv_den, out=u)
        np.clip(u, 0.0, 1.0, out=u)
        return u
