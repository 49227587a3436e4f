"""The daemon's LSL outlets over loopback with pylsl: metadata, data, event markers."""

from __future__ import annotations

import json
import time
import uuid

import numpy as np
import pylsl

from exoctl.config.schema import load_config
from exoctl.service.lsl_outlets import SIGN_CONVENTION, LslPublisher


def _channels(info: pylsl.StreamInfo) -> list[dict[str, str]]:
    out = []
    ch = info.desc().child("channels").child("channel")
    while not ch.empty():
        out.append(
            {k: ch.child_value(k) for k in ("label", "unit", "type", "joint", "sign_convention")}
        )
        ch = ch.next_sibling()
    return out


def _inlet(source_id: str) -> pylsl.StreamInlet:
    (info,) = pylsl.resolve_byprop("source_id", source_id, 1, 10.0)
    inlet = pylsl.StreamInlet(info, recover=False)
    inlet.open_stream(timeout=5.0)
    return inlet


def test_streams_carry_labels_units_and_sign_convention_and_markers_arrive() -> None:
    name = f"exo-test-{uuid.uuid4().hex[:8]}"
    cfg = load_config().with_overrides(device={"name": name})
    joints = list(cfg.joint_names)
    pub = LslPublisher(cfg)

    state = _inlet(f"{name}-joint_state")
    info = state.info()
    assert (info.name(), info.type(), info.channel_count()) == (
        "exoctl-joint-state", "JointState", 2 * len(joints)
    )  # fmt: skip
    assert info.desc().child_value("sign_convention") == SIGN_CONVENTION
    assert info.desc().child("acquisition").child_value("model") == name
    chans = _channels(info)
    assert [c["label"] for c in chans] == [f"angle_{j}" for j in joints] + [
        f"applied_torque_{j}" for j in joints
    ]
    assert [c["unit"] for c in chans] == ["rad"] * len(joints) + ["N m"] * len(joints)
    assert {c["sign_convention"] for c in chans} == {SIGN_CONVENTION}
    assert [c["joint"] for c in chans] == joints + joints
    est = _channels(_inlet(f"{name}-estimate").info())
    assert [(c["label"], c["unit"], c["type"]) for c in est] == [
        (j, "N m", "Torque") for j in joints
    ]

    events = _inlet(f"{name}-events")
    assert events.info().type() == "Markers" and events.info().nominal_srate() == 0.0
    assert events.info().channel_format() == pylsl.cf_string

    # Data: rows stamped with their ticks' times, in the LSL clock.
    t = time.monotonic() + np.arange(50) / 500.0
    rows = np.arange(50 * 2 * len(joints), dtype=float).reshape(50, -1)
    pub.push("joint_state", t, rows)
    got, stamps = [], []
    end = time.monotonic() + 5.0
    while len(got) < 50 and time.monotonic() < end:
        s, ts = state.pull_chunk(timeout=0.2)
        got += s
        stamps += ts
    np.testing.assert_array_equal(np.asarray(got), rows.astype(np.float32))
    np.testing.assert_allclose(stamps, t + pub.offset, atol=1e-6)

    # Markers, each a JSON object naming its event, stamped when it happened.
    t_fault = time.monotonic() - 0.25
    pub.marker("session_start", {"patient": "P01", "gains": {"hip_l": 0.3}})
    pub.marker("fault", {"kind": "emg_stale", "t_zero": float("nan")}, t=t_fault)
    pub.marker("fault_clear", {"state": "NORMAL"})
    seen = []
    end = time.monotonic() + 5.0
    while len(seen) < 3 and time.monotonic() < end:
        s, ts = events.pull_sample(timeout=0.2)
        if s is not None:
            seen.append((json.loads(s[0]), ts))
    assert [d["event"] for d, _ in seen] == ["session_start", "fault", "fault_clear"]
    assert seen[0][0]["gains"] == {"hip_l": 0.3}
    assert seen[1][0]["t_zero"] is None  # strict JSON: NaN as null
    assert abs(seen[1][1] - (t_fault + pub.offset)) < 1e-6
