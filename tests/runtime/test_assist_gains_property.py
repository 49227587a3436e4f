"""Assist levels through the Controller's methods, as hypothesis sequences of what a clinician
does: session start (with or without levels), assist set (one level, or some joints), fault
clear, e-stop, session stop.

The property, for every joint after every step: its target level is the last value a person
set for that joint (a session start sets every joint: the levels it names, the configured ones
for the rest), and while it ramps its level in force stays between the level before the change
and the new target. Real parts as in tests/runtime/test_controller.py: the control loop in its
thread, EMG replayed from the synthetic patient, the shipped ONNX model; only the firmware is
the in-process FakeLink. Short ramps keep an example quick; nothing here asserts timing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from exoctl.config.schema import Config, load_config
from exoctl.data.patient import patient_from_config
from exoctl.runtime.controller import Controller, ControllerError
from firmware_bridge.fake_link import FakeLink

MODELS = Path(__file__).resolve().parents[2] / "exoctl" / "models"
BASE = load_config()
JOINTS = tuple(BASE.joint_names)
DEFAULT = {j: float(g) for j, g in BASE.control.assist_gain.items()}
EMG = patient_from_config(BASE).generate(6.0).emg  # synthetic gait EMG
EPS = 1e-9


@pytest.fixture(scope="module")
def controller(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Controller]:
    tmp = tmp_path_factory.mktemp("gains")
    np.savez(tmp / "emg.npz", emg=EMG, fs_hz=BASE.emg.sampling_rate_hz)
    cfg: Config = BASE.with_overrides(
        model={"path": str(MODELS / "default.onnx")},
        emg={"source": "replay", "replay": {"path": str(tmp / "emg.npz"), "loop": True}},
        safety={"emg_timeout_s": 0.5, "max_overrun_streak": 1000},
        control={"ramp_in_s": 0.15, "ramp_out_s": 0.1},
    )
    c = Controller(cfg, log_seconds=60.0, link=FakeLink(cfg.joint_names))
    c.start()
    try:
        yield c
    finally:
        c.shutdown(ramp_out=False)


level = st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.8, 1.0])
some_joints = st.dictionaries(st.sampled_from(JOINTS), level, min_size=1, max_size=len(JOINTS))
step = st.one_of(
    st.tuples(st.just("start"), st.one_of(st.none(), level, some_joints)),
    st.tuples(st.just("set"), st.one_of(level, some_joints)),
    st.tuples(st.just("clear"), st.none()),
    st.tuples(st.just("estop"), st.none()),
    st.tuples(st.just("stop"), st.none()),
)


def _settle(c: Controller, before: dict[str, float], timeout_s: float = 3.0) -> dict[str, float]:
    """Sample the levels until every joint is at its target; each sample must lie between the
    level before the step and the target. Returns the targets."""
    deadline = time.monotonic() + timeout_s
    while True:
        lv = c.assist_levels()
        target, now = lv["target"], lv["in_force"]
        for j in JOINTS:
            lo, hi = sorted((before[j], target[j]))
            assert lo - EPS <= now[j] <= hi + EPS, (j, before[j], now[j], target[j])
        if all(abs(now[j] - target[j]) <= EPS for j in JOINTS):
            return target
        assert time.monotonic() < deadline, f"levels did not reach their targets: {lv}"
        time.sleep(0.01)


def _expected_after(kind: str, arg: object, model: dict[str, float], session: bool):
    """What the clinician's step means for each joint's target (None: refused, unchanged)."""
    if kind == "start":
        if session:
            return None
        base = dict(DEFAULT)
        if isinstance(arg, dict):
            base.update(arg)
        elif arg is not None:
            base = dict.fromkeys(JOINTS, float(arg))  # type: ignore[arg-type]
        return base
    if kind == "set":
        new = dict(model)
        new.update(arg if isinstance(arg, dict) else dict.fromkeys(JOINTS, arg))
        return new
    return None


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    first=st.tuples(st.just("start"), st.one_of(level, some_joints)),
    steps=st.lists(step, min_size=1, max_size=6),
)
def test_each_joints_target_is_the_last_level_set_for_it_and_ramps_stay_between(
    controller: Controller, first: tuple[str, object], steps: list[tuple[str, object]]
) -> None:
    c = controller
    # each example starts between sessions, clear of any latch, from settled levels
    if c.session is not None:
        c.stop_session(wait_ramp=False)
    c.clear_fault()
    model = _settle(c, c.assist_levels()["in_force"])
    for kind, arg in [first, *steps]:
        before = c.assist_levels()["target"]  # settled: in force == target
        expected = _expected_after(kind, arg, model, c.session is not None)
        try:
            if kind == "start":
                info = c.start_session("T01", "property", arg)  # type: ignore[arg-type]
                assert info.gains == expected
            elif kind == "set":
                got = c.set_assist(arg)  # type: ignore[arg-type]
                assert got == expected  # every joint's target, not only the named ones
            elif kind == "clear":
                c.clear_fault()
            elif kind == "estop":
                c.estop()
            elif c.session is not None:
                c.stop_session()
        except ControllerError:
            # refused (a session already runs, a latch not yet clear): nothing changed
            assert kind == "start"
            expected = None
        if expected is not None:
            model = expected
        target = _settle(c, before)
        assert target == model, (kind, arg)
        if c.session is not None:
            assert c.session.gains == model
