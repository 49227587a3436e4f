"""Carrying a signal sampled at its own rate onto the control-tick grid, causally.

One rule, used offline (``exoctl.offline.features.signal_ticks``: training and evaluation),
live (``exoctl.estimation.estimator``: EMG at a rate that is not a whole multiple of the tick
rate, e.g. 100 Hz envelopes for 500 Hz ticks) and by the replaying firmware
(``exoctl.hil.replay``: a recording's joint angles as telemetry):

    the value a tick at time t sees is the linear interpolation of the samples at
    ``t - 1 / fs``, one source sample late, held at the first and the newest sample.

Linear interpolation needs the sample after the point it interpolates at; one sample late,
that sample has been measured by time t, so a tick never sees a sample that has not arrived.
Offline the whole recording is at hand (``carry_columns``); live, ``TickCarrier`` keeps the
newest samples with their time stamps and answers the same question per tick, without
allocating. A sample that is due but has not arrived yet is not guessed: the newest one
holds, as ``np.interp`` holds past the last sample.
"""

from __future__ import annotations

import numpy as np

__all__ = ["TickCarrier", "carry_columns", "samples_per_tick", "seen_time"]


def seen_time(t: np.ndarray | float, fs_hz: float) -> np.ndarray:
    """The time a tick at ``t`` reads a signal sampled at ``fs_hz`` at (one sample late)."""
    return np.asarray(t, dtype=np.float64) - 1.0 / float(fs_hz)


def carry_columns(t_out: np.ndarray, t_in: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Each column of ``x`` (sampled at ``t_in``) linearly interpolated at ``t_out``, held
    at both ends (``np.interp``)."""
    x = np.asarray(x, dtype=np.float64).reshape(len(t_in), -1)
    return np.column_stack([np.interp(t_out, t_in, x[:, c]) for c in range(x.shape[1])])


class TickCarrier:
    """The live form of ``carry_columns`` at ``seen_time``: push samples with their stamps
    as they arrive, ask for the value a tick at time ``t`` sees.

    Keeps the newest ``history`` samples in preallocated arrays; ``at`` writes into a
    preallocated row and returns it (a view valid until the next call). Before any sample it
    returns zeros (no EMG, no assistance).
    """

    def __init__(self, fs_hz: float, n_channels: int, history: int = 64) -> None:
        if not fs_hz > 0:
            raise ValueError(f"fs_hz must be positive, got {fs_hz!r}")
        self.fs_hz = float(fs_hz)
        self.late_s = 1.0 / self.fs_hz
        self.history = int(history)
        self._t = np.zeros(self.history)
        self._x = np.zeros((self.history, int(n_channels)))
        self._n = 0  # valid rows, the newest last
        self._out = np.zeros(int(n_channels))
        self._diff = np.zeros(int(n_channels))

    def reset(self) -> None:
        self._n = 0
        self._out[:] = 0.0

    def push(self, x: np.ndarray, stamps: np.ndarray) -> None:
        """Append consecutive samples ``x`` (n, channels) stamped ``stamps`` (n,), oldest first."""
        n = x.shape[0]
        if n == 0:
            return
        h = self.history
        if n >= h:
            self._t[:] = stamps[n - h :]
            self._x[:] = x[n - h :]
            self._n = h
            return
        keep = min(self._n, h - n)
        if keep:
            start = self._n - keep
            self._t[:keep] = self._t[start : self._n]  # overlapping copy: numpy handles it
            self._x[:keep] = self._x[start : self._n]
        self._t[keep : keep + n] = stamps
        self._x[keep : keep + n] = x
        self._n = keep + n

    def at(self, t: float) -> np.ndarray:
        """The value a tick at time ``t`` sees (``seen_time``), as ``carry_columns`` gives it."""
        n = self._n
        if n == 0:
            return self._out
        s = t - self.late_s
        ts = self._t
        if s <= ts[0]:
            self._out[:] = self._x[0]
            return self._out
        if s >= ts[n - 1]:
            self._out[:] = self._x[n - 1]
            return self._out
        i = int(np.searchsorted(ts[:n], s, side="right")) - 1
        w = (s - ts[i]) / (ts[i + 1] - ts[i])
        np.subtract(self._x[i + 1], self._x[i], out=self._diff)
        np.multiply(self._diff, w, out=self._diff)
        np.add(self._x[i], self._diff, out=self._out)
        return self._out


def samples_per_tick(fs_hz: float, tick_rate_hz: float) -> int | None:
    """Samples per tick when ``fs_hz`` is a whole multiple of the tick rate (the chain then
    runs sample by sample and a tick reads its newest sample); None when the signal must be
    carried onto the tick grid (``carry_columns``, ``TickCarrier``)."""
    ratio = float(fs_hz) / float(tick_rate_hz)
    if ratio >= 1.0 and abs(ratio - round(ratio)) < 1e-9:
        return int(round(ratio))
    return None
