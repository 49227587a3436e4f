"""Generate ``frames.json``: protocol test vectors (valid and invalid frames, byte streams).

Run ``.venv/bin/python -m firmware_bridge.vectors.generate`` after a protocol change; the test
suite fails when the committed file differs from what this produces, so the file and the codec
cannot drift apart. Invalid frames are built by hand (bytes, not through the encoder) where the
encoder would refuse to produce them.

Why one long file: it is a generator script, not imported by the product; most of it is the
list of hand-built vectors, each a few lines, read top to bottom like docs/protocol.md section 6.
"""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from typing import Any

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
        ("torque_seq_1", P.TorqueCommand(1, 0, (0,)), "seq 1: the smallest a host sends"),
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
        (
            "device_info_name_bytes_at_the_bounds",
            P.DeviceInfo(2, 1, 1, "!~", (P.JointInfo("~", 65535, -32768, 32767),)),
            "names use 0x21 '!' .. 0x7e '~'; torque_limit 65535 = 655.35 N m (u16)",
        ),
        ("ack_enable_ok", P.Ack(1, P.T_ENABLE, P.ACK_OK, P.STATE_ENABLED, 0), ""),
        (
            "ack_bad_request_unpaired",
            P.Ack(3, P.T_CLEAR_FAULTS, P.ACK_BAD_REQUEST, P.STATE_UNPAIRED, 0x00FF),
            "the largest value of request_type, result, fault_bits; state 0",
        ),
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
            "telemetry_all_defined_bits",
            P.Telemetry(
                1, 2, 3, P.FLAGS_DEFINED, P.FAULTS_DEFINED, (0,), (0,), (0,), (0,), (0,), (0x0F,)
            ),
            "every defined flag, fault and joint-fault bit set",
        ),
        (
            "fault_report_host_timeout",
            P.FaultReport(5_000_000, 0, 1, P.JOINT_DEVICE, P.FAULT_HOST_TIMEOUT),
            "",
        ),
        (
            "fault_report_latched_code_3",
            P.FaultReport(6, 3, 1, 0, P.FAULT_OVERCURRENT),
            "code 3 (OVERCURRENT) is the last latched one: latched 1, joint 0",
        ),
        (
            "fault_report_status_code_7",
            P.FaultReport(7, 7, 0, 7, P.FAULT_BAD_COMMAND),
            "code 7 (BAD_COMMAND) is a status fault: latched 0; joint 7",
        ),
        ("estop_pressed", P.EstopState(99, 1), ""),
        ("estop_released", P.EstopState(100, 0), ""),
    ]


def _receiver(m: P.Message) -> str:
    return P.meant_for(m.TYPE)


