"""The assist law: gains, ramps, smoothing and bad estimates."""

from __future__ import annotations

import math

import numpy as np
import pytest

from exoctl.config.schema import load_config
from exoctl.control.assist import AssistLaw

CFG = load_config()
RATE = 500.0
DT = 1.0 / RATE
JOINTS = CFG.joint_names
N = len(JOINTS)


def make(**control) -> AssistLaw:
    c = CFG.control.model_copy(update=control) if control else CFG.control
    return AssistLaw(JOINTS, c, RATE)


def test_ramp_in_is_linear_over_ramp_in_s_and_reaches_gain_times_estimate():
    law = make(ramp_in_s=0.5, ramp_out_s=0.2, smoothing_hz=None)
    est = np.full(N, 10.0)
    out = np.zeros(N)
    gain = np.array([CFG.control.assist_gain[j] for j in JOINTS])
    assert not law.update(est, 0.0, out).any()  # before start: nothing
    law.start(1.0)
    assert law.active
    np.testing.assert_allclose(law.update(est, 1.25, out), 0.5 * gain * 10.0)
    np.testing.assert_allclose(law.update(est, 1.5, out), gain * 10.0)
    np.testing.assert_allclose(law.update(est, 9.0, out), gain * 10.0)


def test_stop_ramps_out_and_a_quick_restart_continues_without_a_step():
    law = make(ramp_in_s=1.0, ramp_out_s=0.2, smoothing_hz=None)
    est = np.full(N, 10.0)
    out = np.zeros(N)
    law.start(0.0)
    law.stop(2.0)
    assert not law.active
    assert law.session_factor(2.1) == pytest.approx(0.5)
    law.start(2.1)  # from 0.5 back up at 1/ramp_in_s per second
    assert law.session_factor(2.1) == pytest.approx(0.5)
    assert law.session_factor(2.35) == pytest.approx(0.75)
    law.stop(5.0)
    assert not law.update(est, 5.2 + 1e-9, out).any()


def test_zero_ramp_times_switch_at_once():
    law = make(ramp_in_s=0.0, ramp_out_s=0.0)
    law.start(0.0)
    assert law.session_factor(0.0) == 1.0
    law.stop(0.1)
    assert law.session_factor(0.1) == 0.0


def test_gain_change_ramps_from_the_level_in_force():
    law = make(ramp_in_s=0.4, ramp_out_s=0.2)
    law.start(0.0)
    law.set_gain({"hip_l": 0.7}, 1.0)
    assert law.gains["hip_l"] == 0.7  # the target
    assert law.gains_at(1.2)["hip_l"] == pytest.approx(0.5)  # 0.3 -> 0.7 over 0.4 s
    assert law.gains_at(1.2)["knee_l"] == pytest.approx(0.3)  # untouched
    law.set_gain({"hip_l": 0.1}, 1.2)  # lowering mid-ramp: from 0.5, over ramp_out_s
    assert law.gains_at(1.3)["hip_l"] == pytest.approx(0.3)
    assert law.gains_at(1.4)["hip_l"] == pytest.approx(0.1)


@pytest.mark.parametrize(
    "gains, match",
    [
        ({"hip_l": 1.5}, "within \\[0, 1\\]"),
        ({"hip_l": -0.1}, "within \\[0, 1\\]"),
        ({"hip_l": math.nan}, "within \\[0, 1\\]"),
        ({"ankle": 0.2}, "unknown joint 'ankle'"),
        ({"hip_l": "lots"}, "must be a number"),
    ],
)
def test_bad_gain_is_refused_and_changes_nothing(gains, match):
    law = make()
    before = law.gains
    with pytest.raises(ValueError, match=match):
        law.set_gain({"knee_r": 0.9, **gains}, 0.0)
    assert law.gains == before


def test_smoothing_is_a_first_order_low_pass_at_smoothing_hz():
    fc = 5.0
    law = make(ramp_in_s=0.0, smoothing_hz=fc)
    law.start(0.0)
    est = np.full(N, 10.0)
    out = np.zeros(N)
    tau = 1.0 / (2 * math.pi * fc)
    steps = round(tau / DT)
    for k in range(1, steps + 1):
        law.update(est, k * DT, out)
    gain = CFG.control.assist_gain["hip_l"]
    # After one time constant a first-order filter is at 1 - 1/e of the step.
    assert out[0] == pytest.approx(gain * 10.0 * (1 - math.exp(-steps * DT / tau)), rel=1e-9)
    assert out[0] == pytest.approx(gain * 10.0 * (1 - 1 / math.e), rel=0.02)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e6])
def test_bad_estimate_gives_zero_for_that_joint_and_does_not_poison_the_filter(bad):
    law = make(ramp_in_s=0.0, smoothing_hz=2.0)
    law.start(0.0)
    est = np.full(N, 10.0)
    out = np.zeros(N)
    for k in range(1, 2000):
        law.update(est, k * DT, out)
    settled = out.copy()
    est[1] = bad
    law.update(est, 2000 * DT, out)
    assert np.isfinite(out).all()
    assert out[1] == 0.0
    assert out[0] == pytest.approx(settled[0])
    est[1] = 10.0
    law.update(est, 2001 * DT, out)
    assert 0.0 < out[1] < settled[1]  # restarts from zero, finite


def test_construction_errors_name_the_problem():
    with pytest.raises(ValueError, match="no gain for joint"):
        AssistLaw(("hip_l", "ankle_l"), CFG.control, RATE)
    with pytest.raises(ValueError, match="rate_hz"):
        AssistLaw(JOINTS, CFG.control, -1.0)
    with pytest.raises(ValueError, match="unique"):
        AssistLaw(("hip_l", "hip_l"), CFG.control, RATE)
    with pytest.raises(ValueError, match="finite"):
        make().start(math.nan)
