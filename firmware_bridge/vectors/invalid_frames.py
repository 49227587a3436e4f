"""The frames a receiver must drop (docs/protocol.md section 2), one per check and edge.

They are built by hand, bytes and not through the encoder, where the encoder would refuse to
produce them; each names the counter it must go to (``expect``).
"""

from __future__ import annotations

import struct

from firmware_bridge import protocol as P


def body_bytes(version: int, mtype: int, payload: bytes, *, length: int | None = None) -> bytes:
    b = P.HEADER.pack(version, mtype, len(payload) if length is None else length) + payload
    return b + P.CRC.pack(P.crc16(b))


def frame_hex(body: bytes) -> str:
    return (P.cobs_encode(body) + b"\x00").hex()


def invalid_frames(tq: bytes) -> list[tuple[str, str, str, str, str]]:
    """(name, hex, receiver, expect, note) of frames a receiver must drop."""
    bad: list[tuple[str, str, str, str, str]] = []

    def add(name: str, hexstr: str, receiver: str, expect: str, note: str) -> None:
        bad.append((name, hexstr, receiver, expect, note))

    dev, host = P.DEVICE, P.HOST
    flipped = bytearray(tq)
    flipped[6] ^= 0x01
    add("crc_bit_flip_payload", frame_hex(bytes(flipped)), dev, "crc", "one payload bit flipped")
    wrong_crc = bytearray(tq)
    wrong_crc[-2:] = wrong_crc[-2:][::-1]
    add("crc_bytes_swapped", frame_hex(bytes(wrong_crc)), dev, "crc", "CRC stored big-endian")
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
    add("too_short", frame_hex(b"\x01\x06\x00"), dev, "framing", "body of 3 bytes")
    add("single_byte", "0100", dev, "framing", "COBS of an empty body: 0 bytes < 6")
    add(
        "oversize_body",
        frame_hex(body_bytes(1, P.T_HEARTBEAT, bytes(range(1, 250)))),
        dev,
        "framing",
        "body of 255 bytes > 246 (checked before the CRC)",
    )
    add(
        "length_field_mismatch",
        frame_hex(body_bytes(1, P.T_TORQUE_CMD, tq[4:-2], length=len(tq) - 5)),
        dev,
        "length",
        "header length one more than the payload",
    )

    # check 6, version, and the foreign-version HELLO (section 5.1)
    add(
        "version_2",
        frame_hex(body_bytes(2, P.T_TORQUE_CMD, tq[4:-2])),
        dev,
        "version",
        "valid CRC, header version 2, not a HELLO: dropped, not answered",
    )
    add(
        "hello_version_2",
        frame_hex(body_bytes(2, P.T_HELLO, struct.pack("<I", 0xCAFE0002))),
        dev,
        "version",
        "a HELLO of version 2: counted as a version error AND answered with DEVICE_INFO "
        "(version 1, nonce 0xcafe0002); the device stays UNPAIRED",
    )
    add(
        "hello_version_0_long_payload",
        frame_hex(body_bytes(0, P.T_HELLO, struct.pack("<IHH", 0xCAFE0000, 7, 9))),
        dev,
        "version",
        "a foreign HELLO with 8 payload bytes: answered with the nonce of the first 4 "
        "(a later version may append fields)",
    )
    add(
        "hello_version_2_short_payload",
        frame_hex(body_bytes(2, P.T_HELLO, b"\x01\x02")),
        dev,
        "version",
        "a foreign HELLO with 2 payload bytes (no nonce): counted, not answered",
    )
    add(
        "hello_version_2_bad_crc",
        frame_hex(body_bytes(2, P.T_HELLO, struct.pack("<I", 0xCAFE0003))[:-1] + b"\x55"),
        dev,
        "crc",
        "checks 1-5 come before the version: a foreign HELLO with a bad CRC is not answered",
    )
    add(
        "hello_version_2_length_field_mismatch",
        frame_hex(body_bytes(2, P.T_HELLO, struct.pack("<I", 0xCAFE0004), length=5)),
        dev,
        "length",
        "header length 5, payload 4: counted as length, not answered",
    )
    add(
        "hello_version_2_to_host",
        frame_hex(body_bytes(2, P.T_HELLO, struct.pack("<I", 0xCAFE0005))),
        host,
        "version",
        "a host never answers: a version error only",
    )

    # check 7, type; check 8, direction
    add(
        "unknown_type",
        frame_hex(body_bytes(1, 0x7F, b"\x01\x02")),
        dev,
        "type",
        "valid CRC, type 0x7F",
    )
    add(
        "unknown_type_device_range",
        frame_hex(body_bytes(1, 0x86, b"")),
        host,
        "type",
        "type 0x86: unknown is checked before direction",
    )
    add(
        "hello_to_host",
        frame_hex(P.encode_body(P.Hello(0x12345678))),
        host,
        "direction",
        "a host->device type arriving at the host (looped-back wire, a second host)",
    )
    add(
        "torque_cmd_to_host",
        frame_hex(tq),
        host,
        "direction",
        "a TORQUE_CMD at the host",
    )
    tel = P.Telemetry(9, 9, 9, P.FLAG_HANDSHAKEN, 0, (0,), (0,), (0,), (0,), (0,), (0,))
    add(
        "telemetry_to_device",
        frame_hex(P.encode_body(tel)),
        dev,
        "direction",
        "the device hearing its own TELEMETRY (TX looped to RX): dropped, and it does not "
        "reset the host-silence watchdog",
    )
    add(
        "ack_to_device",
        frame_hex(P.encode_body(P.Ack(1, P.T_ENABLE, P.ACK_OK, P.STATE_ENABLED, 0))),
        dev,
        "direction",
        "",
    )
    add(
        "direction_before_length",
        frame_hex(body_bytes(1, P.T_TELEMETRY, b"\x00")),
        dev,
        "direction",
        "a 1-byte TELEMETRY at the device: direction is checked before the payload size",
    )

    # check 9, payload size and counts
    add(
        "torque_n_joints_0",
        frame_hex(body_bytes(1, P.T_TORQUE_CMD, struct.pack("<IIB", 1, 2, 0))),
        dev,
        "length",
        "n_joints 0",
    )
    add(
        "torque_n_joints_9",
        frame_hex(body_bytes(1, P.T_TORQUE_CMD, struct.pack("<IIB9h", 1, 2, 9, *range(9)))),
        dev,
        "length",
        "n_joints 9 > MAX_JOINTS",
    )
    add(
        "torque_n_joints_vs_payload",
        frame_hex(body_bytes(1, P.T_TORQUE_CMD, struct.pack("<IIB3h", 1, 2, 4, 1, 2, 3))),
        dev,
        "length",
        "n_joints 4 but 3 torques",
    )
    add(
        "enable_payload_3_bytes",
        frame_hex(body_bytes(1, P.T_ENABLE, b"\x01\x00\x00")),
        dev,
        "length",
        "ENABLE has a 2-byte payload",
    )
    add(
        "length_before_value",
        frame_hex(body_bytes(1, P.T_ESTOP_STATE, struct.pack("<IBB", 1, 7, 0))),
        host,
        "length",
        "ESTOP_STATE of 6 bytes with pressed 7: the size is checked before the values",
    )

    # check 10, field values
    add(
        "torque_seq_0",
        frame_hex(body_bytes(1, P.T_TORQUE_CMD, struct.pack("<IIB4h", 0, 5, 4, 100, 0, 0, 0))),
        dev,
        "value",
        "seq 0 is reserved: never applied, never the reference for newer/older",
    )

    def di(did: bytes = b"exo", name: bytes = b"hip", tmo: int = 100, per: int = 2000) -> str:
        p = struct.pack("<IHH16sB", 1, tmo, per, did, 1) + struct.pack("<8sHhh", name, 1, 0, 1)
        return frame_hex(body_bytes(1, P.T_DEVICE_INFO, p))

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
        return frame_hex(
            body_bytes(1, P.T_ACK, struct.pack("<HBBBH", 1, rtype, result, state, faults))
        )

    add("ack_request_type_hello", ack(P.T_HELLO, 0, 1, 0), host, "value", "request_type 0x01")
    add("ack_request_type_5", ack(P.T_TORQUE_CMD, 0, 1, 0), host, "value", "request_type 0x05")
    add("ack_result_5", ack(P.T_ENABLE, 5, 1, 0), host, "value", "result 5 (0..4 defined)")
    add("ack_state_3", ack(P.T_ENABLE, 0, 3, 0), host, "value", "state 3 (0..2 defined)")
    add("ack_reserved_fault_bit", ack(P.T_ENABLE, 0, 1, 0x0100), host, "value", "fault bit 8")

    def telem(flags: int, faults: int, jf: int) -> str:
        p = struct.pack("<IIIBHB", 1, 2, 3, flags, faults, 1) + struct.pack(
            "<5hH", 0, 0, 0, 0, 0, jf
        )
        return frame_hex(body_bytes(1, P.T_TELEMETRY, p))

    add("telemetry_reserved_flag", telem(0x08, 0, 0), host, "value", "flags bit 3")
    add("telemetry_reserved_fault_bit", telem(0, 0x8000, 0), host, "value", "fault_bits bit 15")
    add("telemetry_reserved_joint_fault", telem(0, 0, 0x0010), host, "value", "joint bit 4")

    def fault(code: int, latched: int, joint: int, faults: int) -> str:
        p = struct.pack("<IBBBH", 5, code, latched, joint, faults)
        return frame_hex(body_bytes(1, P.T_FAULT_REPORT, p))

    add("fault_report_code_8", fault(8, 0, 0xFF, 0), host, "value", "code 8 (0..7 defined)")
    add("fault_report_latched_mismatch", fault(0, 0, 0xFF, 1), host, "value", "code 0, latched 0")
    add("fault_report_status_latched", fault(4, 1, 0xFF, 0x10), host, "value", "code 4, latched 1")
    add("fault_report_latched_2", fault(1, 2, 0xFF, 2), host, "value", "latched 2")
    add("fault_report_joint_8", fault(6, 0, 8, 0x40), host, "value", "joint 8 (0..7 or 0xff)")
    add("fault_report_reserved_bit", fault(7, 0, 0xFF, 0x0180), host, "value", "fault_bits bit 8")
    add(
        "estop_pressed_2",
        frame_hex(body_bytes(1, P.T_ESTOP_STATE, struct.pack("<IB", 1, 2))),
        host,
        "value",
        "pressed 2 (0 or 1)",
    )
    return bad


# Which device answer a version error gets: the nonce of an answerable foreign HELLO.
ANSWERS = {
    "hello_version_2": 0xCAFE0002,
    "hello_version_0_long_payload": 0xCAFE0000,
}
