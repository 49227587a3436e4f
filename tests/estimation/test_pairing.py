"""The pairing rules on their own: the device clock mapping, the kinematics history, the
paired instant (``exoctl.estimation.pairing``). The estimator's use of them, on real data, is
in ``test_carried_emg.py``."""

from __future__ import annotations

import math

import numpy as np

from exoctl.estimation.pairing import DeviceClock, KinematicsHistory, paired_time


def test_device_clock_takes_the_frame_that_waited_least():
    clock = DeviceClock(drift=0.0)
    offset = 1000.0  # host time = device time + offset + transit
    transits = [0.004, 0.0012, 0.003, 0.0002, 0.002]
    for i, tr in enumerate(transits):
        f = 0.002 * i
        got = clock.to_host(f, f + offset + tr)
    assert math.isclose(clock.offset, offset + 0.0002, abs_tol=1e-12)
    assert math.isclose(got, 0.008 + offset + 0.0002, abs_tol=1e-12)


def test_device_clock_follows_a_drifting_device_and_restarts_when_its_time_goes_back():
    clock = DeviceClock(drift=1e-4)
    clock.to_host(0.0, 10.0)  # offset 10
    # the device clock runs 50 ppm slow: h - f grows by 50 us per second
    for s in range(1, 101):
        clock.to_host(float(s), 10.0 + s * (1 + 5e-5))
    assert math.isclose(clock.offset, 10.0 + 100 * 5e-5, abs_tol=1e-9)
    # a firmware restart (or the 32-bit microsecond counter wrapping): a new estimate
    assert math.isclose(clock.to_host(0.001, 500.0), 500.0, abs_tol=1e-12)


def test_the_same_frame_twice_teaches_nothing():
    clock = DeviceClock(drift=1e-4)
    clock.to_host(1.0, 11.0)
    # read again at the next tick: its receipt time is the same, the offset must not rise
    assert clock.to_host(1.0, 11.0) == 11.0
    assert clock.offset == 10.0


def test_kinematics_history_interpolates_between_samples_and_holds_at_the_ends():
    h = KinematicsHistory(2, history=4)
    ang, vel = np.zeros(2), np.zeros(2)
    h.at(0.0, ang, vel)  # nothing yet: unchanged
    assert not ang.any() and h.newest == math.inf
    for i in range(6):  # wraps the ring of 4
        h.push(0.002 * i, np.array([i, 10.0 * i]), np.array([-i, 0.5 * i]))
    h.push(0.004, np.array([99.0, 99.0]), np.array([99.0, 99.0]))  # not newer: ignored
    assert h.newest == 0.010
    h.at(0.007, ang, vel)
    np.testing.assert_allclose(ang, [3.5, 35.0])
    np.testing.assert_allclose(vel, [-3.5, 1.75])
    h.at(0.5, ang, vel)  # after the newest: held, not extrapolated
    np.testing.assert_allclose(ang, [5.0, 50.0])
    h.at(0.0, ang, vel)  # before the oldest kept (0.004): held
    np.testing.assert_allclose(ang, [2.0, 20.0])


def test_paired_time_is_the_newest_instant_both_inputs_cover():
    now = 100.0
    # telemetry 1.5 ms old, EMG covering up to 0.5 ms ago: the telemetry decides
    assert paired_time(now, now - 0.0005, now - 0.0015) == now - 0.0015
    # EMG sample not yet arrived: the EMG decides
    assert paired_time(now, now - 0.004, now - 0.001) == now - 0.004
    # both ahead (EMG covers past the tick): the tick
    assert paired_time(now, now + 0.003, math.inf) == now
    # a stalled input is waited for, however long: never two instants in one estimate
    assert paired_time(now, now - 0.004, now - 0.15) == now - 0.15
    assert paired_time(now, now - 2.0, now - 0.001) == now - 2.0
