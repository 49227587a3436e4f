"""Streaming EMG conditioning: raw EMG (n, ch) -> normalised neural excitation (n, ch).

Stages (SENIAM / CEINMS practice, see docs/reference): band-pass Butterworth (default 20-450 Hz,
4th-order prototype, i.e. an 8th-order band-pass) -> optional 50/60 Hz IIR notch -> full-wave
rectification -> envelope low-pass (2nd-order Butterworth, default 6 Hz) -> division by each
channel's MVC (in the units of the conditioned EMG, see exoctl.signal.calibration).

Every filter is causal and keeps its state across calls, so feeding a recording in any chunking
gives the same result as feeding it at once (to rounding): online processing must never look
ahead (filtfilt is zero-phase but non-causal, right offline, wrong online). The filters run as
exact block state-space maps (see _lti.py) because scipy's per-call overhead (~20 us) is too
much for a 2-4 sample control tick; they agree with ``scipy.signal.sosfilt`` on the same SOS.

Start-up: on the first chunk after construction or ``reset()`` the band-pass starts in the
steady state of the first sample, so an amplifier's DC offset does not ring through the
envelope for the first half second; the envelope starts at zero (no assistance until EMG
arrives). ``sosfilt(sos, x, zi=sosfilt_zi(sos)[..., None] * x[0])`` reproduces this offline.

Designing the filters needs ``scipy.signal``, which a process keeps for good once imported
(about 65 MiB of Python objects and libraries, for three calls at start-up). The estimator
process, which lives as long as the daemon, calls ``design_apart()``: from then on each new
design is computed by a short-lived interpreter (``python -m exoctl.signal.dsp``) and read
back as the exact float64 arrays scipy gave, so its filters are bit-identical to an in-process
design.
"""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import numpy as np

from exoctl.errors import NonFiniteEmg

from ._lti import BlockLti, sos_to_ss

__all__ = ["EmgConditioner", "design_filters"]

BANDPASS_ORDER = 4
ENVELOPE_ORDER = 2
NOTCH_Q = 30.0


def design_filters(
    fs_hz: float,
    *,
    bandpass_hz: tuple[float, float] = (20.0, 450.0),
    notch_hz: float | None = None,
    envelope_hz: float = 6.0,
) -> tuple[np.ndarray, np.ndarray]:
    """SOS of the pre-rectification stage (band-pass [+ notch]) and of the envelope low-pass.

    Exposed so that offline tools and tests can run exactly the same filters through scipy.
    After ``design_apart()`` the design runs in a short-lived interpreter (once per set of
    arguments in this process).
    """
    fs_hz = float(fs_hz)
    if not (math.isfinite(fs_hz) and fs_hz > 0):
        raise ValueError(f"fs_hz must be a positive number, got {fs_hz!r}")
    nyq = fs_hz / 2.0
    lo, hi = (float(v) for v in bandpass_hz)
    if not (0.0 < lo < hi < nyq):
        raise ValueError(
            f"bandpass_hz {list(bandpass_hz)} must satisfy 0 < low < high < fs/2 = {nyq:g} Hz "
            f"(sampling rate {fs_hz:g} Hz)"
        )
    f0 = None if notch_hz is None else float(notch_hz)
    if f0 is not None and not (0.0 < f0 < nyq):
        raise ValueError(f"notch_hz {f0:g} must be between 0 and fs/2 = {nyq:g} Hz")
    env = float(envelope_hz)
    if not (0.0 < env < nyq):
        raise ValueError(f"envelope_hz {env:g} must be between 0 and fs/2 = {nyq:g} Hz")
    if not _apart:
        return _design(fs_hz, lo, hi, f0, env)
    key = (fs_hz, lo, hi, f0, env)
    if key not in _designed:
        _designed[key] = _design_in_child(key)
    pre, post = _designed[key]
    return pre.copy(), post.copy()


Designs = dict[tuple[float, float, float, float | None, float], tuple[np.ndarray, np.ndarray]]
"""Filter designs by their arguments (sampling rate, band, notch, envelope): pre, post SOS."""
_apart = False
_designed: Designs = {}


def design_apart(known: Designs | None = None) -> None:
    """From now on, design filters in a short-lived interpreter (see the module's doc), but
    for those ``known`` already (``filter_designs`` of a predecessor: a restarted estimator
    process starts without one)."""
    global _apart
    _apart = True
    _designed.update(known or {})


def filter_designs() -> Designs:
    """The designs this process has made apart, by their arguments (for ``design_apart``)."""
    return dict(_designed)


def _design(
    fs_hz: float, lo: float, hi: float, f0: float | None, env: float
) -> tuple[np.ndarray, np.ndarray]:
    from scipy import signal  # here only: see the module's doc

    pre = signal.butter(BANDPASS_ORDER, [lo, hi], btype="bandpass", fs=fs_hz, output="sos")
    if f0 is not None:
        b, a = signal.iirnotch(f0, NOTCH_Q, fs=fs_hz)
        pre = np.vstack([pre, signal.tf2sos(b, a)])
    post = signal.butter(ENVELOPE_ORDER, env, btype="lowpass", fs=fs_hz, output="sos")
    return pre, post


