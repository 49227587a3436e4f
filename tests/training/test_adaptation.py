"""Adaptation improves a drifted session over no adaptation, using the session's EMG only."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from exoctl.estimation.metrics import joint_metrics
from exoctl.hil.drift import Drift, DriftedPatient
from exoctl.training.adapt import FLOOR_MIN, FLOOR_QUANTILE, adapt_network
from exoctl.training.features import calibrate_recordings, tick_features, windows
from exoctl.training.fit import torch_predict, train_network

SCALES = [10, 20, 40]
ARCH = {"channels": 8, "dim": 16, "hidden": 16, "heads": 2}


def _mean_r2(net, ts, ticks, joints):
    yhat = torch_predict(net, windows(ts.X, ticks, net.window))
    return float(np.mean([m["r2"] for m in joint_metrics(ts.y[ticks], yhat, joints).values()]))


@pytest.fixture(scope="module")
def drifted(cfg):
    muscles, joints = cfg.emg.muscles, cfg.joint_names
    m = len(muscles)
    none = Drift(0.0, np.eye(m), np.ones(m), 0.0, 60.0, 0.0, 0.0, {})
    # a later session: electrodes re-applied, amplitudes 0.55x..1.8x, and fatigue
    gain = np.exp(np.random.default_rng(11).uniform(-0.6, 0.6, m))
    later = dataclasses.replace(none, severity=1.0, gain=gain, fatigue=0.25, fatigue_ramp_s=10.0)
    src = DriftedPatient(muscles, joints, drift=none, seed=6, session=0).generate(18.0)
    tgt = DriftedPatient(muscles, joints, drift=later, seed=6, session=1).generate(18.0)
    cal = calibrate_recordings(cfg, [src.emg], k=3)
    s = tick_features(cfg, cal, src.emg, angles=None, torque=src.torque, kinematics=False)
    t = tick_features(cfg, cal, tgt.emg, angles=None, torque=tgt.torque, kinematics=False)
    net = train_network([s], SCALES, epochs=3, samples_per_epoch=5000, seed=1, **ARCH)
    half = t.n // 2
    unlabelled = dataclasses.replace(t, X=t.X[:half], y=None)  # the torques are never given
    return cal, s, t, net, unlabelled


def test_adaptation_recovers_a_session_with_changed_electrode_gains(cfg, drifted):
    cal, s, t, net, unlabelled = drifted
    muscles, joints = cfg.emg.muscles, cfg.joint_names
    m, half = len(muscles), unlabelled.n
    adapted, report = adapt_network(
        net, [s], [unlabelled], n_emg_features=cal.k + m, epochs=2, samples_per_epoch=3000
    )
    scored = np.arange(half, t.n)
    before = _mean_r2(net, t, scored, joints)
    after = _mean_r2(adapted, t, scored, joints)
    same_session = _mean_r2(net, s, np.arange(s.warm, s.n), joints)
    assert same_session > 0.95
    assert before < same_session - 0.03, (before, same_session)  # the drift does hurt
    assert after > before + 0.02, (before, after, report)
    # the adapted model changed only how the EMG features are scaled, not its weights
    for (n1, p1), (_n2, p2) in zip(
        net.state_dict().items(), adapted.state_dict().items(), strict=True
    ):
        if n1 not in ("x_mean", "x_std"):
            assert np.array_equal(p1.numpy(), p2.numpy()), n1


def test_dann_trains_the_feature_extractor_against_the_domain_classifier(cfg, drifted):
    cal, s, _, net, unlabelled = drifted
    adapted, report = adapt_network(
        net, [s], [unlabelled], n_emg_features=cal.k + len(cal.muscles), epochs=1,
        samples_per_epoch=1000, mode="dann", renormalise="none",
    )  # fmt: skip
    assert report["mode"] == "dann" and 0.0 <= report["final_domain_accuracy"] <= 1.0
    changed = [
        n for (n, p1), p2 in zip(net.state_dict().items(), adapted.state_dict().values(), strict=True)
        if not np.array_equal(p1.numpy(), p2.numpy())
    ]  # fmt: skip
    assert any(n.startswith("branches.") for n in changed)  # the extractor itself moved
    assert "x_mean" not in changed  # no re-estimated statistics in this variant


def test_floor_rescaling_takes_the_gain_and_leaves_weaker_bursts_alone(cfg, drifted):
    """A later session whose channels gained amplitude and whose bursts got weaker (the patient's
    own change): the floor ratio recovers the gain; the RMS ratio takes part of the weakness
    for a lower gain (why "floor" is the default)."""
    cal, s, _, net, _ = drifted
    n = cal.k + len(cal.muscles)
    gain = np.exp(np.random.default_rng(3).uniform(-0.5, 0.5, n))
    X = s.X.astype(np.float64)
    floor = np.percentile(X[s.warm :, :n], FLOOR_QUANTILE, axis=0)
    emg = X[:, :n]
    weaker = np.where(emg > floor, floor + 0.6 * (emg - floor), emg)  # bursts at 60 %
    later = dataclasses.replace(
        s, X=np.hstack([weaker * gain, X[:, n:]]).astype(np.float32), y=None
    )
    factors = {}
    for how in ("floor", "scale"):
        adapted, report = adapt_network(
            net, [s], [later], n_emg_features=n, renormalise=how, adversarial=False
        )
        assert report["renormalised"] == how
        factors[how] = (adapted.x_std / net.x_std).numpy()[:n]
        assert np.allclose((adapted.x_std / net.x_std).numpy()[n:], 1.0)  # kinematics kept
    has_floor = floor > FLOOR_MIN * np.sqrt(np.mean(X[s.warm :, :n] ** 2, axis=0))
    assert has_floor[cal.k :].all()  # every muscle activation has a resting floor
    assert np.allclose(factors["floor"][has_floor], gain[has_floor], rtol=2e-3)
    assert np.all(factors["scale"][has_floor] < gain[has_floor] * 0.9)
    # a feature with no floor (a synergy activation at zero much of the time): the RMS ratio
    assert np.allclose(factors["floor"][~has_floor], factors["scale"][~has_floor])


def test_unknown_renormalisation_is_refused(cfg, drifted):
    cal, s, _, net, unlabelled = drifted
    with pytest.raises(ValueError, match="allowed floor, scale, full, none"):
        adapt_network(net, [s], [unlabelled], n_emg_features=cal.k, renormalise="median")
