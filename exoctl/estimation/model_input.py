"""What the estimator hands the torque model each model step, per input kind (preallocated).

The estimator forms a source vector ``[h, a, angles, velocities]`` per tick; a feeder turns the
model's features of it into the model's bound input (``TorqueModel.features``), keeping
whatever state the kind needs from step to step. Nothing here allocates per call: every buffer
is made in ``__init__``, numpy is called with ``out=``.

- :class:`InstantFeeder`: the newest features only.
- :class:`WindowFeeder`: the last N rows. A ring of 2N rows in which every row is written twice,
  at i and i + N, so that the last N rows are always one contiguous slice: one copy into the
  model's input, no wrap-around arithmetic.
- :class:`SumsFeeder`: segment sums of the past (the streaming network). One running sum C of
  the features is carried from step to step, in float64, in a ring of N + 1 steps; the sum of
  the rows aged [a, b) is C(t - a) - C(t - b), so the model's input is one gather and one
  subtraction, however long the window. A non-finite row poisons C: the output is then NaN for
  as long as that row is in the window (as the window form's would be), and C is rebuilt from
  the raw rows (kept in a ring of N) when it has left. C is also rebuilt every
  ``REBASE_STEPS`` steps, so that its magnitude (and its rounding) stays bounded however long
  a session runs.

Start-up, all kinds: until N steps have passed, the past is taken as equal to the first step
(the training windows are padded the same way).
"""

from __future__ import annotations

import math

import numpy as np

from exoctl.estimation.torque_model import TorqueModel


class InstantFeeder:
    def __init__(self, model: TorqueModel, idx: np.ndarray, direct: int = 0) -> None:
        """``direct`` > 0: the features are the source vector's first ``direct`` entries."""
        self._out = model.features[0]
        self._idx = idx
        self._direct = direct

    def push(self, src: np.ndarray) -> None:
        if self._direct:
            np.copyto(self._out, src[: self._direct])
        else:
            np.take(src, self._idx, out=self._out, mode="clip")

    def reset(self) -> None:
        pass


class WindowFeeder:
    def __init__(self, model: TorqueModel, idx: np.ndarray) -> None:
        n = model.info.window_ticks
        self._out = model.features[0]
        self._idx = idx
        self._n = n
        self._ring = np.zeros((2 * n, len(idx)), dtype=np.float32)
        self._row = np.zeros(len(idx), dtype=np.float32)
        self._pos = 0
        self._steps = 0

    def push(self, src: np.ndarray) -> None:
        row, n, ring = self._row, self._n, self._ring
        np.take(src, self._idx, out=row, mode="clip")
        if self._steps == 0:
            ring[:] = row  # start-up: the past is taken as equal to the first step
        else:
            self._pos = (self._pos + 1) % n
            ring[self._pos] = row
            ring[self._pos + n] = row
        self._steps += 1
        # the newest row is at pos + n, so the last n rows, oldest first, are:
        np.copyto(self._out, ring[self._pos + 1 : self._pos + 1 + n])

    def reset(self) -> None:
        self._ring[:] = 0.0
        self._pos = 0
        self._steps = 0


class SumsFeeder:
    REBASE_STEPS = 1 << 20  # ~35 min at 500 Hz

    def __init__(self, model: TorqueModel, idx: np.ndarray) -> None:
        lags = np.asarray(model.info.lags, dtype=np.intp)
        n, nf = int(lags[-1]), len(idx)
        self._out = model.features[0]
        self._idx = idx
        self._n = n
        self._row32 = np.zeros(nf, dtype=np.float32)
        self._row = np.zeros(nf)
        self._raw = np.zeros((n, nf))  # rows by step % n, for a rebuild
        self._c = np.zeros((n + 1, nf))  # running sum by step % (n + 1)
        self._c_rows = list(self._c)  # row views, made once
        self._neg_edges = -np.concatenate(([0], lags))  # the ages whose C the input needs
        self._at = np.zeros(len(lags) + 1, dtype=np.intp)
        self._g = np.zeros((len(lags) + 1, nf))
        self._d = np.zeros((len(lags), nf))
        # C of the virtual past at start-up: C(0) = 0 and C(-k) = -k row at (-k) mod (n + 1),
        # i.e. position j = 1..n holds -(n + 1 - j) row
        self._start_w = -(n + 1.0 - np.arange(1, n + 1))[:, None]
        # rebuild buffers: ring positions of the ages 0..n-1, the rows by age
        self._age = np.arange(n, dtype=np.intp)
        self._at_raw = np.zeros(n, dtype=np.intp)
        self._at_c = np.zeros(n, dtype=np.intp)
        self._by_age = np.zeros((n, nf))
        self._steps = 0
        self._clean_from = 0
        self._dirty = False

    def push(self, src: np.ndarray) -> None:
        row, t, n = self._row, self._steps, self._n
        np.take(src, self._idx, out=self._row32, mode="clip")
        np.copyto(row, self._row32)
        self._raw[t % n] = row
        p = t % (n + 1)
        if t == 0:
            np.multiply(self._start_w, row, out=self._c[1:])  # the virtual past
            self._c[0] = 0.0
            self._raw[:] = row
        else:
            np.add(self._c_rows[(t - 1) % (n + 1)], row, out=self._c_rows[p])
        if not math.isfinite(float(row.sum())):
            self._clean_from = t + n  # the step at which this row has left the window
            self._dirty = True
        elif (self._dirty and t >= self._clean_from) or (t and not t & (self.REBASE_STEPS - 1)):
            self._rebuild(t)
        np.add(self._neg_edges, p, out=self._at)
        np.take(self._c, self._at, axis=0, out=self._g, mode="wrap")
        np.subtract(self._g[:-1], self._g[1:], out=self._d)
        np.copyto(self._out, self._d)
        self._steps = t + 1

    def _rebuild(self, t: int) -> None:
        """C from the raw rows of the window: C(t) = 0, C(t - k) = -(sum of the ages < k)."""
        n = self._n
        np.subtract(t, self._age, out=self._at_raw)
        np.mod(self._at_raw, n, out=self._at_raw)
        np.take(self._raw, self._at_raw, axis=0, out=self._by_age)
        np.cumsum(self._by_age, axis=0, out=self._by_age)
        np.negative(self._by_age, out=self._by_age)
        np.subtract(t - 1, self._age, out=self._at_c)  # C(t - 1 - age) = -(sum of ages <= age)
        np.mod(self._at_c, n + 1, out=self._at_c)
        self._c[t % (n + 1)] = 0.0
        self._c[self._at_c] = self._by_age
        self._dirty = False

    def reset(self) -> None:
        self._c[:] = 0.0
        self._raw[:] = 0.0
        self._steps = 0
        self._clean_from = 0
        self._dirty = False


def make_feeder(model: TorqueModel, idx: np.ndarray, direct: int = 0):
    """The feeder for the model's input kind."""
    kind = model.info.input_kind
    if kind == "window":
        return WindowFeeder(model, idx)
    if kind == "sums":
        return SumsFeeder(model, idx)
    return InstantFeeder(model, idx, direct)
