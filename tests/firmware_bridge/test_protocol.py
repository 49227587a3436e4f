"""Codec: CRC check value, round trips, the committed vectors, stream resynchronisation."""

from __future__ import annotations

import json

import numpy as np
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
    assert vec["receiver"] in (P.DEVICE, P.HOST)
    if vec["expect"] == "ok":
        m = P.decode(wire[:-1], vec["receiver"])
        assert vec["type"] == m.TYPE
        assert P.meant_for(m.TYPE) == vec["receiver"]
        assert to_fields(m) == vec["fields"]
        assert P.encode(m) == wire
    else:
        with pytest.raises(P.FrameError) as ei:
            P.decode(wire[:-1], vec["receiver"])
        assert ei.value.kind == vec["expect"]
        if vec["expect"] == "version" and vec["receiver"] == P.DEVICE:
            assert ei.value.hello_nonce == vec["answer_nonce"]
        # the verdict of a structural check does not depend on who receives the frame
        if vec["expect"] not in ("direction", "length", "value"):
            for other in (P.DEVICE, P.HOST, None):
                with pytest.raises(P.FrameError, match=vec["expect"]):
                    P.decode(wire[:-1], other)


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
def test_vector_streams(vec: dict) -> None:
    frames = {f["name"]: f for f in VECTORS["frames"]}
    data = bytes.fromhex(vec["hex"])
    for chunk in (len(data), 1, 7):  # the result must not depend on how bytes arrive
        answers: list[int] = []

        def on_version(e: P.FrameError, answers: list[int] = answers) -> None:
            if e.hello_nonce is not None:
                answers.append(e.hello_nonce)

        d = P.StreamDecoder(on_version, receiver=vec["receiver"])
        got = []
        for i in range(0, len(data), chunk):
            got += d.feed(data[i : i + chunk])
        assert [to_fields(m) for m in got] == [frames[n]["fields"] for n in vec["expect_messages"]]
        assert {k: v for k, v in d.errors.items() if v} == vec["expect_errors"]
        assert d.good == len(vec["expect_messages"])
        assert answers == vec["expect_answers"]


def test_overlong_run_is_counted_at_its_delimiter_and_not_after_a_reopen() -> None:
    d = P.StreamDecoder(receiver=P.DEVICE)
    d.feed(b"\x55" * 248)
    assert d.errors["framing"] == 0  # not yet: counted when the 0x00 arrives
    d.feed(b"\x55" * 1000)
    assert d.errors["framing"] == 0
    assert d.feed(b"\x00" + P.encode(P.Enable(1))) == [P.Enable(1)]
    assert d.errors["framing"] == 1
    d.feed(b"\x55" * 300)
    d.discard_partial()  # the port was reopened: the cut run is forgotten, uncounted
    assert d.feed(b"\x00" + P.encode(P.Enable(2))) == [P.Enable(2)]
    assert d.errors["framing"] == 1


@pytest.mark.parametrize("case", VECTORS["fixed_point"], ids=lambda c: f"{c['quantity']}:{c['si']}")
def test_fixed_point_vectors(case: dict) -> None:
    value, k = float(case["si"]), case["counts_per_unit"]
    assert repr(value * k) == case["product"]
    if case["wire_type"] == "u16":
        if case["count"] is None:
            with pytest.raises(ValueError):
                P.to_u16_count(value, k, case["quantity"])
        else:
            assert P.to_u16_count(value, k, case["quantity"]) == case["count"]
    elif case["count"] is None:
        with pytest.raises(ValueError, match="not finite"):
            P.to_count(value, k)
    else:
        assert P.to_count(value, k) == case["count"]
        # numpy's rint (the host link's and the emulator's vectorised path) agrees
        c = np.clip(np.rint(np.array([value]) * float(k)), -32767, 32767)
        assert int(c[0]) == case["count"]


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


J = (P.JointInfo("a", 1, 0, 1),)


