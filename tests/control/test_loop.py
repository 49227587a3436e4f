"""ControlLoop.tick on its own, against the in-process FakeLink.

Everything but the firmware is real: the estimator with the shipped ONNX models (through
onnxruntime), the assist law, the safety layer, the ring buffer and the channel monitor. The
link is a ``FakeLink`` and the loop's clock is one the test moves, shared with the link (which
stamps telemetry with it) and the ring (EMG arrival times), so every tick is deterministic: no
thread, nothing that a loaded machine can make late.

EMG is the HIL's synthetic patient (synthetic data: these tests check control logic and
ordering, not estimation accuracy).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.config.schema import Config, load_config
from exoctl.control.loop import TIMING_COLUMNS, ControlLoop
from exoctl.control.safety import RecordingHealth, SafetyState
from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import build_estimator
from firmware_bridge import protocol as P
from firmware_bridge.fake_link import FakeLink

CFG = load_config()  # the shipped configuration: network model (a 500 Hz window model)
MODELS = Path(__file__).resolve().parents[2] / "exoctl" / "models"
LINEAR = CFG.with_overrides(model={"path": str(MODELS / "default.onnx")})  # instantaneous
RATE = CFG.control.rate_hz
PERIOD = 1.0 / RATE
PER_TICK = round(CFG.emg.sampling_rate_hz / RATE)
LIMITS = np.array([j.torque_limit_nm for j in CFG.device.joints])
SAFE = CFG.safety
RECORDING = patient_from_config(CFG).generate(8.0)  # synthetic gait EMG and joint angles
VELOCITIES = np.gradient(RECORDING.angles, axis=0) * CFG.emg.sampling_rate_hz


class Clock:
    """time.monotonic for the loop, moved by hand; ``sleep`` advances it (at least 20 us, so
    the deadline timer's spin ends)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 2e-5)


class Bench:
    """One control loop, its fake firmware and an EMG feed, driven a tick at a time."""

    def __init__(self, cfg: Config = CFG, log_capacity: int = 10_000, max_chunk: int = 4096):
        self.clock = Clock()
        self.link = FakeLink(
            cfg.joint_names,
            torque_limits_nm=LIMITS,
            command_timeout_s=cfg.device.command_timeout_s,
            telemetry_timeout_s=cfg.safety.telemetry_timeout_s,
            clock=self.clock,
        )
        self.ring = RingBuffer(int(cfg.emg.ring_buffer_s * cfg.emg.sampling_rate_hz), 16)
        self.estimator = build_estimator(cfg, max_chunk=max_chunk)
        self.loop = ControlLoop.from_config(
            cfg, self.ring, self.estimator, self.link, log_capacity, self.clock, self.clock.sleep
        )
        self.safety = self.loop.safety
        self.pos = 0
        self.link.open()
        self.link.handshake()
        self.loop.timer.start(self.clock())

    def feed(self, scale: float = 1.0, n: int = PER_TICK, nan: bool = False) -> None:
        """The next ``n`` samples of EMG arrive now, and telemetry shows the joints there."""
        i = self.pos % (len(RECORDING.emg) - n)
        chunk = RECORDING.emg[i : i + n] * np.float32(scale)
        if nan:
            chunk[n // 2, 3] = np.nan
        self.ring.write(chunk, self.clock() + np.arange(n) / 2000.0, self.clock())
        self.link.set_joint_state(RECORDING.angles[i + n - 1], VELOCITIES[i + n - 1])
        self.pos += n

    def tick(self, emg: bool = True, **feed) -> list:
        """One tick (after one tick's EMG unless ``emg`` is False); the frames it sent."""
        if emg:
            self.feed(**feed)
        before = len(self.link.frames)
        self.loop.tick()
        return list(self.link.frames)[before:]

    def run(self, ticks: int, **kw) -> list:
        return [f for _ in range(ticks) for f in self.tick(**kw)]

    def begin_session(self, gains: dict | None = None) -> None:
        """What Controller.start_session does: Enable, then the assist ramp in the loop."""
        assert self.link.enable()
        g = gains or CFG.control.assist_gain
        assist = self.loop.assist
        self.loop.submit(lambda now: (assist.set_gain(g, now), assist.start(now)))

    def kinds(self) -> list[str]:
        return [e.kind for e in self.safety.events(include_pending=True)]


def _wire(frames: list) -> np.ndarray:
    return np.array([f.wire for f in frames if f.delivered]).reshape(-1, 4)


# ------------------------------------------------------------------ ordering
def test_the_command_on_the_wire_is_the_safety_layers_output_every_tick() -> None:
    b = Bench()
    b.begin_session()
    for _ in range(1500):  # 3 s: ramp-in, then assistance following the gait
        (frame,) = b.tick()
        out = b.safety.last_command  # what the safety layer wrote this tick
        np.testing.assert_array_equal(frame.requested, out)
        np.testing.assert_allclose(frame.wire, np.round(out, 2), atol=1e-9)
        assert np.all(np.abs(frame.wire) <= LIMITS + 1e-9)
    _, rows = b.loop.read_ticks(0)
    np.testing.assert_array_equal(rows["command"], [f.requested for f in b.link.frames])
    assert np.abs(rows["command"]).max() > 3.0  # assistance was really commanded
    assert b.safety.state == SafetyState.NORMAL and b.kinds() == []


def test_the_safety_layer_overrides_the_assist_law_on_the_wire() -> None:
    """A hip beyond its range-of-motion end: the assist law keeps asking (the estimate is
    positive), the wire carries what the safety layer allows: no torque pushing further out."""
    b = Bench()
    b.begin_session()
    b.run(600)
    hip_max = CFG.device.joints[0].angle_max_rad
    frames, estimates = [], []
    for _ in range(500):
        b.feed()
        angles = RECORDING.angles[(b.pos - 1) % len(RECORDING.angles)].copy()
        angles[0] = hip_max + 0.05
        b.link.set_joint_state(angles)
        frames += b.tick(emg=False)
        estimates.append(b.estimator.estimate[0])
    wire = _wire(frames)
    assert max(estimates) > 1.0  # the patient pushed hip_l into flexion ...
    assert wire[:, 0].max() <= 0.0  # ... and no flexion torque went out
    assert np.abs(wire[:, 1:]).max() > 1.0  # the other joints were assisted meanwhile


def test_requests_run_at_tick_start_in_order_and_count_for_that_tick() -> None:
    b = Bench()
    b.begin_session()
    b.run(800)
    assert np.abs(b.safety.last_command).max() > 1.0
    seen: list[tuple[str, float]] = []
    b.loop.submit(lambda now: seen.append(("first", now)))
    b.loop.submit(lambda now: seen.append(("second", now)))
    b.loop.submit(b.safety.estop)
    (frame,) = b.tick()
    assert [s for s, _ in seen] == ["first", "second"]
    assert seen[0][1] == seen[1][1] == b.loop.inputs.now  # the tick's own start time
    assert not frame.wire.any()  # the e-stop is in force for this very tick's command
    assert b.safety.state == SafetyState.ESTOP


# ------------------------------------------------------------------ e-stop
def _seconds(s: float) -> int:
    return int(round(s * RATE))


FAULTS: dict[str, Callable[[Bench], None]] = {
    "nothing": lambda b: None,
    "nan_emg": lambda b: None,  # fed by the tick driver below
    "stale_emg": lambda b: None,  # likewise
    "pulled_cable": lambda b: b.link.pull_cable(),
    "firmware_fault": lambda b: b.link.raise_fault(P.FAULT_OVER_TEMPERATURE),
    "status_bit": lambda b: b.link.raise_fault(P.FAULT_ANGLE_LIMIT),
    "device_reset": lambda b: b.link.reset_device(),
    "device_estop": lambda b: b.link.press_estop(),
    "telemetry_stall": lambda b: b.link.stall(),
    "nan_angles": lambda b: b.link.set_joint_state(angles=[np.nan] * 4),
}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_estop_wins_whatever_else_happens(fault: str) -> None:
    """The e-stop request is queued with a gain raise, a clear and a new session start behind
    it, in the tick a fault also strikes: from that tick on, nothing but zero goes out and the
    layer stays in ESTOP; the clear queued behind it is refused."""
    b = Bench()
    b.begin_session()
    b.run(800)
    assert np.abs(b.safety.last_command).max() > 1.0
    assist, safety = b.loop.assist, b.safety
    cleared: list[bool] = []
    FAULTS[fault](b)
    b.loop.submit(safety.estop)
    b.loop.submit(lambda now: assist.set_gain(dict.fromkeys(CFG.joint_names, 1.0), now))
    b.loop.submit(lambda now: cleared.append(safety.clear_fault(now)))
    b.loop.submit(assist.start)
    frames = b.run(_seconds(0.5), emg=fault != "stale_emg", nan=fault == "nan_emg")
    assert cleared == [False]
    assert not _wire(frames).any()
    assert safety.state == SafetyState.ESTOP
    assert "estop" in b.kinds()


def test_a_bug_in_a_stage_ends_the_loop_with_zero_torque_and_actuators_off() -> None:
    """A bug in a stage (a chunk larger than the estimator was built for: a plain ValueError,
    not bad EMG) ends the loop; its guard commands zero and disables the actuators."""
    b = Bench(max_chunk=PER_TICK)
    b.begin_session()
    b.run(800)
    b.feed(n=2 * PER_TICK)  # more samples than the estimator's max_chunk
    b.loop.start()  # the loop thread: its first tick raises
    b.loop.thread.join(5.0)
    assert not b.loop.running
    assert b.loop.error.startswith("ValueError: chunk of")
    assert not b.link.frames[-1].requested.any() and not b.link.enabled
    assert b.link.requests[-1][1] == "disable"


# ------------------------------------------------------------------ fault injection
def _zero_within(b: Bench, seconds: float, **kw) -> tuple[int, list]:
    """Tick until the safety layer has latched a fault, which it does once its command is
    zero on every joint after a safe stop; (ticks taken, frames sent meanwhile)."""
    frames = []
    for k in range(1, _seconds(seconds) + 2):
        frames += b.tick(**kw)
        if b.safety.state == SafetyState.FAULT_LATCHED:
            assert not b.safety.last_command.any()
            return k, frames
    raise AssertionError(f"torque not zero after {seconds} s: {b.safety.last_command}")


def _session(cfg: Config = CFG) -> Bench:
    b = Bench(cfg)
    b.begin_session()
    b.run(800)
    assert np.abs(b.safety.last_command).max() > 1.0 and b.safety.state == SafetyState.NORMAL
    return b


def test_stale_emg_removes_torque_within_the_emg_timeout_and_the_safe_stop() -> None:
    b = _session()
    ticks, frames = _zero_within(b, SAFE.emg_timeout_s + SAFE.safe_stop_s, emg=False)
    assert ticks * PERIOD <= SAFE.emg_timeout_s + SAFE.safe_stop_s + PERIOD
    assert not _wire(frames)[-1].any()
    b.run(5, emg=False)
    assert b.safety.state == SafetyState.FAULT_LATCHED and "emg_stale" in b.kinds()


def test_the_loop_feeds_the_estimates_age_and_an_inline_estimate_is_never_stale() -> None:
    """The estimator runs inline, so the estimate in use is this tick's: its age is zero every
    tick, with EMG, without (stalled), and with bad EMG (the estimate held NaN on purpose), so
    a stalled or bad input trips its own watchdog and never estimate_stale besides."""
    b = _session()
    ages = []
    for kw in [{}] * 50 + [{"nan": True}] * 50 + [{"emg": False}] * 150:
        b.loop.inputs.estimate_age_s = math.nan  # the loop must write it every tick
        b.tick(**kw)
        ages.append(b.loop.inputs.estimate_age_s)
    assert ages == [0.0] * len(ages)
    kinds = b.kinds()
    assert "estimate_stale" not in kinds and "emg_stale" in kinds


def test_a_refused_emg_source_is_a_fault_that_removes_torque_and_stays() -> None:
    """The acquisition refused the stream that came back after a dropout (another host,
    another uid, two at once) and says so on the ring: a fault, even though EMG (from
    before the refusal) is still fresh, and no clear while the refusal stands."""
    b = _session()
    b.ring.source_fault = "after a dropout, source_id='amp' came back as another stream"
    ticks, frames = _zero_within(b, SAFE.safe_stop_s)
    assert ticks * PERIOD <= SAFE.safe_stop_s + PERIOD and not _wire(frames)[-1].any()
    events = b.safety.events(include_pending=True)
    assert [e.kind for e in events] == ["emg_source"] and "refused" in events[0].detail
    b.loop.submit(lambda now: b.safety.clear_fault(now))
    b.run(50)
    assert b.safety.state == SafetyState.FAULT_LATCHED and not b.safety.last_command.any()


@pytest.mark.parametrize("cfg", [CFG, LINEAR], ids=["window-network", "instant-linear"])
def test_non_finite_emg_is_refused_the_estimate_goes_nan_and_torque_is_removed(cfg) -> None:
    b = _session(cfg)
    b.tick(nan=True)  # one bad chunk: refused, caught, the loop goes on
    assert b.loop.bad_input_ticks == 1 and b.loop.error is None
    assert np.isnan(b.estimator.estimate).all()
    b.tick(emg=False)  # a tick without samples: the estimate stays NaN (also a window model)
    assert np.isnan(b.estimator.estimate).all()
    b.tick()  # the stages refused the chunk before touching their state: finite again
    assert np.isfinite(b.estimator.estimate).all()
    _, rows = b.loop.read_ticks(0)
    assert np.isnan(rows["estimate"]).all(axis=1).sum() == 2  # exactly the two ticks above
    assert b.kinds() == []  # a single spike is not a fault
    ticks, _ = _zero_within(b, SAFE.model_fault_s + SAFE.safe_stop_s, nan=True)
    assert ticks * PERIOD <= SAFE.model_fault_s + SAFE.safe_stop_s + PERIOD
    assert b.loop.bad_input_ticks == 1 + ticks
    b.run(3)
    assert b.safety.state == SafetyState.FAULT_LATCHED and "model_output" in b.kinds()


@pytest.fixture(scope="module")
def nan_model(tmp_path_factory) -> Path:
    """The shipped linear model plus a branch that outputs NaN once the 16 activations sum to
    more than 12 (they stay below 9 in normal gait; EMG x50 saturates them). It stands for an
    overflow inside a real network; onnxruntime runs it like any model."""
    import onnx
    from onnx import TensorProto, helper

    from exoctl.estimation.torque_model import METADATA_KEY, save_model

    m = onnx.load(MODELS / "default.onnx")
    meta = {p.key: p.value for p in m.metadata_props}[METADATA_KEY]
    g = m.graph
    (add,) = [n for n in g.node if n.output[0] == "torque"]
    add.output[0] = "linear"
    for name, value in (("starts", [2]), ("ends", [18]), ("axes", [1])):
        g.initializer.append(helper.make_tensor(name, TensorProto.INT64, [1], value))
    g.initializer.append(helper.make_tensor("threshold", TensorProto.FLOAT, [], [12.0]))
    g.initializer.append(helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]))
    g.node.extend(
        [
            helper.make_node("Slice", ["features", "starts", "ends", "axes"], ["act"]),
            helper.make_node("ReduceSum", ["act", "axes"], ["total"], keepdims=1),
            helper.make_node("Sub", ["threshold", "total"], ["margin"]),
            helper.make_node("Relu", ["margin"], ["room"]),
            helper.make_node("Log", ["room"], ["log_room"]),  # -inf once room is 0
            helper.make_node("Mul", ["log_room", "zero"], ["poison"]),  # 0, or NaN
            helper.make_node("Add", ["linear", "poison"], ["torque"]),
        ]
    )
    path = tmp_path_factory.mktemp("models") / "nan_when_saturated.onnx"
    save_model(m, path, "tests/control/test_loop.py", json.loads(meta))
    return path