def _invalid_frames(tq: bytes) -> list[tuple[str, str, str, str, str]]:
    """(name, hex, receiver, expect, note) of frames a receiver must drop."""
    bad: list[tuple[str, str, str, str, str]] = []

    def add(name: str, hexstr: str, receiver: str, expect: str, note: str) -> None:
        bad.append((name, hexstr, receiver, expect, note))

    dev, host = P.DEVICE, P.HOST
    flipped = bytearray(tq)
    flipped[6] ^= 0x01
    add("crc_bit_flip_payload", _frame(bytes(flipped)), dev, "crc", "one payload bit flipped")
    wrong_crc = bytearray(tq)
    wrong_crc[-2:] = wrong_crc[-2:][::-1]
    add("crc_bytes_swapped", _frame(bytes(wrong_crc)), dev, "crc", "CRC stored big-endian")
    add(
        "truncated_frame",
        (P.cobs_encode(tq)[:-3] + b"\x00").hex(),
        dev,
        "framing",
        "last 3 bytes lost: the last COBS code byte points past the end",
    )
    cobs = bytearray(P.cobs_encode(tq))
    cobs[0] = 0x30
    add("cobs_code_past_end", (bytes(cobs) + b"\x00").hex(), dev, "framing", "first code 0x30")
    add("too_short", _frame(b"\x01\x06\x00"), dev, "framing", "body of 3 bytes")
    add("single_byte", "0100", dev, "framing", "COBS of an empty body: 0 bytes < 6")
    add(
        "oversize_body",
        _frame(_body(1, P.T_HEARTBEAT, bytes(range(1, 250)))),
        dev,
        "framing",
        "body of 255 bytes > 246 (checked before the CRC)",
    )
    add(
        "length_field_mismatch",
        _frame(_body(1, P.T_TORQUE_CMD, tq[4:-2], length=len(tq) - 5)),
        dev,
        "length",
        "header length one more than the payload",
    )

    # check 6, version, and the foreign-version HELLO (section 5.1)
    add(
        "version_2",
        _frame(_body(2, P.T_TORQUE_CMD, tq[4:-2])),
        dev,
        "version",
        "valid CRC, header version 2, not a HELLO: dropped, not answered",
    )
    add(
        "hello_version_2",
        _frame(_body(2, P.T_HELLO, struct.pack("<I", 0xCAFE0002))),
        dev,
        "version",
        "a HELLO of version 2: counted as a version error AND answered with DEVICE_INFO "
        "(version 1, nonce 0xcafe0002); the device stays UNPAIRED",
    )
    add(
        "hello_version_0_long_payload",
        _frame(_body(0, P.T_HELLO, struct.pack("<IHH", 0xCAFE0000, 7, 9))),
        dev,
        "version",
        "a foreign HELLO with 8 payload bytes: answered with the nonce of the first 4 "
        "(a later version may append fields)",
    )
    add(
        "hello_version_2_short_payload",
        _frame(_body(2, P.T_HELLO, b"\x01\x02")),
        dev,
        "version",
        "a foreign HELLO with 2 payload bytes (no nonce): counted, not answered",
    )
    add(
        "hello_version_2_bad_crc",
        _frame(_body(2, P.T_HELLO, struct.pack("<I", 0xCAFE0003))[:-1] + b"\x55"),
        dev,
        "crc",
        "checks 1-5 come before the version: a foreign HELLO with a bad CRC is not answered",
    )
    add(
        "hello_version_2_length_field_mismatch",
        _frame(_body(2, P.T_HELLO, struct.pack("<I", 0xCAFE0004), length=5)),
        dev,
        "length",
        "header length 5, payload 4: counted as length, not answered",
    )
    add(
        "hello_version_2_to_host",
        _frame(_body(2, P.T_HELLO, struct.pack("<I", 0xCAFE0005))),
        host,
        "version",
        "a host never answers: a version error only",
    )

    # check 7, type; check 8, direction
    add("unknown_type", _frame(_body(1, 0x7F, b"\x01\x02")), dev, "type", "valid CRC, type 0x7F")
    add(
        "unknown_type_device_range",
        _frame(_body(1, 0x86, b"")),
        host,
        "type",
        "type 0x86: unknown is checked before direction",
    )
    add(
        "hello_to_host",
        _frame(P.encode_body(P.Hello(0x12345678))),
        host,
        "direction",
        "a host->device type arriving at the host (looped-back wire, a second host)",
    )
    add(
        "torque_cmd_to_host",
        _frame(tq),
        host,
        "direction",
        "a TORQUE_CMD at the host",
    )
    tel = P.Telemetry(9, 9, 9, P.FLAG_HANDSHAKEN, 0, (0,), (0,), (0,), (0,), (0,), (0,))
    add(
        "telemetry_to_device",
        _frame(P.encode_body(tel)),
        dev,
        "direction",
        "the device hearing its own TELEMETRY (TX looped to RX): dropped, and it does not "
        "reset the host-silence watchdog",
    )
    add(
        "ack_to_device",
        _frame(P.encode_body(P.Ack(1, P.T_ENABLE, P.ACK_OK, P.STATE_ENABLED, 0))),
        dev,
        "direction",
        "",
    )
    add(
        "direction_before_length",
        _frame(_body(1, P.T_TELEMETRY, b"\x00")),
        dev,
        "direction",
        "a 1-byte TELEMETRY at the device: direction is checked before the payload size",
    )

    # check 9, payload size and counts
    add(
        "torque_n_joints_0",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB", 1, 2, 0))),
        dev,
        "length",
        "n_joints 0",
    )
    add(
        "torque_n_joints_9",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB9h", 1, 2, 9, *range(9)))),
        dev,
        "length",
        "n_joints 9 > MAX_JOINTS",
    )
    add(
        "torque_n_joints_vs_payload",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB3h", 1, 2, 4, 1, 2, 3))),
        dev,
        "length",
        "n_joints 4 but 3 torques",
    )
    add(
        "enable_payload_3_bytes",
        _frame(_body(1, P.T_ENABLE, b"\x01\x00\x00")),
        dev,
        "length",
        "ENABLE has a 2-byte payload",
    )
    add(
        "length_before_value",
        _frame(_body(1, P.T_ESTOP_STATE, struct.pack("<IBB", 1, 7, 0))),
        host,
        "length",
        "ESTOP_STATE of 6 bytes with pressed 7: the size is checked before the values",
    )

    # check 10, field values
    add(
        "torque_seq_0",
        _frame(_body(1, P.T_TORQUE_CMD, struct.pack("<IIB4h", 0, 5, 4, 100, 0, 0, 0))),
        dev,
        "value",
        "seq 0 is reserved: never applied, never the reference for newer/older",
    )

    def di(did: bytes = b"exo", name: bytes = b"hip", tmo: int = 100, per: int = 2000) -> str:
        p = struct.pack("<IHH16sB", 1, tmo, per, did, 1) + struct.pack("<8sHhh", name, 1, 0, 1)
        return _frame(_body(1, P.T_DEVICE_INFO, p))

    add(
        "device_id_bytes_after_nul",
        di(did=b"exo\x00X"),
        host,
        "value",
        "device_id 'exo\\0X...': not NUL-padded",
    )
    add("device_id_empty", di(did=b""), host, "value", "an empty device_id (16 NULs)")
    add("joint_name_empty", di(name=b""), host, "value", "an empty joint name")
    add("joint_name_space", di(name=b"hip l"), host, "value", "0x20 (space) is not allowed")
    add("joint_name_tab", di(name=b"hip\tl"), host, "value", "a control character (0x09)")
    add("joint_name_del", di(name=b"hip\x7f"), host, "value", "DEL (0x7f)")
    add("device_id_non_ascii", di(did=b"exo\xc3\xa9"), host, "value", "UTF-8 'e-acute'")
    add("device_info_timeout_0", di(tmo=0), host, "value", "command_timeout_ms 0")
    add("device_info_period_0", di(per=0), host, "value", "telemetry_period_us 0")

    def ack(rtype: int, result: int, state: int, faults: int) -> str:
        return _frame(_body(1, P.T_ACK, struct.pack("<HBBBH", 1, rtype, result, state, faults)))

    add("ack_request_type_hello", ack(P.T_HELLO, 0, 1, 0), host, "value", "request_type 0x01")
    add("ack_request_type_5", ack(P.T_TORQUE_CMD, 0, 1, 0), host, "value", "request_type 0x05")
    add("ack_result_5", ack(P.T_ENABLE, 5, 1, 0), host, "value", "result 5 (0..4 defined)")
    add("ack_state_3", ack(P.T_ENABLE, 0, 3, 0), host, "value", "state 3 (0..2 defined)")
    add("ack_reserved_fault_bit", ack(P.T_ENABLE, 0, 1, 0x0100), host, "value", "fault bit 8")

    def telem(flags: int, faults: int, jf: int) -> str:
        p = struct.pack("<IIIBHB", 1, 2, 3, flags, faults, 1) + struct.pack(
            "<5hH", 0, 0, 0, 0, 0, jf
        )
        return _frame(_body(1, P.T_TELEMETRY, p))

    add("telemetry_reserved_flag", telem(0x08, 0, 0), host, "value", "flags bit 3")
    add("telemetry_reserved_fault_bit", telem(0, 0x8000, 0), host, "value", "fault_bits bit 15")
    add("telemetry_reserved_joint_fault", telem(0, 0, 0x0010), host, "value", "joint bit 4")

    def fault(code: int, latched: int, joint: int, faults: int) -> str:
        p = struct.pack("<IBBBH", 5, code, latched, joint, faults)
        return _frame(_body(1, P.T_FAULT_REPORT, p))

    add("fault_report_code_8", fault(8, 0, 0xFF, 0), host, "value", "code 8 (0..7 defined)")
    add("fault_report_latched_mismatch", fault(0, 0, 0xFF, 1), host, "value", "code 0, latched 0")
    add("fault_report_status_latched", fault(4, 1, 0xFF, 0x10), host, "value", "code 4, latched 1")
    add("fault_report_latched_2", fault(1, 2, 0xFF, 2), host, "value", "latched 2")
    add("fault_report_joint_8", fault(6, 0, 8, 0x40), host, "value", "joint 8 (0..7 or 0xff)")
    add("fault_report_reserved_bit", fault(7, 0, 0xFF, 0x0180), host, "value", "fault_bits bit 8")
    add(
        "estop_pressed_2",
        _frame(_body(1, P.T_ESTOP_STATE, struct.pack("<IB", 1, 2))),
        host,
        "value",
        "pressed 2 (0 or 1)",
    )
    return bad


