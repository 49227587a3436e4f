"""The Controller through its methods, against the in-process FakeLink.

Real threads and real parts: the control loop runs in its thread at the configured rate, EMG
comes from a replay of the HIL's synthetic patient (synthetic data, written to a .npz and read
by ReplayAcquisition in its thread), the estimator runs the shipped linear ONNX model. Only
the firmware is the fake, which records every command and request and lets the test pull the
cable or raise a fault bit.

The watchdog timeouts are generous here (EMG 0.5 s, overrun streak 1000): these tests are
about the controller's requests and what reaches the wire, on a machine that other test runs
load; the watchdogs themselves are tested tick by tick in tests/control/test_loop.py.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from exoctl.config.schema import Config, load_config
from exoctl.control.safety import SafetyState
from exoctl.data.patient import patient_from_config
from exoctl.errors import DataError
from exoctl.runtime.controller import Controller, ControllerError
from exoctl.runtime.realtime import SESSION_SWITCH_INTERVAL_S, ThreadRole
from firmware_bridge import protocol as P
from firmware_bridge.fake_link import FakeLink

MODELS = Path(__file__).resolve().parents[2] / "exoctl" / "models"
BASE = load_config()
LIMITS = [j.torque_limit_nm for j in BASE.device.joints]
EMG = patient_from_config(BASE).generate(6.0).emg  # synthetic gait EMG, 2 kHz


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {what}"
        time.sleep(0.01)


@pytest.fixture
def cfg(tmp_path) -> Config:
    np.savez(tmp_path / "emg.npz", emg=EMG, fs_hz=BASE.emg.sampling_rate_hz)
    return BASE.with_overrides(
        model={"path": str(MODELS / "default.onnx")},
        emg={"source": "replay", "replay": {"path": str(tmp_path / "emg.npz"), "loop": True}},
        safety={"emg_timeout_s": 0.5, "max_overrun_streak": 1000},
    )


@pytest.fixture
def rig(cfg) -> Iterator[tuple[Controller, FakeLink]]:
    link = FakeLink(cfg.joint_names, torque_limits_nm=LIMITS)
    c = Controller(cfg, log_seconds=60.0, link=link)
    c.start()
    try:
        yield c, link
    finally:
        c.shutdown(ramp_out=False)


@pytest.fixture
def thread_rig(cfg) -> Iterator[tuple[Controller, FakeLink]]:
    """The in-process mode (estimator.process: false): acquisition and estimator are threads."""
    link = FakeLink(cfg.joint_names, torque_limits_nm=LIMITS)
    c = Controller(cfg.with_overrides(estimator={"process": False}), log_seconds=60.0, link=link)
    c.start()
    try:
        yield c, link
    finally:
        c.shutdown(ramp_out=False)


def _assisting(link: FakeLink) -> bool:
    return bool(link.frames) and bool(np.abs(link.frames[-1].wire).max() > 1.0)


def _session(c: Controller, link: FakeLink) -> None:
    c.start_session("T01", protocol="unit")
    wait_for(lambda: _assisting(link), what="assistance on the wire")


def test_a_session_through_the_methods_and_what_reached_the_wire(rig) -> None:
    c, link = rig
    assert c.session is None and c.safety_state == SafetyState.NORMAL and c.healthy
    cursor = c.ticks_written
    _session(c, link)
    assert [w for _, w, ok in link.requests if ok][-2:] == ["clear_faults", "enable"]
    assert c.session.patient == "T01" and c.session.gains == dict(BASE.control.assist_gain)
    with pytest.raises(ControllerError, match="already running"):
        c.start_session("T02")
    st = c.status()
    assert st["session"]["patient"] == "T01" and st["loop_error"] is None
    assert st["link"]["link"] == "fake" and st["link"]["commands_sent"] > 0
    c.stop_session()  # ramps out (bounded wait), then disables: the firmware holds zero
    assert c.session is None and not link.enabled and link.requests[-1][1] == "disable"
    c.call_in_loop(lambda now: None)  # a tick that sent before the disable has logged too
    end, rows = c.read_ticks(cursor)
    sent = np.array([f.requested for f in link.frames])
    # the frames are a contiguous run of the loop's recorded commands: nothing else was sent
    n = len(sent)
    hits = [i for i in range(len(rows["command"]) - n + 1) if (rows["command"][i] == sent[0]).all()]
    assert any(np.array_equal(rows["command"][i : i + n], sent) for i in hits)
    assert end <= c.ticks_written  # the loop runs on
    assert np.isfinite(rows["start_error"]).all() and len(rows["t"]) == end - cursor


def test_a_realtime_session_runs_with_the_short_switch_interval_and_restores_it(cfg) -> None:
    before = sys.getswitchinterval()
    link = FakeLink(cfg.joint_names, torque_limits_nm=LIMITS)
    c = Controller(cfg, log_seconds=60.0, link=link)
    c.start()
    try:
        _session(c, link)  # default scheduling: the process's own interval
        assert sys.getswitchinterval() == before
        c.stop_session(wait_ramp=False)
        c.apply_realtime(1)  # granted or only reported: sessions are real-time ones from now
        assert sys.getswitchinterval() == before  # idle: the process's own interval
        _session(c, link)
        assert sys.getswitchinterval() == pytest.approx(SESSION_SWITCH_INTERVAL_S)
        c.stop_session(wait_ramp=False)
        assert sys.getswitchinterval() == before
        _session(c, link)  # a shutdown in a session (no ramp-out) restores it too
    finally:
        c.shutdown(ramp_out=False)
    assert sys.getswitchinterval() == before
    assert gc.isenabled()  # the session's frozen collector resumed at the shutdown too


def test_estop_zeroes_the_wire_latches_and_only_a_person_clears_it(rig) -> None:
    c, link = rig
    _session(c, link)
    n_before = len(link.frames)
    c.estop()
    # the controller told the firmware directly, before the loop's next tick
    assert not link.frames[n_before].wire.any() and link.requests[-1][1] == "disable"
    wait_for(lambda: c.safety_state == SafetyState.ESTOP, what="ESTOP")
    assert not any(f.wire.any() for f in list(link.frames)[n_before:])
    c.stop_session(wait_ramp=False)  # the session ends; the latch stays
    with pytest.raises(ControllerError, match="clear it first"):
        c.start_session("T02")
    assert c.session is None
    time.sleep(0.3)
    assert not any(f.wire.any() for f in list(link.frames)[n_before:])  # still nothing
    assert "estop" in [e["kind"] for e in c.collect_events(include_pending=True)]
    assert c.clear_fault()  # a person, once the inputs are healthy
    assert c.safety_state == SafetyState.NORMAL
    _session(c, link)


def test_estop_reaches_the_firmware_when_the_loop_is_dead(rig) -> None:
    c, link = rig
    _session(c, link)
    c.submit(lambda now: 1 / 0)  # a bug in a request: the loop dies (its guard zeroes too)
    wait_for(lambda: not c.loop_running, what="the loop to die")
    assert c.loop_error.startswith("ZeroDivisionError") and not c.healthy
    assert link.enable()  # someone re-enables the device behind the dead loop's back
    n = len(link.frames)
    c.estop()
    assert len(link.frames) == n + 1 and not link.frames[-1].wire.any()
    assert not link.enabled and link.requests[-1][1] == "disable"


def test_a_pulled_cable_latches_and_a_persons_clear_restores_firmware_and_assistance(rig) -> None:
    c, link = rig
    _session(c, link)
    link.pull_cable()
    wait_for(lambda: c.safety_state == SafetyState.FAULT_LATCHED, what="latched link fault")
    time.sleep(0.2)  # longer than the firmware's command timeout
    link.plug_cable()
    assert c.telemetry().fault_bits & P.FAULT_HOST_TIMEOUT and not link.enabled
    wait_for(lambda: c.clear_fault(), what="a clear once the inputs are healthy")
    assert c.safety_state == SafetyState.NORMAL and link.enabled
    assert c.telemetry().fault_bits == 0
    asked = [w for _, w, ok in link.requests if ok]
    assert asked[asked.index("hello", 1) :].count("clear_faults") >= 1  # after the replug
    wait_for(lambda: _assisting(link), what="assistance ramped in again")
    kinds = [e["kind"] for e in c.collect_events(include_pending=True)]
    assert kinds[0] == "link_down"  # (whether a tick saw the host-timeout bit is a race)
    assert [f["kind"] for f in c.status()["faults"]] == kinds


def test_a_firmware_fault_bit_latches_and_is_reported(rig) -> None:
    c, link = rig
    _session(c, link)
    link.raise_fault(P.FAULT_OVER_TEMPERATURE)
    wait_for(lambda: c.safety_state == SafetyState.FAULT_LATCHED, what="latched")
    active, _ = c.active_conditions
    assert "firmware_fault" in active
    assert not link.enabled  # the device dropped out: the loop sends nothing
    assert "firmware_fault" in [e["kind"] for e in c.collect_events(include_pending=True)]
    wait_for(lambda: c.clear_fault(), what="clear")  # clears the firmware's fault too
    assert c.telemetry().fault_bits == 0 and link.enabled


def test_swap_model_between_sessions_only(rig, cfg, tmp_path) -> None:
    c, link = rig
    before = c.model_identity()
    assert before.model_path.name == "default.onnx"
    assert before.calibration_path.name == "sim_calibration.yaml"
    network = cfg.with_overrides(model={"path": str(MODELS / "network.onnx")})
    c.swap_model(network)
    ident = c.model_identity()
    assert ident.model_path.name == "network.onnx"
    assert ident.model_id == "exoctl-torque-model/1"  # no name or version in it: its format
    assert c.n_synergies == 2 and c.cfg.model.path == network.model.path
    ticks = c.ticks
    wait_for(lambda: c.ticks > ticks + 50 and np.isfinite(c.status()["estimate_nm"]["hip_l"]))
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(DataError, match="onnxruntime cannot load"):
        c.swap_model(cfg.with_overrides(model={"path": str(bad)}))
    assert c.model_identity() == ident  # a refused load changes nothing
    _session(c, link)
    with pytest.raises(ControllerError, match="between sessions"):
        c.swap_model(cfg)
    assert c.model_identity() == ident


def test_read_emg_returns_the_samples_as_they_arrived(rig) -> None:
    c, _ = rig
    since = c.emg_written
    wait_for(lambda: c.emg_written > since + 400, what="EMG")
    end, data, stamps, lost = c.read_emg(since)
    assert lost == 0 and len(data) == len(stamps) == end - since
    np.testing.assert_array_equal(data, EMG[np.arange(since, end) % len(EMG)])
    assert np.all(np.diff(stamps) > 0)


def test_threads_are_handed_out_by_role_and_raised_by_reference(thread_rig) -> None:
    c, _ = thread_rig
    threads = c.threads()
    assert set(threads) == {ThreadRole.CONTROL_LOOP, ThreadRole.ACQUISITION}  # the fake has none
    acq = threads[ThreadRole.ACQUISITION]
    acq.name = "renamed-on-purpose"  # the priority follows the object, not the name
    rep = c.apply_realtime(2)
    assert c.realtime_report is rep
    note = next(n for n in rep.notes if n.startswith("input threads"))
    assert "acquisition (renamed-on-purpose)" in note
    if rep.sched_error is None:  # granted here (root with CAP_SYS_NICE); else only reported
        assert os.sched_getscheduler(acq.native_id) == os.SCHED_FIFO
        assert os.sched_getparam(acq.native_id).sched_priority == 1  # 2 - ACQUISITION's 2, >= 1
        assert os.sched_getparam(threads[ThreadRole.CONTROL_LOOP].native_id).sched_priority == 2