def test_nan_model_output_removes_torque_within_model_fault_s_and_the_safe_stop(
    nan_model,
) -> None:
    b = _session(CFG.with_overrides(model={"path": str(nan_model)}))
    assert np.isfinite(b.loop.read_ticks(0)[1]["estimate"]).all()  # fine in normal gait
    for _ in range(_seconds(0.2)):  # EMG x50 saturates the activations
        b.tick(scale=50.0)
        if np.isnan(b.estimator.estimate).any():
            break
    assert np.isnan(b.estimator.estimate).all() and b.loop.bad_input_ticks == 0
    ticks, frames = _zero_within(b, SAFE.model_fault_s + SAFE.safe_stop_s, scale=50.0)
    assert ticks * PERIOD <= SAFE.model_fault_s + SAFE.safe_stop_s + PERIOD
    assert all(np.isfinite(f.requested).all() for f in b.link.frames)  # NaN never sent
    b.run(3, scale=50.0)
    assert b.safety.state == SafetyState.FAULT_LATCHED and b.kinds() == ["model_output"]


def test_link_down_removes_torque_at_once_and_a_person_restores_it() -> None:
    b = _session()
    b.link.pull_cable()
    ticks, frames = _zero_within(b, SAFE.safe_stop_s)
    assert ticks * PERIOD <= SAFE.safe_stop_s + PERIOD
    assert not any(f.delivered for f in frames)  # nothing reaches a device that is not there
    b.run(_seconds(0.3))  # long enough for the firmware's own host timeout
    assert b.safety.state == SafetyState.FAULT_LATCHED and b.kinds()[0] == "link_down"
    b.link.plug_cable()
    b.run(5)
    assert b.link.healthy and not b.link.enabled  # the link never re-enables by itself
    assert b.link.latest_telemetry().fault_bits & P.FAULT_HOST_TIMEOUT
    b.tick()
    assert b.safety.state == SafetyState.FAULT_LATCHED  # the firmware fault holds the latch
    # a person: clear the firmware's fault, enable, then clear the safety layer's latch
    assert b.link.clear_faults() and b.link.enable()
    b.run(2)
    cleared: list[bool] = []
    b.loop.submit(lambda now: cleared.append(b.safety.clear_fault(now)))
    b.loop.submit(b.loop.assist.start)
    b.run(_seconds(1.5))
    assert cleared == [True] and b.safety.state == SafetyState.NORMAL
    assert np.abs(b.safety.last_command).max() > 1.0