# Which device answer a version error gets: the nonce of an answerable foreign HELLO.
_ANSWERS = {
    "hello_version_2": 0xCAFE0002,
    "hello_version_0_long_payload": 0xCAFE0000,
}


def _fixed_point() -> list[dict]:
    """SI value -> count cases: ties to even on the binary64 product, saturation, range."""
    cases = [
        ("torque", "i16", "0.125", "product 12.5, a tie: to even (12)"),
        ("torque", "i16", "0.375", "product 37.5, a tie: to even (38)"),
        ("torque", "i16", "-0.125", "ties are symmetric about zero"),
        ("torque", "i16", "-0.375", ""),
        ("torque", "i16", "0.005", "product 0.5: to even (0)"),
        ("torque", "i16", "0.015", "product 1.5: to even (2)"),
        ("torque", "i16", "12.345", "product 1234.5: 1234 (half away from zero gives 1235)"),
        (
            "torque",
            "i16",
            "-39.955",
            "value * 100 is exactly -3995.5 -> -3996; value / 0.01 would be -3995.4999999999995",
        ),
        (
            "torque",
            "i16",
            "-39.825",
            "value * 100 is -3982.5000000000005 in binary64: not a tie, -3983 (the decimal "
            "tie rule would give -3982)",
        ),
        ("torque", "i16", "327.67", "largest count"),
        ("torque", "i16", "327.675", "product 32767.5: saturated at 32767"),
        ("torque", "i16", "400", "saturated"),
        ("torque", "i16", "-327.68", "saturated at -32767: -32768 is never sent"),
        ("torque", "i16", "-400", "saturated"),
        ("torque", "i16", "nan", "not finite: refused, never encoded"),
        ("torque", "i16", "inf", "not finite: refused"),
        ("torque", "i16", "-inf", "not finite: refused"),
        ("angle", "i16", "0.00005", "product 0.5: 0"),
        ("angle", "i16", "0.00015", "product 1.4999999999999998 in binary64: 1, not a tie"),
        ("angle", "i16", "-0.00025", "product -2.5: -2"),
        ("angle", "i16", "0.00035", "product 3.5: 4"),
        ("velocity", "i16", "0.0015", "product 1.5: 2"),
        ("velocity", "i16", "-0.0025", "product -2.5: -2"),
        ("current", "i16", "0.125", "product 12.5: 12"),
        ("temperature", "i16", "36.25", "product 362.5: 362"),
        ("temperature", "i16", "36.35", "product 363.5: 364"),
        ("temperature", "i16", "-0.05", "product -0.5: 0"),
        ("torque_limit", "u16", "40", ""),
        ("torque_limit", "u16", "655.35", "largest limit: 65535"),
        ("torque_limit", "u16", "655.354", "product 65535.4: 65535"),
        ("torque_limit", "u16", "655.355", "product 65535.5 rounds to 65536: refused"),
        ("torque_limit", "u16", "700", "refused, never saturated"),
        ("torque_limit", "u16", "0", "0 is on the wire (a device may refuse it)"),
        ("torque_limit", "u16", "-0.005", "product -0.5 rounds to 0: accepted"),
        ("torque_limit", "u16", "-0.006", "product -0.6 rounds to -1: refused"),
        ("torque_limit", "u16", "nan", "refused"),
    ]
    per_unit = {
        "torque": P.TORQUE_COUNTS_PER_NM,
        "torque_limit": P.TORQUE_COUNTS_PER_NM,
        "angle": P.ANGLE_COUNTS_PER_RAD,
        "velocity": P.VELOCITY_COUNTS_PER_RAD_S,
        "current": P.CURRENT_COUNTS_PER_A,
        "temperature": P.TEMPERATURE_COUNTS_PER_C,
    }
    out = []
    for quantity, wire, si, note in cases:
        k = per_unit[quantity]
        try:
            if wire == "u16":
                count: int | None = P.to_u16_count(float(si), k, quantity)
            else:
                count = P.to_count(float(si), k)
        except ValueError:
            count = None
        product = float(si) * k
        out.append(
            {
                "quantity": quantity,
                "wire_type": wire,
                "counts_per_unit": k,
                "si": si,
                "product": repr(product),
                "count": count,
                "note": note,
            }
        )
    return out


