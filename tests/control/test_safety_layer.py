"""Deterministic checks of each safety rule, the state machine, events and allocation."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from exoctl.config.schema import ControlConfig, JointConfig, SafetyConfig, load_config
from exoctl.control.assist import AssistLaw
from exoctl.control.safety import FaultEvent, SafetyInputs, SafetyLayer, SafetyState

CFG = load_config()
RATE = 500.0
DT = 1.0 / RATE
N = len(CFG.device.joints)
TMAX = np.array([j.torque_limit_nm for j in CFG.device.joints])
STEP = np.array([j.rate_limit_nm_per_s for j in CFG.device.joints]) * DT


class Rig:
    """A safety layer driven tick by tick at the nominal rate."""

    def __init__(self, safety: SafetyConfig | None = None) -> None:
        self.cfg = safety or CFG.safety
        self.layer = SafetyLayer(CFG.device.joints, self.cfg, RATE)
        self.inp = SafetyInputs.healthy(N, now=10.0)
        self.inp.angles[:] = 0.5
        self.out = np.zeros(N)
        self.now = 10.0

    def tick(self, req, est=None, dt: float = DT) -> np.ndarray:
        self.now += dt
        self.inp.now = self.now
        r = np.broadcast_to(np.asarray(req, dtype=float), (N,)).copy()
        e = r if est is None else np.broadcast_to(np.asarray(est, dtype=float), (N,)).copy()
        self.layer.apply(r, e, self.inp, self.out)
        return self.out.copy()

    def run(self, req, ticks: int) -> np.ndarray:
        for _ in range(ticks):
            self.tick(req)
        return self.out.copy()

    def age(self, dt: float = DT) -> None:
        """Advance the input ages as if the streams had stopped."""
        self.inp.emg_age_s += dt


def test_rate_limit_ramps_up_and_magnitude_is_capped():
    rig = Rig()
    first = rig.tick(100.0)
    np.testing.assert_allclose(first, STEP)
    out = rig.run(100.0, 200)
    np.testing.assert_allclose(out, TMAX)  # capped at the torque limit, never beyond


def test_rate_limit_applies_to_normal_decreases_and_sign_changes():
    rig = Rig()
    rig.run(20.0, 100)
    out = rig.tick(-20.0)
    np.testing.assert_allclose(out, 20.0 - STEP)


@pytest.mark.parametrize("angle, sign, allowed", [(1.80, +1, 0.0), (2.5, +1, 0.0), (-0.6, -1, 0.0)])
def test_no_torque_pushes_beyond_the_range_of_motion(angle, sign, allowed):
    rig = Rig()
    rig.run(sign * 20.0, 100)
    rig.inp.angles[:2] = angle  # hips at/beyond an end; knees stay inside
    out = rig.tick(sign * 20.0)
    assert (out[:2] == allowed).all()  # removed at once (zeroing is always permitted)
    np.testing.assert_allclose(out[2:], sign * 20.0)
    # Torque pulling back into the range is still allowed.
    rig2 = Rig()
    rig2.inp.angles[:2] = angle
    assert (np.sign(rig2.tick(-sign * 5.0)[:2]) == -sign).all()


def test_assistance_fades_linearly_near_the_ends():
    rig = Rig()
    fade = CFG.safety.rom_fade_rad
    amax = CFG.device.joints[0].angle_max_rad
    rig.inp.angles[:] = 0.5
    rig.run(10.0, 100)
    rig.inp.angles[0] = amax - 0.25 * fade  # a quarter of the fade zone left
    out = rig.run(10.0, 50)
    assert out[0] == pytest.approx(2.5)
    assert out[1] == pytest.approx(10.0)


def test_velocity_limit_blocks_torque_in_the_direction_of_motion():
    rig = Rig()
    rig.run(10.0, 100)
    vlim = CFG.device.joints[0].velocity_limit_rad_s
    rig.inp.velocities[0] = vlim + 0.1
    rig.inp.velocities[1] = -(vlim + 0.1)  # moving the other way: assisting against it is fine
    out = rig.tick(10.0)
    assert out[0] == 0.0
    assert out[1] == pytest.approx(10.0)


def test_emg_watchdog_degrades_then_stops_within_safe_stop_and_latches():
    rig = Rig()
    rig.run(20.0, 200)
    to = rig.cfg.emg_timeout_s
    t_stale = None
    states = []
    for _ in range(200):
        rig.age()
        out = rig.tick(20.0)
        states.append(rig.layer.state)
        if t_stale is None and rig.inp.emg_age_s > to:
            t_stale = rig.now
    assert SafetyState.DEGRADED in states
    assert rig.layer.state == SafetyState.FAULT_LATCHED
    assert not out.any()
    (ev,) = rig.layer.events()
    assert ev.kind == "emg_stale"
    assert "emg_timeout_s" in ev.detail
    assert ev.t_detected <= t_stale + 1e-9  # detected on the first stale tick
    assert ev.t_zero - ev.t_detected <= rig.cfg.safe_stop_s + 1e-9


def test_latched_fault_is_cleared_only_by_a_person_and_only_when_healthy():
    rig = Rig()
    rig.run(20.0, 50)
    rig.inp.link_healthy = False
    rig.run(20.0, 50)
    assert rig.layer.state == SafetyState.FAULT_LATCHED
    rig.inp.link_healthy = True
    rig.run(20.0, 500)  # healthy again for a second: still latched, still zero
    assert rig.layer.state == SafetyState.FAULT_LATCHED
    assert not rig.out.any()
    rig.inp.emg_age_s = 0.5  # a different input is unhealthy: the clear is refused
    rig.tick(20.0)
    assert rig.layer.clear_fault(rig.now) is False
    rig.inp.emg_age_s = 0.0
    rig.tick(20.0)
    assert rig.layer.clear_fault(rig.now) is True
    assert rig.layer.state == SafetyState.NORMAL
    np.testing.assert_allclose(rig.tick(20.0), STEP)  # back from zero at the rate limit


def test_clear_is_refused_during_a_safe_stop_and_without_recent_evaluation():
    rig = Rig()
    rig.run(30.0, 100)
    rig.inp.firmware_fault_bits = 0x4
    rig.tick(30.0)
    assert rig.layer.state == SafetyState.SAFE_STOP
    assert rig.layer.clear_fault(rig.now) is False
    rig.inp.firmware_fault_bits = 0
    rig.run(30.0, 40)
    assert rig.layer.state == SafetyState.FAULT_LATCHED
    assert rig.layer.clear_fault(rig.now + 5.0) is False  # the loop has not looked for 5 s


def test_single_nan_estimate_degrades_without_latching_and_persistent_nan_faults():
    rig = Rig()
    rig.run(20.0, 100)
    out = rig.tick(20.0, est=math.nan)
    assert rig.layer.state == SafetyState.DEGRADED
    np.testing.assert_allclose(out, 20.0 - STEP)  # held down at the rate limit
    rig.run(20.0, 100)
    assert rig.layer.state == SafetyState.NORMAL
    assert rig.layer.events(include_pending=True) == []
    nan_ticks = 0
    while rig.layer.state != SafetyState.FAULT_LATCHED:
        rig.tick(20.0, est=[0.0, math.inf, 0.0, 0.0])
        nan_ticks += 1
        assert nan_ticks < 100
    (ev,) = rig.layer.events()
    assert ev.kind == "model_output"
    assert "inf" in ev.detail


@pytest.mark.parametrize("value", [300.0, -1e300])
def test_implausible_estimate_is_a_model_fault(value):
    rig = Rig(CFG.safety.model_copy(update={"model_fault_s": 0.0}))
    rig.run(5.0, 10)
    rig.tick(5.0, est=value)
    assert rig.layer.state >= SafetyState.SAFE_STOP


def test_estop_zeroes_at_once_and_latches():
    rig = Rig()
    rig.run(40.0, 200)
    assert rig.out.any()
    rig.layer.estop(rig.now + 0.0001)
    assert rig.layer.state == SafetyState.ESTOP
    assert not rig.tick(40.0).any()
    rig.run(40.0, 100)
    assert rig.layer.state == SafetyState.ESTOP and not rig.out.any()
    (ev,) = rig.layer.events()
    assert ev.kind == "estop" and ev.t_zero == pytest.approx(ev.t_detected, abs=DT)
    assert rig.layer.clear_fault(rig.now)
    assert rig.layer.state == SafetyState.NORMAL


@pytest.mark.parametrize(
    "field, value, kind",
    [
        ("telemetry_age_s", 0.5, "telemetry_stale"),
        ("firmware_fault_bits", 0x10, "firmware_fault"),
        ("link_healthy", False, "link_down"),
        ("overrun_streak", 25, "overrun"),
    ],
)
def test_each_input_fault_ends_in_zero_torque(field, value, kind):
    rig = Rig()
    rig.run(30.0, 100)
    setattr(rig.inp, field, value)
    rig.run(30.0, int(rig.cfg.safe_stop_s / DT) + 1)
    assert not rig.out.any()
    (ev,) = rig.layer.events()
    assert ev.kind == kind
    assert ev.t_zero - ev.t_detected <= rig.cfg.safe_stop_s + 1e-9


def test_flat_or_saturated_channel_is_tolerated_briefly_then_a_fault():
    rig = Rig()
    flags = np.zeros(16, dtype=bool)
    rig.inp.emg_flat_or_saturated = flags
    rig.run(10.0, 50)
    flags[3] = True
    rig.run(10.0, 10)
    assert rig.layer.state == SafetyState.DEGRADED
    rig.run(10.0, int(rig.cfg.emg_timeout_s / DT) + 1)
    assert rig.layer.state >= SafetyState.SAFE_STOP
    rig.run(10.0, 30)
    (ev,) = rig.layer.events()
    assert ev.kind == "emg_channel" and "channel 3" in ev.detail


def test_events_are_bounded_and_drops_are_counted():
    rig = Rig()
    for _ in range(SafetyLayer.EVENT_CAPACITY + 50):
        rig.inp.link_healthy = False
        rig.tick(0.0)
        rig.inp.link_healthy = True
        rig.tick(0.0)
    assert rig.layer.dropped_events == 50
    evs = rig.layer.events()
    assert len(evs) == SafetyLayer.EVENT_CAPACITY
    assert all(isinstance(e, FaultEvent) and e.t_zero is not None for e in evs)
    rig.inp.link_healthy = False
    rig.tick(0.0)
    assert len(rig.layer.events()) == 1  # room again after the drain


def test_pending_event_is_held_until_torque_is_zero():
    rig = Rig()
    rig.run(30.0, 100)
    rig.inp.link_healthy = False
    rig.tick(30.0)
    assert rig.layer.events() == []  # torque not zero yet
    rig.run(30.0, 30)
    (ev,) = rig.layer.events()
    assert ev.t_zero is not None


def test_bad_construction_is_refused():
    with pytest.raises(ValueError, match="at least one joint"):
        SafetyLayer([], CFG.safety, RATE)
    with pytest.raises(ValueError, match="rate_hz"):
        SafetyLayer(CFG.device.joints, CFG.safety, 0.0)


def _wide(n: int):
    names = tuple(f"j{i}" for i in range(n))
    joints = [
        JointConfig.model_construct(
            name=nm,
            torque_limit_nm=40.0,
            rate_limit_nm_per_s=400.0,
            angle_min_rad=-0.5,
            angle_max_rad=1.8,
            velocity_limit_rad_s=8.0,
        )
        for nm in names
    ]
    control = ControlConfig.model_construct(
        rate_hz=RATE,
        assist_gain={nm: 0.3 for nm in names},
        ramp_in_s=0.5,
        ramp_out_s=0.3,
        smoothing_hz=20.0,
    )
    return names, joints, control


def test_a_tick_allocates_no_per_joint_arrays():
    """With 4,096 joints any temporary per-joint array costs >= 32 kB, twice the 16 kB bound;
    a tick must stay under it. (It was 100,000 joints while the stages were numpy; since they
    read one element at a time as Python floats, as a handful of joints is cheapest, 100,000
    took 46 s, and 4,096 still catches any array of that size.)

    Covers every state: normal with limits acting, degraded, safe stop, latched, e-stop.
    """
    n = 4_096
    names, joints, control = _wide(n)
    law = AssistLaw(names, control, RATE)
    layer = SafetyLayer(joints, CFG.safety, RATE)
    inp = SafetyInputs.healthy(n)
    inp.angles[:] = np.linspace(-1.0, 2.5, n)  # some beyond each end, some fading
    inp.velocities[:] = np.linspace(-12.0, 12.0, n)
    inp.emg_flat_or_saturated = np.zeros(16, dtype=bool)
    est = np.linspace(-100.0, 100.0, n)
    req = np.zeros(n)
    out = np.zeros(n)
    t = 0.0
    law.start(t)
    law.set_gain({"j7": 0.9}, t)
    peaks = []

    def tick():
        nonlocal t
        t += DT
        inp.now = t
        tracemalloc.reset_peak()
        base, _ = tracemalloc.get_traced_memory()
        law.update(est, t, req)
        layer.apply(req, est, inp, out)
        peaks.append(tracemalloc.get_traced_memory()[1] - base)

    for _ in range(3):  # warm-up outside tracing
        t += DT
        inp.now = t
        law.update(est, t, req)
        layer.apply(req, est, inp, out)
    tracemalloc.start()
    try:
        for _ in range(5):
            tick()
        inp.emg_age_s = 0.75 * CFG.safety.emg_timeout_s  # degraded: past half the timeout
        for _ in range(5):
            tick()
        assert layer.state == SafetyState.DEGRADED
        est[5] = math.nan  # degraded with a bad estimate
        tick()
        inp.emg_age_s = 1.0  # fault: safe stop, then latched
        for _ in range(40):
            tick()
        assert layer.state == SafetyState.FAULT_LATCHED
        layer.estop(t)
        tick()
        assert layer.state == SafetyState.ESTOP
    finally:
        tracemalloc.stop()
    assert max(peaks) < 16_000, peaks


def _monitor(n_channels: int = 4):
    from exoctl.control.safety import ChannelMonitor

    return ChannelMonitor(n_channels, 2000.0, CFG.safety)


def test_channel_monitor_flags_flat_and_railed_channels_after_a_window():
    mon = _monitor()
    rng = np.random.default_rng(0)
    window = round(CFG.safety.emg_channel_window_s * 2000)
    chunk = np.empty((4, 4), dtype=np.float32)
    for _ in range(2 * window // 4):
        chunk[:] = 5.0 * rng.standard_normal((4, 4))
        chunk[:, 1] = 0.0  # disconnected
        chunk[:, 2] = 5000.0  # stuck at the rail
        chunk[:, 3] = 5000.0 + 5.0 * rng.standard_normal(4)  # large but alive
        flags = mon.update(chunk)
    assert flags.tolist() == [False, True, True, False]
    for _ in range(window // 4 + 1):  # the channels come back: flags clear after a window
        chunk[:] = 5.0 * rng.standard_normal((4, 4))
        flags = mon.update(chunk)
    assert not flags.any()


def test_channel_monitor_holds_flags_between_windows_and_ignores_empty_ticks():
    mon = _monitor(2)
    window = round(CFG.safety.emg_channel_window_s * 2000)
    zeros = np.zeros((window, 2), dtype=np.float32)
    assert mon.update(zeros).all()
    assert mon.update(zeros[:0]).all()  # a tick without samples changes nothing
    nan = np.full((window, 2), np.nan, dtype=np.float32)
    assert not mon.update(nan).any()  # NaN is the model watchdog's business


def test_channel_monitor_feeds_the_layer_to_a_fault():
    mon = _monitor(16)
    rig = Rig()
    rig.run(10.0, 10)
    window = round(CFG.safety.emg_channel_window_s * 2000)
    chunk = np.ones((4, 16), dtype=np.float32)
    ticks = 0
    while rig.layer.state < SafetyState.SAFE_STOP:
        chunk[:, :] = np.random.default_rng(ticks).standard_normal((4, 16))
        chunk[:, 7] = 0.0
        rig.inp.emg_flat_or_saturated = mon.update(chunk)
        rig.tick(10.0)
        ticks += 1
        assert ticks * DT < 2 * CFG.safety.emg_timeout_s
    assert ticks * DT >= CFG.safety.emg_timeout_s
    rig.run(10.0, 30)
    assert "channel 7" in rig.layer.events()[0].detail
    assert window > 4


def test_channel_monitor_allocates_nothing_per_chunk():
    mon = _monitor(100_000)
    chunk = np.random.default_rng(1).standard_normal((4, 100_000)).astype(np.float32)
    mon.update(chunk)
    tracemalloc.start()
    try:
        peaks = []
        for _ in range(30):  # crosses window ends
            tracemalloc.reset_peak()
            base, _ = tracemalloc.get_traced_memory()
            mon.update(chunk)
            peaks.append(tracemalloc.get_traced_memory()[1] - base)
    finally:
        tracemalloc.stop()
    assert max(peaks) < 16_000, peaks


def test_channel_monitor_threshold_can_be_given_for_enveloped_input():
    from exoctl.control.safety import ChannelMonitor

    window = round(CFG.safety.emg_channel_window_s * 2000)
    env = np.linspace(0.2, 0.25, window, dtype=np.float32)[:, None].repeat(2, axis=1)
    env[:, 1] = 0.3  # stuck
    assert ChannelMonitor(2, 2000.0, CFG.safety).update(env).all()  # raw threshold: all flat
    mon = ChannelMonitor(2, 2000.0, CFG.safety, flat_range=1e-6)
    assert mon.update(env).tolist() == [False, True]


def test_actuators_off_while_assisting_is_a_fault_after_a_grace_period():
    rig = Rig()
    rig.run(20.0, 100)
    rig.inp.actuators_enabled = False  # e.g. the firmware rebooted and re-handshook at once
    rig.run(20.0, 5)
    assert rig.layer.state == SafetyState.DEGRADED  # an enable handshake may be under way
    rig.run(20.0, int(rig.cfg.telemetry_timeout_s / DT))
    assert rig.layer.state >= SafetyState.SAFE_STOP
    rig.run(20.0, 30)
    (ev,) = rig.layer.events()
    assert ev.kind == "actuators_off" and not rig.out.any()


def test_actuators_off_without_a_request_is_not_a_fault():
    rig = Rig()
    rig.inp.actuators_enabled = False  # between sessions: disabled, nothing requested
    rig.run(0.0, 500)
    assert rig.layer.state == SafetyState.NORMAL


def test_a_stale_estimate_degrades_then_stops_within_safe_stop_and_latches():
    """A hung or crashed estimator: the estimate in use stops being renewed. The EMG and the
    telemetry stay fresh; only the estimate's age grows."""
    rig = Rig()
    rig.run(20.0, 200)
    to = rig.cfg.estimate_timeout_s
    t_stale = None
    states, outs = [], []
    for _ in range(int(2 * to / DT)):
        rig.inp.estimate_age_s += DT
        outs.append(rig.tick(20.0))
        states.append(rig.layer.state)
        if t_stale is None and rig.inp.estimate_age_s > to:
            t_stale = rig.now
    assert t_stale is not None
    assert SafetyState.DEGRADED in states
    assert rig.layer.state == SafetyState.FAULT_LATCHED
    assert not rig.out.any()
    (ev,) = rig.layer.events()
    assert ev.kind == "estimate_stale"
    assert "estimate_timeout_s" in ev.detail
    assert ev.t_detected <= t_stale + 1e-9  # detected on the first stale tick
    assert ev.t_zero - ev.t_detected <= rig.cfg.safe_stop_s + 1e-9
    # Degraded from half the timeout: assistance came down at the rate limit, no step.
    steps = np.abs(np.diff(np.array(outs), axis=0))
    first = states.index(SafetyState.DEGRADED)
    assert (steps[first : first + 5] <= STEP + 1e-9).all()
    # A fresh estimate again, and a person clears it.
    rig.inp.estimate_age_s = 0.0
    rig.tick(0.0)
    assert rig.layer.clear_fault(rig.now)