def test_a_stalled_recording_removes_torque_ramped_and_holds_the_latch_until_it_commits() -> None:
    """The recorder's health as the loop reads it (``RecordingHealth.ok_at``, published by
    the writer thread): commits every 0.5 s keep assistance on; none for recording_timeout_s
    ramps it out and latches recording_stalled; a clear is refused until a clean commit."""
    b = _session()
    health = RecordingHealth()
    b.loop.recording = health
    for _ in range(6):  # 3 s of a healthy recording, committing every 0.5 s
        health.ok_at = b.clock()
        b.run(_seconds(0.5))
    assert b.safety.state == SafetyState.NORMAL and np.abs(b.safety.last_command).max() > 1.0
    health.ok_at = b.clock()  # the last commit that succeeds
    b.run(_seconds(SAFE.recording_timeout_s) - 2)
    assert b.safety.state == SafetyState.NORMAL
    t_last = health.ok_at
    ticks, frames = _zero_within(b, 0.1 + SAFE.safe_stop_s)
    assert b.kinds() == ["recording_stalled"]
    assert b.clock() - t_last <= SAFE.recording_timeout_s + SAFE.safe_stop_s + 2 * PERIOD
    wire = np.abs(_wire(frames)).max(1)
    ramp = wire[wire.argmax() :]  # from the command at detection on (ticks before it lead)
    assert ramp[0] > 1.0 and (np.diff(ramp) <= 1e-9).all() and ramp[-1] == 0.0  # ramped out
    assert len(ramp) > 3  # not a step to zero
    cleared: list[bool] = []
    b.loop.submit(lambda now: cleared.append(b.safety.clear_fault(now)))
    b.run(_seconds(0.5))
    assert cleared == [False] and b.safety.state == SafetyState.FAULT_LATCHED
    assert not _wire(b.run(5)).any()
    health.ok_at = b.clock()  # the disk takes data again
    b.run(2)
    b.loop.submit(lambda now: cleared.append(b.safety.clear_fault(now)))
    b.run(2)
    assert cleared == [False, True] and b.safety.state == SafetyState.NORMAL
    health.ok_at = float("inf")  # no session recorded: nothing required of the disk
    b.run(_seconds(SAFE.recording_timeout_s + 0.5))
    assert b.safety.state == SafetyState.NORMAL


