"""The byte streams of the vectors file: resynchronisation, idle fill, over-long runs.

Each stream is a concatenation of named frames (and noise) with the messages and error
counts a receiver must end with (docs/protocol.md section 2, the receiver rules).
"""

from __future__ import annotations

from typing import Any

from firmware_bridge import protocol as P
from firmware_bridge.vectors.invalid_frames import ANSWERS, body_bytes


def streams(by_name: dict[str, bytes]) -> list[dict[str, Any]]:
    """The streams, built from the frames' wire bytes by name."""
    max_frame = P.cobs_encode(body_bytes(1, 0x7F, bytes(range(1, 241)))) + b"\x00"
    assert len(max_frame) == P.MAX_ENCODED + 1
    out: list[dict[str, Any]] = [
        {
            "name": "garbage_then_frame",
            "receiver": P.DEVICE,
            "hex": (b"\x13\x37\xff\xfe" + b"\x00" + by_name["torque_4_joints"]).hex(),
            "expect_messages": ["torque_4_joints"],
            "expect_errors": {"framing": 1},
            "note": "line noise before a frame: one framing error, then resynchronised",
        },
        {
            "name": "idle_fill_between_frames",
            "receiver": P.DEVICE,
            "hex": (b"\x00\x00" + by_name["hello"] + b"\x00\x00\x00" + by_name["heartbeat"]).hex(),
            "expect_messages": ["hello", "heartbeat"],
            "expect_errors": {},
            "note": "empty frames are neither messages nor errors",
        },
        {
            "name": "overlong_run_then_frame",
            "receiver": P.DEVICE,
            "hex": (bytes([0x55]) * 300 + b"\x00" + by_name["enable"]).hex(),
            "expect_messages": ["enable"],
            "expect_errors": {"framing": 1},
            "note": "300 bytes without a delimiter: dropped as one error",
        },
        {
            "name": "max_length_frame_is_a_frame",
            "receiver": P.DEVICE,
            "hex": max_frame.hex(),
            "expect_messages": [],
            "expect_errors": {"type": 1},
            "note": "247 bytes then 0x00 is not over-long: it is decoded (here: type 0x7f, "
            "240-byte payload, counted as an unknown type)",
        },
        {
            "name": "overlong_248_bytes",
            "receiver": P.DEVICE,
            "hex": (bytes([0x55]) * 248 + b"\x00" + by_name["enable"]).hex(),
            "expect_messages": ["enable"],
            "expect_errors": {"framing": 1},
            "note": "the 248th byte makes the run over-long; one error at its 0x00",
        },
        {
            "name": "overlong_run_counted_once",
            "receiver": P.DEVICE,
            "hex": (bytes(range(1, 256)) * 8 + b"\x00" + by_name["enable"]).hex(),
            "expect_messages": ["enable"],
            "expect_errors": {"framing": 1},
            "note": "2040 bytes without a delimiter: still one error, however long",
        },
        {
            "name": "two_overlong_runs",
            "receiver": P.DEVICE,
            "hex": (bytes([0x55]) * 300 + b"\x00" + bytes([0x66]) * 300 + b"\x00").hex(),
            "expect_messages": [],
            "expect_errors": {"framing": 2},
            "note": "",
        },
        {
            "name": "overlong_run_not_yet_ended",
            "receiver": P.DEVICE,
            "hex": (by_name["enable"] + bytes([0x55]) * 300).hex(),
            "expect_messages": ["enable"],
            "expect_errors": {},
            "note": "an over-long run is counted when its 0x00 arrives, not before",
        },
        {
            "name": "corrupt_between_good",
            "receiver": P.HOST,
            "hex": (
                by_name["telemetry_4_joints"]
                + by_name["crc_bit_flip_payload"]
                + by_name["ack_enable_ok"]
            ).hex(),
            "expect_messages": ["telemetry_4_joints", "ack_enable_ok"],
            "expect_errors": {"crc": 1},
            "note": "the CRC is checked before the direction",
        },
        {
            "name": "missing_delimiter_merges_frames",
            "receiver": P.DEVICE,
            "hex": (by_name["hello"][:-1] + by_name["enable"]).hex(),
            "expect_messages": [],
            "expect_errors": {"crc": 1},
            "note": "a lost 0x00 merges two frames: COBS valid, CRC fails, both dropped",
        },
        {
            "name": "loopback_at_the_device",
            "receiver": P.DEVICE,
            "hex": (
                by_name["telemetry_4_joints"] + by_name["heartbeat"] + by_name["ack_enable_ok"]
            ).hex(),
            "expect_messages": ["heartbeat"],
            "expect_errors": {"direction": 2},
            "note": "device->host frames heard by the device are dropped and counted",
        },
        {
            "name": "foreign_hello_at_the_device",
            "receiver": P.DEVICE,
            "hex": (
                by_name["hello_version_2"]
                + by_name["hello_version_2_short_payload"]
                + by_name["enable"]
            ).hex(),
            "expect_messages": ["enable"],
            "expect_errors": {"version": 2},
            "expect_answers": [ANSWERS["hello_version_2"]],
            "note": "both counted as version errors; only the one with a nonce is answered",
        },
    ]
    for s in out:
        s.setdefault("expect_answers", [])
    return out