@pytest.mark.parametrize("age", [math.nan, math.inf])
def test_an_estimate_of_unknown_age_is_stale(age):
    rig = Rig()
    rig.run(20.0, 50)
    rig.inp.estimate_age_s = age
    rig.run(20.0, int(rig.cfg.safe_stop_s / DT) + 1)
    assert not rig.out.any()
    (ev,) = rig.layer.events()
    assert ev.kind == "estimate_stale"


def test_a_late_estimate_below_the_timeout_degrades_and_recovers_by_itself():
    rig = Rig()
    rig.run(20.0, 200)
    rig.inp.estimate_age_s = 0.75 * rig.cfg.estimate_timeout_s
    rig.run(20.0, 10)
    assert rig.layer.state == SafetyState.DEGRADED
    rig.inp.estimate_age_s = 0.0
    rig.run(20.0, 1)
    assert rig.layer.state == SafetyState.NORMAL
    assert rig.layer.events(include_pending=True) == []


def test_the_checks_see_the_command_the_layer_last_wrote():
    """``Watch.sent``: what a check comparing the device's applied torque with its command
    reads. The layer's own array, so it is this tick's previous command, also after a clear."""
    rig = Rig()
    wd = rig.layer._watchdogs
    rig.run(20.0, 10)
    np.testing.assert_array_equal(wd.sent, rig.layer.last_command)
    assert wd.sent.any()
    rig.layer.estop(rig.now)
    rig.tick(20.0)
    assert not wd.sent.any()
    rig.tick(0.0)
    assert rig.layer.clear_fault(rig.now)
    rig.tick(20.0)
    np.testing.assert_array_equal(wd.sent, STEP)