@pytest.mark.parametrize(
    ("inject", "kinds"),
    [
        (lambda b: b.link.raise_fault(P.FAULT_OVER_TEMPERATURE), {"firmware_fault"}),
        (lambda b: b.link.raise_fault(P.FAULT_ANGLE_LIMIT), {"firmware_fault"}),
        (lambda b: b.link.press_estop(), {"firmware_fault"}),
        (lambda b: b.link.reset_device(), {"actuators_off"}),
    ],
    ids=["latched_bit", "status_bit", "device_estop", "device_reset"],
)
def test_firmware_faults_remove_torque(inject, kinds) -> None:
    b = _session()
    inject(b)
    _zero_within(b, SAFE.telemetry_timeout_s + SAFE.safe_stop_s)
    b.run(_seconds(0.2))
    assert b.safety.state == SafetyState.FAULT_LATCHED
    assert kinds <= set(b.kinds())


def test_overruns_trip_the_overrun_watchdog() -> None:
    """Ticks that each start more than a period late (a starved loop): a fault at
    max_overrun_streak consecutive late ticks, never before."""
    b = _session()
    for k in range(1, SAFE.max_overrun_streak + 3):
        b.clock.t += 2 * PERIOD  # the previous tick took two periods too long
        b.tick()
        if k < SAFE.max_overrun_streak:
            assert "overrun" not in b.kinds()
    assert "overrun" in b.kinds()
    assert b.loop.timer.misses >= SAFE.max_overrun_streak


