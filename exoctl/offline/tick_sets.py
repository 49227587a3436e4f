"""A data set's trials as tick sets at the control rate, the features the estimator computes.

Training fits on these, ``exoctl evaluate`` scores on them, and the HIL bench's replay score
compares the controller's live estimate with a model's estimate over them (``predict``). Any EMG
rate in: each trial is read at its own rate and carried onto the tick grid by
``exoctl.offline.features.signal_ticks``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from exoctl.config.schema import Config
from exoctl.signal.calibration import Calibration
from exoctl.signal.chain import ChainSettings

from .features import TickSet, TickSpec, signal_ticks

__all__ = ["TickData", "dataset_tick_sets", "emg_signal_of", "trial_tick_sets"]


@dataclass
class TickData:
    """A dataset's trials as tick sets, and what they were made for and from."""

    sets: list[TickSet]
    spec: TickSpec
    kinematics: bool
    emg_signal: dict  # the model metadata's ``emg_signal``: what the training EMG was
    emg_rates_hz: list[float]

    @property
    def body_mass_kg(self) -> float | None:
        return next((s.body_mass_kg for s in self.sets if s.body_mass_kg), None)


def emg_signal_of(chain: ChainSettings, trials: Sequence) -> dict:
    """The ``emg_signal`` metadata entry for trials of one kind (raw, or one stated envelope)."""
    from exoctl.data.dataset import DatasetError

    kinds = sorted({t.emg_kind for t in trials})
    if len(kinds) != 1:
        raise DatasetError(
            f"trials {[t.name for t in trials]} mix raw and enveloped EMG {kinds}: a model "
            "learns from one kind of signal; choose the trials of one kind with --trials"
        )
    envs = {
        json.dumps(t.envelope.model_dump() if t.envelope is not None else None, sort_keys=True)
        for t in trials
    }
    if len(envs) != 1:
        raise DatasetError(
            f"trials {[t.name for t in trials]} state different envelopes ({sorted(envs)}): a "
            "model learns from one kind of signal"
        )
    env = json.loads(envs.pop())
    doc = chain.with_input(kinds[0]).describe(env)
    doc["normalised_by_source"] = bool(all(t.emg_normalised for t in trials))
    return doc


def dataset_tick_sets(
    cfg: Config,
    dataset,
    trial_names: Sequence[str] | None,
    cal: Calibration,
    *,
    kinematics: bool | None,
    need_torque: bool,
    tick_rate_hz: float | None = None,
) -> TickData:
    """Tick sets of a dataset's task trials (all by default) at the control rate.

    Any EMG rate: each trial is read at its own rate and carried to ``tick_rate_hz`` (default
    the configuration's control rate) by ``signal_ticks``; the configuration gives the chain's
    filter and activation settings and the joints' order, never the dataset's rate.
    ``kinematics=None``: use angles and velocities when every selected trial has angles.
    """
    from exoctl.data.dataset import DatasetError

    names = (
        list(trial_names)
        if trial_names
        else [t.name for t in dataset.spec.trials if t.role == "task"]
    )
    if not names:
        raise DatasetError(f"{dataset.path}: no task trial to use")
    trials = [dataset.load_trial(n) for n in names]
    return trial_tick_sets(
        cfg, trials, cal, dataset.joints, where=dataset.path, kinematics=kinematics,
        need_torque=need_torque, tick_rate_hz=tick_rate_hz,
    )  # fmt: skip


def trial_tick_sets(
    cfg: Config,
    trials: Sequence,
    cal: Calibration,
    joints: Sequence[str],
    *,
    where,
    kinematics: bool | None,
    need_torque: bool,
    tick_rate_hz: float | None = None,
) -> TickData:
    """``dataset_tick_sets`` on trials already loaded (or cut, or joined: the real-data
    protocol's splits); ``where`` names the data in messages."""
    from exoctl.data.dataset import DatasetError

    for t in trials:
        bad = {m: int(c) for m, c in zip(t.muscles, np.isnan(t.emg).sum(0), strict=True) if c}
        if bad:
            raise DatasetError(
                f"{where}: trial {t.name}: EMG has NaN samples {bad}; leave the trial "
                "out (--trials) or fix the file"
            )
        if need_torque and t.torque is not None and not np.isfinite(t.torque).all():
            raise DatasetError(
                f"{where}: trial {t.name}: the joint moments have NaN samples; leave the "
                "trial out (--trials) or fix the file"
            )
    if need_torque:
        missing = [t.name for t in trials if t.torque is None]
        if missing:
            raise DatasetError(
                f"{where}: trials {missing} have no joint moments; training needs them"
            )
    have_angles = all(t.angles is not None for t in trials)
    if kinematics is None:
        kinematics = have_angles
    elif kinematics and not have_angles:
        raise DatasetError(
            f"{where}: the model uses joint angles and velocities, but trials "
            f"{[t.name for t in trials if t.angles is None]} have none"
        )
    missing_joints = [j for j in joints if j not in cfg.joint_names]
    if missing_joints:
        raise DatasetError(
            f"{where}: joints {missing_joints} are not in the configuration's "
            f"device.joints ({list(cfg.joint_names)}); use a configuration with them"
        )
    chain = ChainSettings.from_config(cfg)
    spec = TickSpec(
        chain,
        float(tick_rate_hz or cfg.tick_rate_hz),
        tuple(cal.muscles),
        tuple(joints),
    )
    perm = [list(trials[0].muscles).index(m) for m in cal.muscles]
    sets = [
        signal_ticks(
            spec,
            cal,
            t.emg[:, perm],
            t.fs_hz,
            angles=t.angles if kinematics else None,
            torque=t.torque,
            kinematics=kinematics,
            emg_kind=t.emg_kind,
            name=t.name,
            body_mass_kg=t.body_mass_kg,
        )  # fmt: skip
        for t in trials
    ]
    return TickData(
        sets, spec, kinematics, emg_signal_of(chain, trials), sorted({t.fs_hz for t in trials})
    )