def _design_in_child(
    key: tuple[float, float, float, float | None, float],
) -> tuple[np.ndarray, np.ndarray]:
    """``_design`` run by ``python -m exoctl.signal.dsp``; the arrays come back in .npy form
    (exact float64)."""
    done = subprocess.run(
        [sys.executable, "-m", __name__, json.dumps(key)],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60.0,
        check=False,
    )
    if done.returncode != 0:
        why = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no message"]
        raise RuntimeError(f"filter design process exited with code {done.returncode}: {why[0]}")
    with io.BytesIO(done.stdout) as f:
        return np.load(f, allow_pickle=False), np.load(f, allow_pickle=False)


def _check_mvc(mvc: np.ndarray | None, n_channels: int) -> np.ndarray:
    if mvc is None:
        return np.ones(n_channels)
    arr = np.asarray(mvc, dtype=np.float64).reshape(-1)
    if arr.shape != (n_channels,):
        raise ValueError(f"mvc must have one value per channel ({n_channels}), got {arr.shape}")
    bad = [i for i, v in enumerate(arr) if not (math.isfinite(v) and v > 0)]
    if bad:
        raise ValueError(
            f"mvc must be positive and finite for every channel; bad channels {bad}: "
            f"{[float(arr[i]) for i in bad]}"
        )
    return arr


class EmgConditioner:
    """Raw EMG (n, ch) -> normalised neural excitation (n, ch); causal, carried state.

    ``process`` returns a view into a preallocated buffer that stays valid until the next call
    (copy it if you keep it). Chunks may have any length up to ``max_chunk`` samples.
    With ``enveloped_input=True`` the input is taken as an already conditioned envelope and
    only divided by the MVC.
    """

    def __init__(
        self,
        fs_hz: float,
        n_channels: int,
        *,
        bandpass_hz: tuple[float, float] = (20.0, 450.0),
        notch_hz: float | None = None,
        envelope_hz: float = 6.0,
        mvc: np.ndarray | None = None,
        enveloped_input: bool = False,
        max_chunk: int = 4096,
    ) -> None:
        if int(n_channels) < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        if int(max_chunk) < 1:
            raise ValueError(f"max_chunk must be >= 1, got {max_chunk}")
        self.fs_hz = float(fs_hz)
        self.n_channels = int(n_channels)
        self.max_chunk = int(max_chunk)
        self.enveloped_input = bool(enveloped_input)
        self.mvc = _check_mvc(mvc, self.n_channels)
        self._inv_mvc = 1.0 / self.mvc
        self._out = np.zeros((self.max_chunk, self.n_channels))
        self.pre_sos: np.ndarray | None = None
        self.envelope_sos: np.ndarray | None = None
        if not self.enveloped_input:
            self.pre_sos, self.envelope_sos = design_filters(
                self.fs_hz, bandpass_hz=bandpass_hz, notch_hz=notch_hz, envelope_hz=envelope_hz
            )
            self._pre = BlockLti(*sos_to_ss(self.pre_sos), self.n_channels)
            self._env = BlockLti(*sos_to_ss(self.envelope_sos), self.n_channels)
            self._mid = np.zeros((self.max_chunk, self.n_channels))
        self._fresh = True

    def reset(self) -> None:
        """Forget all filter state (e.g. after a gap in the stream)."""
        if not self.enveloped_input:
            self._pre.reset()
            self._env.reset()
        self._fresh = True

    def process(self, x: np.ndarray) -> np.ndarray:
        """Condition one chunk x (n, ch) of consecutive samples; returns a view (n, ch)."""
        if x.ndim != 2 or x.shape[1] != self.n_channels:
            raise ValueError(f"expected EMG of shape (n, {self.n_channels}), got {x.shape}")
        n = x.shape[0]
        if n > self.max_chunk:
            raise ValueError(f"chunk of {n} samples exceeds max_chunk={self.max_chunk}")
        # A NaN/inf would poison the filter state for good: refuse it before touching state.
        if not math.isfinite(np.add.reduce(x, axis=None)):
            raise NonFiniteEmg("EMG chunk contains NaN or infinite samples")
        if n == 0:
            return self._out[:0]
        inv = self._inv_mvc
        if self.enveloped_input:
            out = self._out[:n]
            np.multiply(x, inv, out=out)
            return out
        # Normalising first is exact: the filters are linear and |c x| = c |x| for c > 0.
        if self._fresh:
            self._pre.set_steady_state(np.asarray(x[0], dtype=np.float64) * inv)
            self._fresh = False
        pre, env = self._pre, self._env
        if n <= pre.block:  # a control tick: no copies, the result is the filter's own view
            np.multiply(x, inv, out=pre.input_rows(n))
            np.abs(pre.advance(n), out=env.input_rows(n))
            return env.advance(n)
        out = self._out[:n]
        mid = self._mid[:n]
        np.multiply(x, inv, out=mid)
        pre.run(mid, mid)
        env.run(mid, out, rectify=True)
        return out


def _main() -> None:
    """``python -m exoctl.signal.dsp '[fs, low, high, notch, envelope]'``: the two SOS arrays
    of ``_design`` on stdout, .npy one after the other (used by ``design_apart``)."""
    fs_hz, lo, hi, f0, env = json.loads(sys.argv[1])
    buf = io.BytesIO()
    for sos in _design(fs_hz, lo, hi, f0, env):
        np.save(buf, sos, allow_pickle=False)
    sys.stdout.buffer.write(buf.getvalue())


if __name__ == "__main__":
    _main()