def _sequences() -> list[dict]:
    """Device sequence-number behaviour (docs/protocol.md section 5.3), as event lists.

    Events: "hello", "hello_v2" (a HELLO of protocol version 2), "enable", "disable", or a
    TORQUE_CMD's seq (an int). Outcomes: the seqs applied in order, and counts of commands
    ignored as not newer, refused (not enabled), dropped (seq 0, a value error), and the
    commands missing between applied ones (gaps; 0 is never sent, so 0xFFFFFFFF -> 1 is none).
    """
    h = 0x80000000

    def seq(
        name: str,
        events: list,
        applied: list[int],
        note: str,
        *,
        not_newer: int = 0,
        refused: int = 0,
        dropped: int = 0,
        gaps: int = 0,
    ) -> dict:
        return {
            "name": name,
            "events": events,
            "applied": applied,
            "not_newer": not_newer,
            "refused": refused,
            "dropped_seq_0": dropped,
            "seq_gaps": gaps,
            "last_seq_applied": applied[-1] if applied else 0,
            "note": note,
        }

    return [
        seq(
            "first_command_sets_the_reference",
            ["hello", "enable", 0xFFFFFFF0, 0xFFFFFFF1],
            [0xFFFFFFF0, 0xFFFFFFF1],
            "after HELLO any seq but 0 is accepted",
        ),
        seq(
            "seq_0_is_never_applied",
            ["hello", "enable", 0, 0, 5, 0, 6],
            [5, 6],
            "seq 0 is dropped as a value error before the device looks at it",
            dropped=3,
        ),
        seq(
            "seq_0_first_then_older",
            ["hello", "enable", 0, 0, 0xFFFFFFF0, 0xFFFFFFEF],
            [0xFFFFFFF0],
            "a fault once seen: an earlier emulator applied both seq-0 commands and "
            "then 0xFFFFFFF0 (seq 0 had become 'no reference')",
            not_newer=1,
            dropped=2,
        ),
        seq(
            "seq_0_mid_session_changes_nothing",
            ["hello", "enable", 100, 0, 0xFFFFFFF0, 101],
            [100, 101],
            "a seq-0 frame between commands: dropped; 0xFFFFFFF0 is older than 100",
            not_newer=1,
            dropped=1,
        ),
        seq(
            "duplicates_and_reordered",
            ["hello", "enable", 100, 100, 99, 105],
            [100, 105],
            "",
            not_newer=2,
            gaps=4,
        ),
        seq(
            "wrap_skips_zero",
            ["hello", "enable", 0xFFFFFFFE, 0xFFFFFFFF, 1, 2],
            [0xFFFFFFFE, 0xFFFFFFFF, 1, 2],
            "0xFFFFFFFF is followed by 1: no gap",
        ),
        seq(
            "wrap_with_a_gap",
            ["hello", "enable", 0xFFFFFFFE, 2],
            [0xFFFFFFFE, 2],
            "missing: 0xFFFFFFFF and 1 (not 0)",
            gaps=2,
        ),
        seq(
            "half_range_is_not_newer",
            ["hello", "enable", 5, 5 + h, 4 + h],
            [5, 4 + h],
            "(a - b) mod 2^32 = 2^31 is not newer; 2^31 - 1 is",
            not_newer=1,
            gaps=h - 2,
        ),
        seq(
            "hello_resets_the_reference",
            ["hello", "enable", 1000, "hello", "enable", 3],
            [1000, 3],
            "",
        ),
        seq(
            "foreign_hello_resets_the_reference",
            ["hello", "enable", 1000, "hello_v2", "hello", "enable", 3],
            [1000, 3],
            "a HELLO of another version is answered and unpairs the device",
        ),
        seq(
            "disable_and_enable_keep_the_reference",
            ["hello", "enable", 1000, "disable", "enable", 999, 1001],
            [1000, 1001],
            "only HELLO (and a reboot) resets it",
            not_newer=1,
        ),
        seq(
            "refused_commands_set_no_reference",
            ["hello", 50, "enable", 10],
            [10],
            "a command before ENABLE is refused and does not become the reference",
            refused=1,
        ),
    ]


