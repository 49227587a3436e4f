"""The numpy gain step and its guard on the shared real recordings (``../shared/data``).

A known gain drift (per-channel factors injected into a later part of the same walk) must be
found and accepted; a change of task (the same person running instead of walking) must be
refused, whatever the amplitudes say. The estimates run through ONNX (onnxruntime) as the
controller runs them; the EMG model is the lagged ridge to keep this quick (the protocol
measures the network, ``exoctl evaluate --protocol real``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from exoctl.config.schema import load_config
from exoctl.data.calibrate import calibrate_trials, condition_trial
from exoctl.data.dataset import load_dataset
from exoctl.signal.chain import ChainSettings
from exoctl.training.adapt_guard import agreement, judge
from exoctl.training.evaluation import predict
from exoctl.training.matched_gain import estimate_gain, joint_state
from exoctl.training.pipeline import DataSource, trial_tick_sets
from exoctl.training.real_protocol import drift_factors, guard_rates, kinematic_sets
from exoctl.training.workflow import fit_ridge_model, task_change

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CEINMS = REPO / "datasets" / "ceinms-lowerlimb-s06.yaml"

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared real data is not beside the repository ({SHARED})"
)


def _cut(trial, a: float, b: float):
    n = trial.t.size
    sl = slice(int(a * n), int(b * n))
    return dataclasses.replace(
        trial, t=trial.t[sl], emg=trial.emg[sl], torque=trial.torque[sl], angles=trial.angles[sl]
    )


@pytest.fixture(scope="module")
def walk_setup(tmp_path_factory):
    """Models fitted on walk36's first quarter (the reference session)."""
    tmp = tmp_path_factory.mktemp("gain")
    ds = load_dataset(CEINMS)
    walk = ds.load_trial("walk36")
    ref = _cut(walk, 0.0, 0.25)
    cal = calibrate_trials([ref], where=CEINMS).calibration
    cfg = load_config()
    data = trial_tick_sets(cfg, [ref], cal, ds.joints, where=CEINMS, kinematics=True,
                           need_torque=True)  # fmt: skip
    src = [DataSource("dataset", None, ("walk36",), ())]
    emg_model, kin_model = tmp / "ridge.onnx", tmp / "kin.onnx"
    fit_ridge_model(emg_model, data.sets, data, cal, src)
    fit_ridge_model(kin_model, kinematic_sets(data.sets), data, cal, src)

    def ticks(trial, scale=None):
        if scale is not None:
            trial = dataclasses.replace(trial, emg=trial.emg * scale)
        return trial_tick_sets(cfg, [trial], cal, ds.joints, where=CEINMS, kinematics=True,
                               need_torque=True).sets[0]  # fmt: skip

    return ds, walk, ref, data.sets, emg_model, kin_model, ticks


def _adapt(setup, target, drift):
    """The gain step, the guard's verdict and both estimates on ``target`` x ``drift``."""
    ds, _, ref, source, emg_model, kin_model, ticks = setup
    chain = ChainSettings.from_config(load_config())
    gain = estimate_gain(
        condition_trial(ref, chain), joint_state(ref.angles, ref.fs_hz),
        condition_trial(target, chain) * drift, joint_state(target.angles, target.fs_hz),
        ref.muscles,
    )  # fmt: skip
    before = ticks(target, drift)
    after = ticks(target, drift / gain.factors)
    tt = np.arange(before.warm, before.n)
    kin = predict(kin_model, before, tt)
    un, ad = predict(emg_model, before, tt), predict(emg_model, after, tt)
    verdict = judge(
        gain, agreement(un, kin, ds.joints), agreement(ad, kin, ds.joints),
        task_change(source, [before]),
    )  # fmt: skip
    return gain, verdict


def test_a_known_gain_drift_is_found_and_accepted(walk_setup):
    walk = walk_setup[1]
    target = _cut(walk, 0.25, 0.5)  # the next 15 s of the same walk
    m = len(walk.muscles)
    own, v0 = _adapt(walk_setup, target, np.ones(m))
    drift = drift_factors(7, m)
    gain, verdict = _adapt(walk_setup, target, drift)
    assert verdict.accepted, verdict.reasons
    assert gain.coverage > 0.8
    # where the walk itself kept its amplitude (no own change), the injected factor is found
    steady = np.abs(own.raw_factors - 1.0) < 0.1
    assert steady.sum() >= 5
    err = gain.raw_factors[steady] / drift[steady] - 1.0
    assert np.all(np.abs(err) < 0.15), err
    # the factors are applied (none left at 1 by the deadband: every drift here is > 10 %)
    assert np.all(np.abs(drift - 1.0) > 0.1) and np.all(gain.factors != 1.0)


def test_a_change_of_task_is_refused_whatever_the_amplitudes(walk_setup):
    ds = walk_setup[0]
    run = _cut(ds.load_trial("run81"), 0.0, 0.25)
    gain, verdict = _adapt(walk_setup, run, np.ones(len(run.muscles)))
    assert not verdict.accepted
    text = " ".join(verdict.reasons)
    assert "another task or speed" in text
    # the amplitude ratios alone would have been taken as gains up to 8x
    assert gain.raw_factors.max() > 2.5


def test_a_gain_out_of_bounds_is_refused_and_named(walk_setup):
    walk = walk_setup[1]
    target = _cut(walk, 0.25, 0.5)
    drift = np.ones(len(walk.muscles))
    drift[3] = 5.0  # tib_ant_r: a shorted or misplaced electrode, not a gain to correct
    _, verdict = _adapt(walk_setup, target, drift)
    assert not verdict.accepted
    assert any("tib_ant_r x" in r for r in verdict.reasons), verdict.reasons


def test_guard_rates_count_false_accepts_and_false_refusals():
    def case(accepted, un, ad):
        return {
            "network": {"r2_hip": un[0], "r2_knee": un[1]},
            "adapted": {"r2_hip": ad[0], "r2_knee": ad[1]},
            "adaptation": {"verdict": {"accepted": accepted}},
        }

    cases = [
        case(True, (0.8, 0.8), (0.8, 0.78)),  # accepted, knee 0.02 worse: false accept
        case(True, (0.8, 0.8), (0.81, 0.795)),  # accepted, within 0.01: fine
        case(False, (0.8, 0.8), (0.83, 0.8)),  # refused, would gain 0.03: false refusal
        case(False, (0.8, 0.8), (0.83, 0.7)),  # refused, gains on one, loses on the other
    ]
    out = guard_rates(cases)
    assert (out["n"], out["accepted"], out["false_accepts"], out["false_refusals"]) == (4, 2, 1, 1)