def test_a_joint_faster_than_a_person_degrades_then_latches_ramped_with_its_joint_and_speed():
    """A knee reported at 20 rad/s (a faulty joint sensor or a runaway): degraded at once
    (assistance held down at the rate limit), a fault once it has lasted telemetry_timeout_s,
    torque at zero within safe_stop_s of detection, latched until the speed is plausible again
    and a person clears it."""
    rig = Rig()
    rig.run(20.0, 200)
    persist = rig.cfg.telemetry_timeout_s
    rig.inp.velocities[2] = -20.0  # knee_l, extending
    t_start = rig.now + DT
    states, outs = [], []
    for _ in range(int(2 * persist / DT)):
        outs.append(rig.tick(20.0))
        states.append(rig.layer.state)
    assert states[0] == SafetyState.DEGRADED
    assert rig.layer.state == SafetyState.FAULT_LATCHED and not rig.out.any()
    (ev,) = rig.layer.events()
    assert ev.kind == "joint_overspeed"
    assert ev.detail.startswith("joint knee_l moving at 20.00 rad/s > max_joint_speed_rad_s")
    assert persist - 1e-9 <= ev.t_detected - t_start <= persist + DT + 1e-9
    assert ev.t_zero - ev.t_detected <= rig.cfg.safe_stop_s + 1e-9
    # Held down at the rate limit while degraded: no step on the joints that were assisting.
    steps = np.abs(np.diff(np.array(outs), axis=0))
    assert (steps[:5, [0, 1, 3]] <= STEP[[0, 1, 3]] + 1e-9).all()
    rig.tick(0.0)
    assert not rig.layer.clear_fault(rig.now)  # still too fast: refused
    rig.inp.velocities[2] = 1.0
    rig.tick(0.0)
    assert rig.layer.clear_fault(rig.now)


