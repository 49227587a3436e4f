"""Codec: CRC check value, round trips, the committed vectors, stream resynchronisation."""

from __future__ import annotations

import json

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.vectors.generate import VECTORS_PATH, render, to_fields

VECTORS = json.loads(VECTORS_PATH.read_text())


def test_crc_check_value() -> None:
    assert P.crc16(b"123456789") == 0x29B1
    assert VECTORS["crc_check"]["crc"] == "0x29b1"


def test_vectors_file_is_what_the_generator_produces() -> None:
    # The committed file must not drift from the codec (regenerate with
    # `python -m firmware_bridge.vectors.generate`).
    assert VECTORS_PATH.read_text() == render()


@pytest.mark.parametrize("vec", VECTORS["frames"], ids=lambda v: v["name"])
def test_vector_frames(vec: dict) -> None:
    wire = bytes.fromhex(vec["hex"])
    assert wire[-1] == 0 and 0 not in wire[:-1]
    if vec["expect"] == "ok":
        m = P.decode(wire[:-1])
        assert vec["type"] == m.TYPE
        assert to_fields(m) == vec["fields"]
        assert P.encode(m) == wire
    else:
        with pytest.raises(P.FrameError) as ei:
            P.decode(wire[:-1])
        assert ei.value.kind == vec["expect"]


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
def test_vector_streams(vec: dict) -> None:
    frames = {f["name"]: f for f in VECTORS["frames"]}
    data = bytes.fromhex(vec["hex"])
    for chunk in (len(data), 1, 7):  # the result must not depend on how bytes arrive
        d = P.StreamDecoder()
        got = []
        for i in range(0, len(data), chunk):
            got += d.feed(data[i : i + chunk])
        assert [to_fields(m) for m in got] == [frames[n]["fields"] for n in vec["expect_messages"]]
        assert {k: v for k, v in d.errors.items() if v} == vec["expect_errors"]
        assert d.good == len(vec["expect_messages"])


def test_round_trip_each_type() -> None:
    msgs = [
        P.Hello(1),
        P.Enable(2),
        P.Disable(3),
        P.ClearFaults(4),
        P.TorqueCommand(5, 6, (0, -1, 32767, -32768)),
        P.Heartbeat(7, 8),
        P.DeviceInfo(9, 100, 2000, "dev", (P.JointInfo("a", 1, -2, 3),)),
        P.Ack(10, P.T_ENABLE, P.ACK_OK, P.STATE_ENABLED, 0),
        P.Telemetry(11, 12, 13, 1, 2, (1,), (2,), (3,), (4,), (5,), (6,)),
        P.FaultReport(14, 0, 1, 0xFF, 1),
        P.EstopState(15, 1),
    ]
    assert {m.TYPE for m in msgs} == set(P.MESSAGE_TYPES)
    for m in msgs:
        wire = P.encode(m)
        assert wire.endswith(b"\x00") and 0 not in wire[:-1]
        assert P.decode(wire[:-1]) == m


def test_encoder_refuses_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="torque count"):
        P.encode(P.TorqueCommand(1, 2, (40000,)))
    with pytest.raises(ValueError, match="1..8 joints"):
        P.encode(P.TorqueCommand(1, 2, ()))
    with pytest.raises(ValueError, match="device_id"):
        P.encode(P.DeviceInfo(1, 1, 1, "x" * 17, (P.JointInfo("a", 1, 0, 1),)))
