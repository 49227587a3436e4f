"""Generate ``frames.json``: protocol test vectors (valid and invalid frames, byte streams).

Run ``.venv/bin/python -m firmware_bridge.vectors.generate`` after a protocol change; the test
suite fails when the committed file differs from what this produces, so the file and the codec
cannot drift apart. Invalid frames are built by hand (bytes, not through the encoder) where the
encoder would refuse to produce them.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

from firmware_bridge import protocol as P

VECTORS_PATH = Path(__file__).with_name("frames.json")

_JOINT_COLS = ("angle", "velocity", "torque", "current", "temperature", "joint_faults")


def to_fields(m: P.Message) -> dict:
    """A message as the JSON fields of docs/protocol.md section 4 (names from the layouts)."""
    if isinstance(m, P.TorqueCommand):
        return {
            "seq": m.seq,
            "host_time_us": m.host_time_us,
            "n_joints": len(m.torque),
            "torque": list(m.torque),
        }
    if isinstance(m, P.DeviceInfo):
        return {
            "nonce": m.nonce,
            "command_timeout_ms": m.command_timeout_ms,
            "telemetry_period_us": m.telemetry_period_us,
            "device_id": m.device_id,
            "n_joints": m.n_joints,
            "joints": [
                {
                    "name": j.name,
                    "torque_limit": j.torque_limit,
                    "angle_min": j.angle_min,
                    "angle_max": j.angle_max,
                }
                for j in m.joints
            ],
        }
    if isinstance(m, P.Telemetry):
        n = len(m.angle)
        return {
            "telemetry_seq": m.telemetry_seq,
            "fw_time_us": m.fw_time_us,
            "last_seq_applied": m.last_seq_applied,
            "flags": m.flags,
            "fault_bits": m.fault_bits,
            "n_joints": n,
            "joints": [{c: getattr(m, c)[k] for c in _JOINT_COLS} for k in range(n)],
        }
    return {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}


def _body(version: int, mtype: int, payload: bytes, *, length: int | None = None) -> bytes:
    b = P.HEADER.pack(version, mtype, len(payload) if length is None else length) + payload
    return b + P.CRC.pack(P.crc16(b))


def _frame(body: bytes) -> str:
    return (P.cobs_encode(body) + b"\x00").hex()


def _valid_messages() -> list[tuple[str, P.Message, str]]:
    hip_knee = (
        P.JointInfo("hip_l", 4000, -5000, 18000),
        P.JointInfo("hip_r", 4000, -5000, 18000),
        P.JointInfo("knee_l", 3500, -500, 20000),
        P.JointInfo("knee_r", 3500, -500, 20000),
    )
    return [
        ("hello", P.Hello(0x12345678), "start a session"),
        ("hello_zero_nonce", P.Hello(0), "nonce 0: the body is mostly zeros (COBS)"),
        ("enable", P.Enable(1), ""),
        ("disable", P.Disable(0xBEEF), ""),
        ("clear_faults", P.ClearFaults(7), ""),
        (
            "torque_4_joints",
            P.TorqueCommand(42, 1_000_000, (1250, -1250, 0, 3500)),
            "12.5, -12.5, 0, 35 N m",
        ),
        (
            "torque_zero",
            P.TorqueCommand(1, 0, (0, 0, 0, 0)),
            "all-zero torque: many COBS zero runs",
        ),
        (
            "torque_extremes",
            P.TorqueCommand(0xFFFFFFFF, 0xFFFFFFFF, (32767, -32768, -1, 1)),
            "largest seq and time, int16 extremes",
        ),
        ("torque_1_joint", P.TorqueCommand(2, 5, (-100,)), "single joint"),
        (
            "torque_8_joints",
            P.TorqueCommand(3, 6, (1, -2, 3, -4, 5, -6, 7, -8)),
            "MAX_JOINTS",
        ),
        ("heartbeat", P.Heartbeat(123456, 41), ""),
        (
            "device_info_4_joints",
            P.DeviceInfo(0x12345678, 100, 2000, "exo-emulator", hip_knee),
            "the default bilateral hip/knee exoskeleton",
        ),
        (
            "device_info_full_id",
            P.DeviceInfo(1, 65535, 65535, "ABCDEFGHIJKLMNOP", (P.JointInfo("abcdefgh", 1, -1, 1),)),
            "16-byte id and 8-byte name: no NUL terminator",
        ),
        ("ack_enable_ok", P.Ack(1, P.T_ENABLE, P.ACK_OK, P.STATE_ENABLED, 0), ""),
        (
            "ack_enable_refused",
            P.Ack(2, P.T_ENABLE, P.ACK_FAULT_LATCHED, P.STATE_DISABLED, P.FAULT_HOST_TIMEOUT),
            "refused: host timeout latched",
        ),
        (
            "telemetry_4_joints",
            P.Telemetry(
                1000,
                2_000_000,
                42,
                P.FLAG_ENABLED | P.FLAG_HANDSHAKEN,
                P.FAULT_TORQUE_CLAMPED,
                (3333, -1000, 12000, 500),
                (100, -2500, 0, 32767),
                (1250, -1250, 0, 3500),
                (28, -28, 0, 78),
                (305, 310, 402, -100),
                (0, 0, 0, P.JFAULT_TORQUE_CLAMPED),
            ),
            "",
        ),
        (
            "telemetry_estop",
            P.Telemetry(
                7,
                0,
                0,
                P.FLAG_ESTOP | P.FLAG_HANDSHAKEN,
                P.FAULT_ESTOP,
                (0,),
                (0,),
                (0,),
                (0,),
                (250,),
                (0,),
            ),
            "",
        ),
        (
            "fault_report_host_timeout",
            P.FaultReport(5_000_000, 0, 1, P.JOINT_DEVICE, P.FAULT_HOST_TIMEOUT),
            "",
        ),
        ("estop_pressed", P.EstopState(99, 1), ""),
        ("estop_released", P.EstopState(100, 0), ""),
    ]


def build() -> dict:
    frames: list[dict] = []
    for name, m, note in _valid_messages():
        frames.append(
            {
                "name": name,
                "hex": P.encode(m).hex(),
                "expect": "ok",
                "type": m.TYPE,
                "fields": to_fields(m),
                "note": note,
            }
        )

    tq = P.encode_body(P.TorqueCommand(42, 1_000_000, (1250, -1250, 0, 3500)))
    bad: list[tuple[str, str, str, str]] = []

    def add(name: str, hexstr: str, expect: str, note: str) -> None:
        bad.append((name, hexstr, expect, note))

    flipped = bytearray(tq)
    flipped[6] ^= 0x01
    add("crc_bit_flip_payload", _frame(bytes(flipped)), "crc", "one payload bit flipped")
    wrong_crc = bytearray(tq)
    wrong_crc[-2:] = wrong_crc[-2:][::-1]
    add("crc_bytes_swapped", _frame(bytes(wrong_crc)), "crc", "CRC stored big-endian")
    add(
        "truncated_frame",
        (P.cobs_encode(tq)[:-3] + b"\x00").hex(),
        "framing",
        "last 3 bytes lost: the last COBS code byte points past the end",
    )
    cobs = bytearray(P.cobs_encode(tq))
    cobs[0] = 0x30
    add("cobs_code_past_end", (bytes(cobs) + b"\x00").hex(), "framing", "first code byte 0x30")
    add("too_short", _frame(b"\x01\x06\x00"), "framing", "body of 3 bytes")
    add("single_byte", "0100", "framing", "COBS of an empty body: 0 bytes < 6")
    add(
        "version_2",
        _frame(_body(2, P.T_TORQUE_CMD, tq[4:-2])),
        "version",
        "valid CRC, header version 2",
    )
    add(
        "unknown_type",
        _frame(_body(1, 0x7F, b"\x01\x02")),
        "type",
        "valid CRC, type 0x7F",
    )
    add(
        "length_field_mismatch",
        _frame(_body(1, P.T_TORQUE_CMD, tq[4:-2], length=len(tq) - 5)),
        "length",
        "header length one more than the payload",
    )
    add(
        "torque_n_joints_0",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB", 1, 2, 0))),
        "length",
        "n_joints 0",
    )
    add(
        "torque_n_joints_9",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB9h", 1, 2, 9, *range(9)))),
        "length",
        "n_joints 9 > MAX_JOINTS",
    )
    add(
        "torque_n_joints_vs_payload",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB3h", 1, 2, 4, 1, 2, 3))),
        "length",
        "n_joints 4 but 3 torques",
    )
    add(
        "enable_payload_3_bytes",
        _frame(_body(1, P.T_ENABLE, b"\x01\x00\x00")),
        "length",
        "ENABLE has a 2-byte payload",
    )
    di = bytearray(P.DeviceInfo(1, 100, 2000, "exo", (P.JointInfo("hip", 1, 0, 1),)).payload())
    di[8 + 4] = ord("X")  # a byte after the NUL padding of device_id
    add(
        "device_id_bytes_after_nul",
        _frame(_body(1, P.T_DEVICE_INFO, bytes(di))),
        "length",
        "device_id 'exo\\0X...': not NUL-padded",
    )
    add(
        "oversize_body",
        _frame(_body(1, P.T_HEARTBEAT, bytes(range(1, 250)))),
        "framing",
        "body of 255 bytes > 246 (checked before the CRC)",
    )
    for name, hexstr, expect, note in bad:
        frames.append(
            {
                "name": name,
                "hex": hexstr,
                "expect": expect,
                "must": f"drop the frame, count it as '{expect}', change no state, send nothing",
                "note": note,
            }
        )

    by_name = {f["name"]: bytes.fromhex(f["hex"]) for f in frames}
    streams = [
        {
            "name": "garbage_then_frame",
            "hex": (b"\x13\x37\xff\xfe" + b"\x00" + by_name["torque_4_joints"]).hex(),
            "expect_messages": ["torque_4_joints"],
            "expect_errors": {"framing": 1},
            "note": "line noise before a frame: one framing error, then resynchronised",
        },
        {
            "name": "idle_fill_between_frames",
            "hex": (b"\x00\x00" + by_name["hello"] + b"\x00\x00\x00" + by_name["heartbeat"]).hex(),
            "expect_messages": ["hello", "heartbeat"],
            "expect_errors": {},
            "note": "empty frames are neither messages nor errors",
        },
        {
            "name": "overlong_run_then_frame",
            "hex": (bytes([0x55]) * 300 + b"\x00" + by_name["enable"]).hex(),
            "expect_messages": ["enable"],
            "expect_errors": {"framing": 1},
            "note": "300 bytes without a delimiter: dropped as one error",
        },
        {
            "name": "corrupt_between_good",
            "hex": (
                by_name["telemetry_4_joints"]
                + by_name["crc_bit_flip_payload"]
                + by_name["ack_enable_ok"]
            ).hex(),
            "expect_messages": ["telemetry_4_joints", "ack_enable_ok"],
            "expect_errors": {"crc": 1},
            "note": "",
        },
        {
            "name": "missing_delimiter_merges_frames",
            "hex": (by_name["hello"][:-1] + by_name["enable"]).hex(),
            "expect_messages": [],
            "expect_errors": {"crc": 1},
            "note": "a lost 0x00 merges two frames: COBS valid, CRC fails, both dropped",
        },
    ]
    return {
        "protocol_version": P.PROTOCOL_VERSION,
        "description": "exoctl serial protocol test vectors; see docs/protocol.md section 6",
        "crc_check": {"input_ascii": "123456789", "crc": f"0x{P.crc16(b'123456789'):04x}"},
        "frames": frames,
        "streams": streams,
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> None:
    VECTORS_PATH.write_text(render())
    print(f"wrote {VECTORS_PATH}")


if __name__ == "__main__":
    main()