@pytest.mark.parametrize("speed", [15.0, -15.0, 12.0, math.nan, math.inf, -math.inf])
def test_a_speed_a_person_can_reach_or_an_unknown_one_is_no_overspeed(speed):
    rig = Rig()
    rig.inp.velocities[:] = speed
    rig.run(0.0, int(2 * rig.cfg.telemetry_timeout_s / DT))
    kinds = {e.kind for e in rig.layer.events(include_pending=True)}
    assert "joint_overspeed" not in kinds  # not finite: telemetry_invalid's
    assert kinds == (set() if math.isfinite(speed) else {"telemetry_invalid"})


def test_one_odd_speed_reading_only_holds_assistance_down_for_a_tick():
    rig = Rig()
    rig.run(20.0, 200)
    rig.inp.velocities[0] = 30.0
    rig.tick(20.0)
    assert rig.layer.state == SafetyState.DEGRADED
    rig.inp.velocities[0] = 0.5
    rig.run(20.0, int(2 * rig.cfg.telemetry_timeout_s / DT))
    assert rig.layer.state == SafetyState.NORMAL
    assert rig.layer.events(include_pending=True) == []


def test_the_overspeed_threshold_is_the_configurations():
    cfg = CFG.safety.model_copy(update={"max_joint_speed_rad_s": 5.0})
    rig = Rig(cfg)
    rig.inp.velocities[3] = 6.0
    rig.run(0.0, int(2 * cfg.telemetry_timeout_s / DT))
    (ev,) = rig.layer.events()
    assert ev.kind == "joint_overspeed" and "knee_r moving at 6.00 rad/s" in ev.detail
    assert "max_joint_speed_rad_s 5.0" in ev.detail
