"""The whole chain, from LSL to the wire: a stream with the amplifier's source id that
replaces it during a session is refused, and the refusal removes assistance.

Real parts: the HIL's synthetic patient streams EMG over LSL on loopback (synthetic data), the
Controller resolves it and runs its acquisition and control-loop threads with the shipped
linear ONNX model; only the firmware is the in-process FakeLink, which records what reached
the wire.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np

from exoctl.config.schema import load_config
from exoctl.control.safety import SafetyState
from exoctl.data.patient import patient_from_config
from exoctl.hil.emg_source import EmgOutlet
from exoctl.runtime.controller import Controller
from firmware_bridge.fake_link import FakeLink

MODELS = Path(__file__).resolve().parents[2] / "exoctl" / "models"
BASE = load_config()


def _wait(cond: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {what}"
        time.sleep(0.01)


def test_a_replacement_stream_during_a_session_is_refused_and_removes_assistance() -> None:
    sid = f"test-{uuid.uuid4().hex[:12]}"
    cfg = BASE.with_overrides(
        model={"path": str(MODELS / "default.onnx")},
        emg={"lsl": {"source_id": sid, "resolve_timeout_s": 10.0}},
        safety={"emg_timeout_s": 1.0, "max_overrun_streak": 1000},
    )
    patient = patient_from_config(cfg)
    amplifier = EmgOutlet(patient, cfg.emg.lsl.name, source_id=sid, record_truth=False)
    amplifier.start()
    link = FakeLink(
        cfg.joint_names, torque_limits_nm=[j.torque_limit_nm for j in cfg.device.joints]
    )
    c = Controller(cfg, log_seconds=60.0, link=link)
    impostor: EmgOutlet | None = None
    try:
        c.start()
        c.start_session("T01", protocol="unit")
        _wait(lambda: np.abs(link.frames[-1].wire).max() > 1.0, 15.0, "assistance on the wire")
        # The same source id on the same host, a new outlet: what a second program (or a
        # restarted driver) publishes. Then the amplifier's stream goes away.
        impostor = EmgOutlet(patient, cfg.emg.lsl.name, source_id=sid, record_truth=False)
        impostor.start()
        amplifier.close()
        _wait(lambda: "emg_source" in c.active_conditions[0], 15.0, "the emg_source fault")
        _wait(lambda: c.safety_state == SafetyState.FAULT_LATCHED, 5.0, "the latch")
        assert not link.frames[-1].wire.any()
        kinds = [e["kind"] for e in c.collect_events(include_pending=True)]
        assert "emg_source" in kinds, kinds
        acquisition = c.status()["acquisition"]
        assert acquisition["error"].startswith("EMG stream refused")
        assert "came back as another stream" in acquisition["error"]
        assert not impostor._outlet.have_consumers()  # type: ignore[union-attr]
        # It holds: no clear while the refusal stands, whatever the impostor sends.
        assert c.clear_fault() is False
        time.sleep(0.3)
        assert c.safety_state == SafetyState.FAULT_LATCHED and not link.frames[-1].wire.any()
    finally:
        c.shutdown(ramp_out=False)
        amplifier.close()
        if impostor is not None:
            impostor.close()