def test_the_safety_inputs_carry_the_whole_telemetry_frame_the_tick_read() -> None:
    """What a watchdog on anything the device reports reads: the frame itself (applied
    torques, currents, temperatures, per-joint faults), the one this tick read, no copy."""
    b = _session()
    sent = b.link.wire_torques()[-1]  # the last command, applied by the device
    b.tick()
    frame = b.loop.inputs.telemetry
    assert frame is not None and frame is b.link._telemetry  # the frame the link served
    assert np.abs(sent).max() > 1.0
    np.testing.assert_array_equal(frame.torques, sent)
    b.link.stall()
    b.run(3)
    assert b.loop.inputs.telemetry is frame  # a stalled link: still the newest frame


def test_a_joint_the_device_reports_too_fast_latches_joint_overspeed_ramped() -> None:
    """The device reports a knee at 25 rad/s (a glitching sensor or a runaway) from this tick
    on: through the loop's telemetry the watchdog latches joint_overspeed, and torque is zero
    within telemetry_timeout_s plus the safe stop."""
    b = _session()
    fast = VELOCITIES[0].copy()
    fast[3] = 25.0

    def tick() -> None:
        b.feed()
        b.link.set_joint_state(velocities=fast)  # after the feed's own joint state
        b.loop.tick()

    for _ in range(_seconds(SAFE.telemetry_timeout_s + SAFE.safe_stop_s) + 2):
        tick()
    assert b.safety.state == SafetyState.FAULT_LATCHED and not b.safety.last_command.any()
    assert b.kinds() == ["joint_overspeed"]


