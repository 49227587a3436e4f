"""Per-channel "flat or stuck at the rail" flags from the raw EMG, for the safety layer."""

from __future__ import annotations

import math

import numpy as np

from exoctl.config.schema import SafetyConfig


class ChannelMonitor:
    """Per-channel "flat or stuck at the rail" flags from raw EMG chunks, for SafetyInputs.

    A live surface electrode always shows amplifier noise, so a channel whose peak-to-peak
    range stays below ``safety.emg_flat_range`` over a window of ``emg_channel_window_s`` is
    disconnected (flat) or saturated (stuck at the rail, the same picture at a large value).
    Flags are re-evaluated at the end of each window and held in between; the safety layer
    turns a flag that persists for ``emg_timeout_s`` into a fault. Non-finite samples are the
    estimator's and model watchdog's business and raise no flag here.

    ``update`` allocates nothing for chunks of ``dtype`` (float32, as the loop's EMG buffer):
    running per-channel minimum and maximum in preallocated arrays, reductions with ``out=``.
    """

    def __init__(
        self,
        n_channels: int,
        fs_hz: float,
        safety: SafetyConfig,
        dtype: type = np.float32,
        *,
        flat_range: float | None = None,
    ) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise ValueError(f"fs_hz must be a positive number, got {fs_hz!r}")
        self._window = max(2, int(round(safety.emg_channel_window_s * fs_hz)))
        # emg_flat_range is in raw EMG units; already-enveloped, normalised input (values in
        # [0, 1]) needs its own threshold, passed as flat_range.
        self._thr = float(safety.emg_flat_range if flat_range is None else flat_range)
        self.flags = np.zeros(n_channels, dtype=bool)
        # Buffers in the chunks' dtype (the loop's EMG buffer is float32): a mixed-type
        # reduction would allocate a casting buffer.
        self._lo: np.ndarray = np.full(n_channels, np.inf, dtype=dtype)
        self._hi: np.ndarray = np.full(n_channels, -np.inf, dtype=dtype)
        self._cmin: np.ndarray = np.zeros(n_channels, dtype=dtype)
        self._cmax: np.ndarray = np.zeros(n_channels, dtype=dtype)
        self._range: np.ndarray = np.zeros(n_channels, dtype=dtype)
        self._seen = np.zeros(n_channels, dtype=bool)
        self._count = 0

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Feed the samples that arrived this tick (n, channels); return the flags array."""
        if chunk.shape[0] == 0:
            return self.flags
        # the ufuncs' reduce directly: np.min/np.max add a Python-level wrapper per call
        np.minimum.reduce(chunk, axis=0, out=self._cmin)
        np.maximum.reduce(chunk, axis=0, out=self._cmax)
        np.fmin(self._lo, self._cmin, out=self._lo)
        np.fmax(self._hi, self._cmax, out=self._hi)
        self._count += chunk.shape[0]
        if self._count >= self._window:
            np.subtract(self._hi, self._lo, out=self._range)
            np.less(self._range, self._thr, out=self.flags)
            # A window without a finite sample (range -inf) says nothing about the electrode.
            np.greater_equal(self._range, 0.0, out=self._seen)
            np.logical_and(self.flags, self._seen, out=self.flags)
            self._lo.fill(np.inf)
            self._hi.fill(-np.inf)
            self._count = 0
        return self.flags

    def reset(self) -> None:
        self.flags.fill(False)
        self._lo.fill(np.inf)
        self._hi.fill(-np.inf)
        self._count = 0
