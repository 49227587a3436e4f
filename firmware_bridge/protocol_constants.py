"""The numbers of the host <-> actuator firmware protocol (docs/protocol.md sections 1 to 4).

Frame sizes, name rules, fixed-point scales, message types, states, Ack results and the
device's fault bits with their one name table (``FAULT_NAMES``) and the words built from it.
The codec (:mod:`firmware_bridge.protocol`), the emulator and the C codec's header all follow
these values; a change here is a protocol change (docs/protocol.md first).
"""

from __future__ import annotations

import struct

PROTOCOL_VERSION = 1
MAX_JOINTS = 8
HEADER = struct.Struct("<BBH")  # version, type, payload length
CRC = struct.Struct("<H")
HEADER_SIZE = HEADER.size  # 4
CRC_SIZE = CRC.size  # 2
MAX_PAYLOAD = 240
# A decoded frame (header + payload + crc) never exceeds 246 bytes (< 254, the longest COBS
# run), so COBS adds exactly one byte and the encoded frame is at most 247 bytes plus the 0x00
# delimiter. A receiver that holds 247 bytes and gets a 248th non-zero byte has an over-long
# run: it drops everything up to the next 0x00 and counts one framing error there.
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 246
MAX_ENCODED = MAX_FRAME + 1  # 247, without delimiter
DEVICE_ID_LEN = 16
JOINT_NAME_LEN = 8
# Name bytes (device_id, joint names): 1..N visible ASCII characters, then NUL padding. No
# space, no control character, no DEL: a name is an identifier matched byte for byte against
# the configuration and printed in logs.
NAME_FIRST_BYTE = 0x21  # '!'
NAME_LAST_BYTE = 0x7E  # '~'

# Fixed-point scales: SI value = count * scale.
TORQUE_SCALE_NM = 0.01  # int16, 0.01 N m   (+-327.67 N m); torque limit u16 (0 .. 655.35 N m)
ANGLE_SCALE_RAD = 1e-4  # int16, 0.1 mrad   (+-3.2767 rad)
VELOCITY_SCALE_RAD_S = 1e-3  # int16, 1 mrad/s (+-32.767 rad/s)
CURRENT_SCALE_A = 0.01  # int16, 10 mA      (+-327.67 A)
TEMPERATURE_SCALE_C = 0.1  # int16, 0.1 degC (+-3276.7 degC)
# The same scales as integers: a sender computes count = round_half_even(value * COUNTS) in
# binary64 (multiplying by the integer, never dividing by the scale: value / 0.01 and
# value * 100 differ in the last bit for some values, and so would the rounded count).
TORQUE_COUNTS_PER_NM = 100
ANGLE_COUNTS_PER_RAD = 10_000
VELOCITY_COUNTS_PER_RAD_S = 1_000
CURRENT_COUNTS_PER_A = 100
TEMPERATURE_COUNTS_PER_C = 10
I16_SATURATION = 32767  # senders saturate i16 quantities at +-32767 (-32768 is never sent)

# Message types: host -> device below 0x80, device -> host from 0x80.
# Receivers (docs/protocol.md section 2, check 8): a frame of a known type meant for the
# other end is dropped and counted as "direction".
DEVICE = "device"
HOST = "host"
T_HELLO = 0x01
T_ENABLE = 0x02
T_DISABLE = 0x03
T_CLEAR_FAULTS = 0x04
T_TORQUE_CMD = 0x05
T_HEARTBEAT = 0x06
T_DEVICE_INFO = 0x81
T_ACK = 0x82
T_TELEMETRY = 0x83
T_FAULT_REPORT = 0x84
T_ESTOP_STATE = 0x85

# Device state (ACK.state)
STATE_UNPAIRED = 0
STATE_DISABLED = 1
STATE_ENABLED = 2

# ACK.result
ACK_OK = 0
ACK_NOT_HANDSHAKEN = 1
ACK_FAULT_LATCHED = 2
ACK_ESTOP_ACTIVE = 3
ACK_BAD_REQUEST = 4

# Telemetry flags
FLAG_ENABLED = 0x01
FLAG_ESTOP = 0x02
FLAG_HANDSHAKEN = 0x04

# Device fault bits (Telemetry.fault_bits, FaultReport.fault_bits); FaultReport.code = bit index.
FAULT_HOST_TIMEOUT = 0x0001  # latched
FAULT_ESTOP = 0x0002  # latched
FAULT_OVER_TEMPERATURE = 0x0004  # latched
FAULT_OVERCURRENT = 0x0008  # latched
FAULT_COMMAND_STALE = 0x0010  # status
FAULT_TORQUE_CLAMPED = 0x0020  # status
FAULT_ANGLE_LIMIT = 0x0040  # status
FAULT_BAD_COMMAND = 0x0080  # status
LATCHED_FAULTS = FAULT_HOST_TIMEOUT | FAULT_ESTOP | FAULT_OVER_TEMPERATURE | FAULT_OVERCURRENT
FAULT_NAMES = {
    FAULT_HOST_TIMEOUT: "host_timeout",
    FAULT_ESTOP: "estop",
    FAULT_OVER_TEMPERATURE: "over_temperature",
    FAULT_OVERCURRENT: "overcurrent",
    FAULT_COMMAND_STALE: "command_stale",
    FAULT_TORQUE_CLAMPED: "torque_clamped",
    FAULT_ANGLE_LIMIT: "angle_limit",
    FAULT_BAD_COMMAND: "bad_command",
}
# Per-joint fault bits (Telemetry.joint_faults)
JFAULT_TORQUE_CLAMPED = 0x0001
JFAULT_ANGLE_LIMIT = 0x0002
JFAULT_OVER_TEMPERATURE = 0x0004
JFAULT_OVERCURRENT = 0x0008
JOINT_DEVICE = 0xFF  # FaultReport.joint when the fault is not a joint's
# Defined bits; a receiver drops a frame that sets any other (reserved) bit ("value").
FLAGS_DEFINED = FLAG_ENABLED | FLAG_ESTOP | FLAG_HANDSHAKEN  # 0x07
FAULTS_DEFINED = 0x00FF
JFAULTS_DEFINED = 0x000F
REQUEST_TYPES = (T_ENABLE, T_DISABLE, T_CLEAR_FAULTS)  # Ack.request_type
ACK_RESULTS = range(ACK_OK, ACK_BAD_REQUEST + 1)
STATES = range(STATE_UNPAIRED, STATE_ENABLED + 1)
N_FAULT_CODES = 8  # FaultReport.code 0..7 (bit index); codes 0..3 are the latched faults


def fault_names(bits: int) -> list[str]:
    """The device fault bits set in ``bits`` by name (``FAULT_NAMES``, the one table), lowest
    bit first; a bit the table does not name is ``bit 0x0100``."""
    return [FAULT_NAMES.get(1 << i, f"bit 0x{1 << i:04x}") for i in range(16) if bits & (1 << i)]


def fault_text(bits: int) -> str:
    """Device fault bits for people: ``host timeout, torque clamped (fault bits 0x0021)``,
    with the latched ones said to be latched; ``no device fault`` for 0."""
    if not bits:
        return "no device fault"
    words = [
        n.replace("_", " ") + (" (latched)" if (1 << i) & LATCHED_FAULTS else "")
        for i, n in ((i, FAULT_NAMES.get(1 << i, f"bit 0x{1 << i:04x}")) for i in range(16))
        if bits & (1 << i)
    ]
    return f"{', '.join(words)} (fault bits 0x{bits:04x})"