# ------------------------------------------------------------------ reading the records
def test_read_ticks_pairs_each_record_with_its_timing_and_skips_lost_rows() -> None:
    b = Bench(log_capacity=50)
    b.begin_session()
    b.run(60)
    b.clock.t += 3 * PERIOD  # tick 61 (index 60) starts three periods late
    b.run(10)
    end, rows = b.loop.read_ticks(0)
    assert end == b.loop.ticks_written == 70
    assert all(len(rows[c]) == 50 for c in ("t", "command", *TIMING_COLUMNS))  # 20 lost
    late = rows["start_error"] > PERIOD
    assert np.flatnonzero(late).tolist() == [60 - 20]  # that tick's row, and only it
    np.testing.assert_array_equal(rows["command"], [f.requested for f in b.link.frames][-50:])
    assert np.all(rows["tick_cost"] == 0.0)  # nothing moves the test's clock inside a tick
    # EMG arrives right after each tick, so it waits a period for the next; the late tick's
    # samples arrived after the stall, as it started
    assert np.allclose(np.delete(rows["latency"], 40), PERIOD, atol=1e-4)
    assert rows["latency"][40] == 0.0
    end1, rows1 = b.loop.read_ticks(65)
    assert end1 == 70 and np.array_equal(rows1["t"], rows["t"][-5:])
    end2, rows2 = b.loop.read_ticks(end)
    assert end2 == end and all(len(v) == 0 for v in rows2.values())


