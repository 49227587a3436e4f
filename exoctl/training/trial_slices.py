"""Parts of a recorded trial and trials joined end to end, for the real-data protocol.

A part keeps the trial's own clock and every signal cut alike (EMG, moments, angles), so a
training head and a scored tail are the same recording split at one sample.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from exoctl.data.dataset import Trial


def cut_trial(trial: Trial, start: int, stop: int | None) -> Trial:
    """Samples ``start`` to ``stop`` (None: the end) of every signal of ``trial``."""
    sl = slice(start, stop)
    return dataclasses.replace(
        trial,
        t=trial.t[sl],
        emg=trial.emg[sl],
        torque=None if trial.torque is None else trial.torque[sl],
        angles=None if trial.angles is None else trial.angles[sl],
    )


def labelled(values: np.ndarray | None, trial: Trial) -> np.ndarray:
    """``values`` (a trial's moments or angles), refused when the trial has none."""
    if values is None:
        raise ValueError(f"trial {trial.name!r}: no moments or angles; cannot join it")
    return values


def join_trials(trials: Sequence[Trial], name: str) -> Trial:
    """Trials end to end on one clock at the first one's rate (gait cycles of one person)."""
    first = trials[0]
    n = sum(t.t.size for t in trials)
    return dataclasses.replace(
        first,
        name=name,
        t=np.arange(n) / first.fs_hz,
        emg=np.vstack([t.emg for t in trials]),
        torque=np.vstack([labelled(t.torque, t) for t in trials]),
        angles=np.vstack([labelled(t.angles, t) for t in trials]),
    )