def build() -> dict:
    frames: list[dict] = []
    for name, m, note in _valid_messages():
        frames.append(
            {
                "name": name,
                "hex": P.encode(m).hex(),
                "receiver": _receiver(m),
                "expect": "ok",
                "type": m.TYPE,
                "fields": to_fields(m),
                "note": note,
            }
        )

    tq = P.encode_body(P.TorqueCommand(42, 1_000_000, (1250, -1250, 0, 3500)))
    for name, hexstr, receiver, expect, note in _invalid_frames(tq):
        f: dict[str, Any] = {
            "name": name,
            "hex": hexstr,
            "receiver": receiver,
            "expect": expect,
            "must": f"drop the frame, count it as '{expect}', change no state, send nothing",
            "note": note,
        }
        if expect == "version":
            nonce = _ANSWERS.get(name) if receiver == P.DEVICE else None
            f["answer_nonce"] = nonce
            if nonce is not None:
                f["must"] = (
                    "count it as 'version'; answer DEVICE_INFO (own version) with this nonce; "
                    "zero torque, become UNPAIRED, forget last_seq_applied"
                )
        frames.append(f)

    by_name = {f["name"]: bytes.fromhex(f["hex"]) for f in frames}
    max_frame = P.cobs_encode(_body(1, 0x7F, bytes(range(1, 241)))) + b"\x00"
    assert len(max_frame) == P.MAX_ENCODED + 1
    streams: list[dict[str, Any]] = [
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
            "expect_answers": [_ANSWERS["hello_version_2"]],
            "note": "both counted as version errors; only the one with a nonce is answered",
        },
    ]
    for s in streams:
        s.setdefault("expect_answers", [])
    return {
        "protocol_version": P.PROTOCOL_VERSION,
        "description": "exoctl serial protocol test vectors; see docs/protocol.md section 6",
        "crc_check": {"input_ascii": "123456789", "crc": f"0x{P.crc16(b'123456789'):04x}"},
        "frames": frames,
        "streams": streams,
        "fixed_point": _fixed_point(),
        "sequences": _sequences(),
    }


def render() -> str:
    return json.dumps(build(), indent=1) + "\n"


def main() -> None:
    VECTORS_PATH.write_text(render())
    print(f"wrote {VECTORS_PATH}")


if __name__ == "__main__":
    main()