# ------------------------------------------------------------------ as a property
ACTIONS = {
    "tick": lambda b: None,
    "no_emg": lambda b: None,  # the driver feeds no EMG this tick
    "nan_emg": lambda b: None,  # the driver feeds a chunk with a NaN
    "pull": lambda b: b.link.pull_cable(),
    "plug": lambda b: b.link.plug_cable(),
    "fault": lambda b: b.link.raise_fault(P.FAULT_OVERCURRENT),
    "clear_firmware": lambda b: b.link.clear_faults(),
    "enable": lambda b: b.link.enable(),
    "reset": lambda b: b.link.reset_device(),
    "stall": lambda b: b.link.stall(),
    "resume": lambda b: b.link.resume(),
    "late": lambda b: setattr(b.clock, "t", b.clock.t + 3 * PERIOD),
    "clear": lambda b: b.loop.submit(lambda now: b.safety.clear_fault(now)),
    "gain_up": lambda b: b.loop.submit(
        lambda now: b.loop.assist.set_gain(dict.fromkeys(CFG.joint_names, 1.0), now)
    ),
}


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(st.sampled_from(sorted(ACTIONS)), min_size=20, max_size=120),
    st.integers(min_value=0, max_value=119),
)
def test_property_wire_is_safety_output_within_limits_and_estop_wins(actions, estop_at) -> None:
    """Any sequence of faults, recoveries and requests: every frame on the wire is the safety
    layer's output of its tick, within the torque limits; from the tick an e-stop is requested
    on, only zero goes out, until a clear succeeds."""
    b = Bench(LINEAR)
    b.begin_session()
    b.run(300)
    stopped = False
    cleared_after_estop: list[bool] = []
    for k, action in enumerate(actions):
        ACTIONS[action](b)
        if k == estop_at:
            b.loop.submit(b.safety.estop)
            stopped = True
        if stopped and action == "clear":
            b.loop.submit(lambda now: cleared_after_estop.append(b.safety.state == 0))
        frames = b.tick(emg=action != "no_emg", nan=action == "nan_emg")
        out = b.safety.last_command
        for f in frames:
            np.testing.assert_array_equal(f.requested, out)
            assert np.all(np.abs(f.wire) <= LIMITS + 1e-9)
        if stopped and not any(cleared_after_estop):
            assert not out.any()
            assert b.safety.state == SafetyState.ESTOP


def test_each_tick_records_the_age_of_the_telemetry_it_read() -> None:
    """The serial reader's delivery as the loop saw it, beside the tick's own timing: fresh
    telemetry is read at age 0 (the fake serves it at each read); once the stream stalls the
    age grows by a period a tick, as the link watchdog sees it."""
    b = Bench()
    b.begin_session()
    b.run(5)
    b.link.stall()
    b.run(5)
    _, rows = b.loop.read_ticks(0)
    age = rows["telemetry_age"]
    assert np.all(age[:5] == 0.0)
    np.testing.assert_allclose(np.diff(age[5:]), PERIOD)
    assert b.loop.stats.summary()["telemetry_age_ms"]["max"] >= 4 * PERIOD * 1e3