@pytest.mark.parametrize(
    ("msg", "match"),
    [
        (P.TorqueCommand(0, 2, (1,)), "seq 0"),
        (P.DeviceInfo(1, 1, 1, "", J), "device_id"),
        (P.DeviceInfo(1, 1, 1, "has space", J), "0x20"),
        (P.DeviceInfo(1, 1, 1, "tab\t", J), "0x09"),
        (P.DeviceInfo(1, 1, 1, "exo\0", J), "0x00"),
        (P.DeviceInfo(1, 1, 1, "caf\u00e9", J), "0xc3"),
        (P.DeviceInfo(1, 1, 1, "d", (P.JointInfo("", 1, 0, 1),)), "joint name"),
        (P.DeviceInfo(1, 0, 1, "d", J), "command_timeout_ms"),
        (P.DeviceInfo(1, 1, 0, "d", J), "telemetry_period_us"),
        (P.DeviceInfo(1, 1, 1, "d", (P.JointInfo("a", 65536, 0, 1),)), "torque_limit"),
        (P.DeviceInfo(1, 1, 1, "d", (P.JointInfo("a", -1, 0, 1),)), "torque_limit"),
        (P.Ack(1, P.T_HELLO, 0, 0, 0), "request_type"),
        (P.Ack(1, P.T_ENABLE, 5, 0, 0), "result"),
        (P.Ack(1, P.T_ENABLE, 0, 3, 0), "state"),
        (P.Ack(1, P.T_ENABLE, 0, 0, 0x100), "fault_bits"),
        (P.Telemetry(1, 1, 1, 8, 0, (0,), (0,), (0,), (0,), (0,), (0,)), "flags"),
        (P.Telemetry(1, 1, 1, 0, 0x100, (0,), (0,), (0,), (0,), (0,), (0,)), "fault_bits"),
        (P.Telemetry(1, 1, 1, 0, 0, (0,), (0,), (0,), (0,), (0,), (0x10,)), "joint_faults"),
        (P.FaultReport(1, 8, 0, 0, 0), "code"),
        (P.FaultReport(1, 0, 0, 0, 1), "latched"),
        (P.FaultReport(1, 4, 1, 0, 0x10), "latched"),
        (P.FaultReport(1, 4, 0, 8, 0x10), "joint"),
        (P.EstopState(1, 2), "pressed"),
    ],
)
def test_encoder_refuses_what_a_receiver_drops(msg: P.Message, match: str) -> None:
    """A sender never produces a frame the receiver must drop: the same rules both ways."""
    with pytest.raises(ValueError, match=match) as ei:
        P.encode(msg)
    assert not isinstance(ei.value, P.FrameError) or ei.value.kind == "value"


def test_stream_decoder_at_each_end_drops_the_other_direction() -> None:
    hello, tel = (
        P.encode(P.Hello(1)),
        P.encode(P.Telemetry(1, 1, 1, 0, 0, (0,), (0,), (0,), (0,), (0,), (0,))),
    )
    dev, host, sniff = (P.StreamDecoder(receiver=r) for r in (P.DEVICE, P.HOST, None))
    assert dev.feed(hello + tel) == [P.Hello(1)] and dev.errors["direction"] == 1
    assert [type(m) for m in host.feed(hello + tel)] == [P.Telemetry]
    assert host.errors["direction"] == 1
    assert len(sniff.feed(hello + tel)) == 2 and sniff.errors["direction"] == 0
    assert P.StreamDecoder().receiver == P.HOST  # the package is the host side
    with pytest.raises(ValueError, match="receiver"):
        P.StreamDecoder(receiver="firmware")


def test_u16_torque_limit_range() -> None:
    """The torque limit is u16 counts of 0.01 N m: 0 .. 655.35 N m, refused outside."""
    assert P.to_u16_count(655.35, P.TORQUE_COUNTS_PER_NM, "limit") == 65535
    info = P.DeviceInfo(1, 1, 1, "d", (P.JointInfo("a", 65535, 0, 1),))
    assert P.decode(P.encode(info)[:-1]).joints[0].torque_limit * P.TORQUE_SCALE_NM == 655.35
    with pytest.raises(ValueError, match="655.35"):
        P.to_u16_count(655.36, P.TORQUE_COUNTS_PER_NM, "torque_limit_nm")
    with pytest.raises(ValueError, match="0 .. 655.35"):
        P.to_u16_count(-1.0, P.TORQUE_COUNTS_PER_NM, "torque_limit_nm")
