"""Wire codec for the exoctl host <-> actuator firmware serial protocol (version 1).

The normative description is ``docs/protocol.md``; this module is the Python reference of it.
Frame on the wire::

    COBS( header | payload | crc16 ) 0x00

    header  = u8 version, u8 type, u16 payload_length      (little-endian)
    crc16   = CRC-16/CCITT-FALSE over header + payload, stored little-endian

Messages are frozen dataclasses holding the *wire* integers (fixed-point counts), so that
``decode(encode(m)) == m`` exactly; conversion to SI units lives in the host link and the
emulator, next to the scale constants below. Decoding never trusts a field it has not checked:
every failure is a :class:`FrameError` with a ``kind`` the counters use.

Why one module of this length: it mirrors docs/protocol.md section by section (the constants,
2 framing, 3 fixed point, 4 one class per message, the receiver rules), so the reference and
the specification read side by side and a change to one shows where the other must change.
"""

from __future__ import annotations

import binascii
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import ClassVar

from firmware_bridge.errors import BridgeError

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


def crc16(data: bytes | bytearray | memoryview, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xorout).

    binascii.crc_hqx is exactly this polynomial without reflection; seeding it with 0xFFFF
    gives CCITT-FALSE, in C speed (check value crc16(b"123456789") == 0x29B1).
    """
    return binascii.crc_hqx(data, crc)


def cobs_encode(data: bytes | bytearray) -> bytes:
    """Consistent-overhead byte stuffing: the output contains no 0x00 byte."""
    out = bytearray()
    start = 0
    n = len(data)
    while True:
        z = data.find(0, start, min(n, start + 254))
        if z < 0:
            end = min(n, start + 254)
            out.append(end - start + 1)
            out += data[start:end]
            if end == n:
                if end - start == 254:
                    out.append(1)
                break
            start = end
        else:
            out.append(z - start + 1)
            out += data[start:z]
            start = z + 1
            if start == n:
                out.append(1)
                break
    return bytes(out)


def cobs_encode_into(data: bytearray, out: bytearray) -> int:
    """COBS-encode ``data`` (shorter than 254 bytes: one code byte per zero-delimited run, no
    0xFF runs) into ``out`` followed by the 0x00 delimiter; returns the bytes written.

    The send path's encoder: no allocation; equal to ``cobs_encode(data) + b"\x00"`` for such
    data (tested).
    """
    n = len(data)
    if n >= 254:
        raise ValueError(f"cobs_encode_into takes frames shorter than 254 bytes, got {n}")
    # The data shifted by one, then each zero (and the first byte) replaced by the distance
    # to the next zero or the end: one pass over ~20 bytes (measured 2 us; a find() per zero
    # costs more in a frame of small counts, which has many zeros).
    out[1 : n + 1] = data
    code_pos = 0
    o = 1
    for b in data:
        if not b:
            out[code_pos] = o - code_pos
            code_pos = o
        o += 1
    out[code_pos] = o - code_pos
    out[o] = 0
    return o + 1


class TorqueFrameEncoder:
    """Torque-command frames for ``n_joints``, built in preallocated buffers (the hot path).

    ``encode`` packs the payload (one struct for seq, time, n and every count), stamps the
    CRC and COBS-encodes the frame into its own wire buffer; the memoryview it returns stays
    valid until the next call. Equal to ``encode(TorqueCommand(...))`` (tested).
    """

    def __init__(self, n_joints: int, version: int = PROTOCOL_VERSION) -> None:
        if not 1 <= n_joints <= MAX_JOINTS:
            raise ValueError(f"n_joints must be 1..{MAX_JOINTS}, got {n_joints}")
        self.n_joints = n_joints
        plen = TorqueCommand._S.size + 2 * n_joints
        self._payload = struct.Struct(f"<IIB{n_joints}h")
        self._body = bytearray(HEADER_SIZE + plen + CRC_SIZE)
        HEADER.pack_into(self._body, 0, version, T_TORQUE_CMD, plen)
        self._crc_off = HEADER_SIZE + plen
        self._crc_view = memoryview(self._body)[: self._crc_off]
        self._wire = bytearray(len(self._body) + 2)  # one COBS code byte and the delimiter
        self._wire_view = memoryview(self._wire)

    def encode(self, seq: int, host_time_us: int, counts: Sequence[int]) -> memoryview:
        """The wire frame of TorqueCommand(seq, host_time_us, counts), 0x00 included."""
        body = self._body
        self._payload.pack_into(body, HEADER_SIZE, seq, host_time_us, self.n_joints, *counts)
        CRC.pack_into(body, self._crc_off, crc16(self._crc_view))
        return self._wire_view[: cobs_encode_into(body, self._wire)]


def cobs_decode(data: bytes | bytearray | memoryview) -> bytes:
    """Inverse of :func:`cobs_encode`; raises FrameError('framing') on malformed input."""
    out = bytearray()
    i = 0
    n = len(data)
    if n == 0:
        raise FrameError("framing", "empty frame")
    while i < n:
        code = data[i]
        if code == 0:
            raise FrameError("framing", "0x00 inside a COBS frame")
        end = i + code
        if end > n:
            raise FrameError("framing", "COBS code points past the end of the frame")
        chunk = data[i + 1 : end]
        if 0 in chunk:
            raise FrameError("framing", "0x00 inside a COBS frame")
        out += chunk
        i = end
        if code != 0xFF and i < n:
            out.append(0)
    return bytes(out)


class FrameError(BridgeError, ValueError):
    """A frame that must be dropped. ``kind`` is one of KINDS (the counter it goes to).

    The encoders raise it too (kind "value") for a field a receiver would drop, so that a
    sender never produces such a frame; it is a ValueError for their callers.
    """

    KINDS = ("framing", "crc", "version", "type", "direction", "length", "value")

    def __init__(
        self, kind: str, detail: str, *, version: int | None = None, mtype: int | None = None
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.version = version
        self.mtype = mtype
        self.payload: bytes = b""

    @property
    def hello_nonce(self) -> int | None:
        """For a version error: the nonce of a HELLO in another version, which a device
        answers (docs/protocol.md section 5.1), else None. Every version's HELLO is type 0x01
        and starts with nonce:u32; later versions may append fields, so a longer payload is
        answered and a shorter one is not."""
        if self.kind != "version" or self.mtype != T_HELLO or len(self.payload) < 4:
            return None
        return int.from_bytes(self.payload[:4], "little")


def _name_error(b: bytes, n: int) -> str | None:
    """Why ``b`` is not a valid name of at most ``n`` bytes (None if it is)."""
    if not 1 <= len(b) <= n:
        return f"must be 1..{n} bytes, got {len(b)}"
    bad = [c for c in b if not NAME_FIRST_BYTE <= c <= NAME_LAST_BYTE]
    if bad:
        return f"byte 0x{bad[0]:02x} is not visible ASCII (0x21..0x7e)"
    return None


def _check_name(b: bytes, what: str, maxlen: int) -> str:
    """Decode a NUL-padded name field; FrameError('value') unless it is 1..maxlen visible
    ASCII bytes followed only by NUL bytes."""
    s = b.rstrip(b"\0")
    if b"\0" in s:
        raise FrameError("value", f"{what} has bytes after its NUL padding")
    err = _name_error(s, maxlen)
    if err:
        raise FrameError("value", f"{what} {s!r}: {err}")
    return s.decode("ascii")


def _pad(s: str, n: int, what: str) -> bytes:
    """Encode a name for the wire: NUL-padded to ``n``; refuses what a receiver would drop."""
    if not isinstance(s, str):
        raise FrameError("value", f"{what} {s!r}: must be a str")
    b = s.encode("utf-8")  # a non-ASCII character becomes bytes >= 0x80, refused below
    err = _name_error(b, n)
    if err:
        raise FrameError("value", f"{what} {s!r}: {err}")
    return b.ljust(n, b"\0")


def _check_ints(values: tuple[int, ...], lo: int, hi: int, what: str) -> None:
    for v in values:
        if not (isinstance(v, int) and lo <= v <= hi):
            raise ValueError(f"{what}: {v!r} outside [{lo}, {hi}]")


def _round_product(value: float, counts_per_unit: int, what: str) -> int:
    """round_half_even(value * counts_per_unit): one binary64 multiplication by the integer
    (exact int -> float), then Python's round, which breaks ties to even."""
    x = float(value) * counts_per_unit
    if not math.isfinite(x):
        raise ValueError(f"{what} {value!r} is not finite")
    return round(x)


def to_count(value: float, counts_per_unit: int) -> int:
    """An SI value as an i16 wire count: ``value * counts_per_unit`` in binary64, rounded to
    the nearest integer with ties to even, saturated at +-32767 (docs/protocol.md section 3).

    Half-to-even is what numpy.rint, Python's round and C's rint/nearbyint (default rounding
    mode) do, so the host, the emulator and the C helper agree on every tie. Non-finite
    values are refused: a NaN torque must never become a count.
    """
    c = _round_product(value, counts_per_unit, "value")
    return max(-I16_SATURATION, min(I16_SATURATION, c))


def to_u16_count(value: float, counts_per_unit: int, what: str) -> int:
    """An SI value as a u16 wire count (the torque limit): rounded as :func:`to_count`, and
    refused (never saturated) outside 0..65535 after rounding: a limit is configuration,
    and a silently changed limit is a surprise."""
    c = _round_product(value, counts_per_unit, what)
    if not 0 <= c <= 0xFFFF:
        raise ValueError(
            f"{what} {value!r} is outside the wire range 0 .. {0xFFFF / counts_per_unit:g}"
        )
    return c


@dataclass(frozen=True, slots=True)
class Hello:
    """Host -> device: start a session. The header version is the host's protocol version."""

    TYPE: ClassVar[int] = T_HELLO
    nonce: int  # u32, echoed in DeviceInfo

    def payload(self) -> bytes:
        return struct.pack("<I", self.nonce)

    @classmethod
    def parse(cls, p: bytes) -> Hello:
        _need(p, 4)
        return cls(*struct.unpack("<I", p))


@dataclass(frozen=True, slots=True)
class _Request:
    request_id: int  # u16, echoed in Ack

    def payload(self) -> bytes:
        return struct.pack("<H", self.request_id)

    @classmethod
    def parse(cls, p: bytes):
        _need(p, 2)
        return cls(*struct.unpack("<H", p))


@dataclass(frozen=True, slots=True)
class Enable(_Request):
    TYPE: ClassVar[int] = T_ENABLE


@dataclass(frozen=True, slots=True)
class Disable(_Request):
    TYPE: ClassVar[int] = T_DISABLE


@dataclass(frozen=True, slots=True)
class ClearFaults(_Request):
    TYPE: ClassVar[int] = T_CLEAR_FAULTS


@dataclass(frozen=True, slots=True)
class TorqueCommand:
    """Host -> device: per-joint torque in 0.01 N m counts (int16)."""

    TYPE: ClassVar[int] = T_TORQUE_CMD
    seq: int  # u32, 1..0xFFFFFFFF, +1 per command, 0xFFFFFFFF -> 1 (0 is reserved)
    host_time_us: int  # u32, host monotonic clock in microseconds, wraps
    torque: tuple[int, ...]  # int16 counts of TORQUE_SCALE_NM

    _S: ClassVar[struct.Struct] = struct.Struct("<IIB")

    def payload(self) -> bytes:
        if not 1 <= len(self.torque) <= MAX_JOINTS:
            raise ValueError(f"torque must have 1..{MAX_JOINTS} joints, got {len(self.torque)}")
        _check_ints(self.torque, -32768, 32767, "torque count")
        if self.seq == 0:
            raise FrameError(
                "value", "torque command seq 0 is reserved (never sent, never applied)"
            )
        n = len(self.torque)
        return self._S.pack(self.seq, self.host_time_us, n) + struct.pack(f"<{n}h", *self.torque)

    @classmethod
    def parse(cls, p: bytes) -> TorqueCommand:
        if len(p) < 9:
            raise FrameError("length", f"torque command payload {len(p)} < 9 bytes")
        seq, t, n = cls._S.unpack_from(p)
        if not 1 <= n <= MAX_JOINTS or len(p) != 9 + 2 * n:
            raise FrameError("length", f"torque command: n_joints {n} vs payload {len(p)}")
        # seq 0 means "none" (TELEMETRY.last_seq_applied): a command carrying it is never
        # applied, and must not become the device's reference for newer/older either
        if seq == 0:
            raise FrameError("value", "torque command seq 0 is reserved")
        return cls(seq, t, struct.unpack_from(f"<{n}h", p, 9))


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Host -> device: keeps the link alive when no torque command is due."""

    TYPE: ClassVar[int] = T_HEARTBEAT
    host_time_us: int  # u32
    last_seq_sent: int  # u32

    def payload(self) -> bytes:
        return struct.pack("<II", self.host_time_us, self.last_seq_sent)

    @classmethod
    def parse(cls, p: bytes) -> Heartbeat:
        _need(p, 8)
        return cls(*struct.unpack("<II", p))


@dataclass(frozen=True, slots=True)
class JointInfo:
    name: str  # 1..8 visible ASCII characters (0x21..0x7e)
    torque_limit: int  # u16, 0.01 N m: 0 .. 655.35 N m
    angle_min: int  # int16, 1e-4 rad
    angle_max: int  # int16, 1e-4 rad


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Device -> host: reply to Hello, carrying identity and joint configuration.

    The one description of a device: the fields are as on the wire (integer counts), the
    properties below give them in SI units. ``HostLink.handshake`` returns this very object.
    """

    TYPE: ClassVar[int] = T_DEVICE_INFO
    nonce: int  # u32, from Hello
    command_timeout_ms: int  # u16
    telemetry_period_us: int  # u16
    device_id: str  # 1..16 visible ASCII characters (0x21..0x7e)
    joints: tuple[JointInfo, ...]

    _S: ClassVar[struct.Struct] = struct.Struct(f"<IHH{DEVICE_ID_LEN}sB")
    _J: ClassVar[struct.Struct] = struct.Struct(f"<{JOINT_NAME_LEN}sHhh")

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    # -- the same description in SI units ---------------------------------------------------
    @property
    def protocol_version(self) -> int:
        """The version this frame was decoded with (the decoder refuses any other)."""
        return PROTOCOL_VERSION

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)

    @property
    def torque_limit_nm(self) -> tuple[float, ...]:
        return tuple(j.torque_limit * TORQUE_SCALE_NM for j in self.joints)

    @property
    def angle_min_rad(self) -> tuple[float, ...]:
        return tuple(j.angle_min * ANGLE_SCALE_RAD for j in self.joints)

    @property
    def angle_max_rad(self) -> tuple[float, ...]:
        return tuple(j.angle_max * ANGLE_SCALE_RAD for j in self.joints)

    @property
    def command_timeout_s(self) -> float:
        return self.command_timeout_ms / 1000.0

    @property
    def telemetry_period_s(self) -> float:
        return self.telemetry_period_us / 1e6

    def payload(self) -> bytes:
        if not 1 <= len(self.joints) <= MAX_JOINTS:
            raise ValueError(f"device info must have 1..{MAX_JOINTS} joints")
        self._check_timing(self.command_timeout_ms, self.telemetry_period_us)
        for j in self.joints:
            _check_ints((j.torque_limit,), 0, 0xFFFF, f"joint {j.name!r} torque_limit count")
            _check_ints((j.angle_min, j.angle_max), -32768, 32767, f"joint {j.name!r} angle")
        out = self._S.pack(
            self.nonce,
            self.command_timeout_ms,
            self.telemetry_period_us,
            _pad(self.device_id, DEVICE_ID_LEN, "device_id"),
            len(self.joints),
        )
        for j in self.joints:
            out += self._J.pack(
                _pad(j.name, JOINT_NAME_LEN, "joint name"), j.torque_limit, j.angle_min, j.angle_max
            )
        return out

    @classmethod
    def parse(cls, p: bytes) -> DeviceInfo:
        if len(p) < cls._S.size:
            raise FrameError("length", f"device info payload {len(p)} < {cls._S.size}")
        nonce, tmo, per, did, n = cls._S.unpack_from(p)
        if not 1 <= n <= MAX_JOINTS or len(p) != cls._S.size + n * cls._J.size:
            raise FrameError("length", f"device info: n_joints {n} vs payload {len(p)}")
        cls._check_timing(tmo, per)
        joints = []
        for k in range(n):
            name, lim, lo, hi = cls._J.unpack_from(p, cls._S.size + k * cls._J.size)
            joints.append(JointInfo(_check_name(name, "joint name", JOINT_NAME_LEN), lim, lo, hi))
        return cls(nonce, tmo, per, _check_name(did, "device_id", DEVICE_ID_LEN), tuple(joints))

    @staticmethod
    def _check_timing(command_timeout_ms: int, telemetry_period_us: int) -> None:
        # 0 would mean "time out at once" / "telemetry without pause": no device means that
        if not (1 <= command_timeout_ms <= 0xFFFF):
            raise FrameError("value", f"command_timeout_ms {command_timeout_ms}")
        if not (1 <= telemetry_period_us <= 0xFFFF):
            raise FrameError("value", f"telemetry_period_us {telemetry_period_us}")


@dataclass(frozen=True, slots=True)
class Ack:
    """Device -> host: the outcome of Enable / Disable / ClearFaults."""

    TYPE: ClassVar[int] = T_ACK
    request_id: int  # u16
    request_type: int  # u8
    result: int  # u8, ACK_*
    state: int  # u8, STATE_* after the request
    fault_bits: int  # u16

    def payload(self) -> bytes:
        self._check(self.request_type, self.result, self.state, self.fault_bits)
        return struct.pack(
            "<HBBBH", self.request_id, self.request_type, self.result, self.state, self.fault_bits
        )

    @classmethod
    def parse(cls, p: bytes) -> Ack:
        _need(p, 7)
        rid, rtype, result, state, faults = struct.unpack("<HBBBH", p)
        cls._check(rtype, result, state, faults)
        return cls(rid, rtype, result, state, faults)

    @staticmethod
    def _check(request_type: int, result: int, state: int, fault_bits: int) -> None:
        if request_type not in REQUEST_TYPES:
            raise FrameError("value", f"ack request_type 0x{request_type:02x}")
        if result not in ACK_RESULTS:
            raise FrameError("value", f"ack result {result}")
        if state not in STATES:
            raise FrameError("value", f"ack state {state}")
        if not (0 <= fault_bits <= FAULTS_DEFINED):
            raise FrameError("value", f"ack fault_bits 0x{fault_bits:04x}")


@dataclass(frozen=True, slots=True)
class Telemetry:
    """Device -> host: state after each applied command, and periodically."""

    TYPE: ClassVar[int] = T_TELEMETRY
    telemetry_seq: int  # u32, +1 per telemetry frame sent
    fw_time_us: int  # u32
    last_seq_applied: int  # u32, 0 = none since Hello
    flags: int  # u8, FLAG_*
    fault_bits: int  # u16, FAULT_*
    angle: tuple[int, ...]  # int16, 1e-4 rad
    velocity: tuple[int, ...]  # int16, 1e-3 rad/s
    torque: tuple[int, ...]  # int16, 0.01 N m (applied, after clamp)
    current: tuple[int, ...]  # int16, 0.01 A
    temperature: tuple[int, ...]  # int16, 0.1 degC
    joint_faults: tuple[int, ...]  # u16, JFAULT_*

    _S: ClassVar[struct.Struct] = struct.Struct("<IIIBHB")
    _J: ClassVar[struct.Struct] = struct.Struct("<hhhhhH")

    def payload(self) -> bytes:
        n = len(self.angle)
        cols = (
            self.angle,
            self.velocity,
            self.torque,
            self.current,
            self.temperature,
            self.joint_faults,
        )
        if not 1 <= n <= MAX_JOINTS or any(len(c) != n for c in cols):
            raise ValueError("telemetry per-joint fields must all have the same 1..8 length")
        for c in cols[:5]:
            _check_ints(c, -32768, 32767, "telemetry count")
        self._check(self.flags, self.fault_bits, self.joint_faults)
        out = self._S.pack(
            self.telemetry_seq,
            self.fw_time_us,
            self.last_seq_applied,
            self.flags,
            self.fault_bits,
            n,
        )
        for k in range(n):
            out += self._J.pack(*(c[k] for c in cols))
        return out

    @classmethod
    def parse(cls, p: bytes) -> Telemetry:
        if len(p) < cls._S.size:
            raise FrameError("length", f"telemetry payload {len(p)} < {cls._S.size}")
        tseq, fwt, last, flags, faults, n = cls._S.unpack_from(p)
        if not 1 <= n <= MAX_JOINTS or len(p) != cls._S.size + n * cls._J.size:
            raise FrameError("length", f"telemetry: n_joints {n} vs payload {len(p)}")
        rows = [cls._J.unpack_from(p, cls._S.size + k * cls._J.size) for k in range(n)]
        cols = tuple(zip(*rows, strict=True))
        cls._check(flags, faults, cols[5])
        return cls(tseq, fwt, last, flags, faults, *cols)

    @staticmethod
    def _check(flags: int, fault_bits: int, joint_faults: tuple[int, ...]) -> None:
        if not (0 <= flags <= FLAGS_DEFINED):
            raise FrameError("value", f"telemetry flags 0x{flags:02x}")
        if not (0 <= fault_bits <= FAULTS_DEFINED):
            raise FrameError("value", f"telemetry fault_bits 0x{fault_bits:04x}")
        for jf in joint_faults:
            if not (isinstance(jf, int) and 0 <= jf <= JFAULTS_DEFINED):
                raise FrameError("value", f"joint_faults {jf!r}")


@dataclass(frozen=True, slots=True)
class FaultReport:
    """Device -> host: sent once when a fault bit rises (latched or not)."""

    TYPE: ClassVar[int] = T_FAULT_REPORT
    fw_time_us: int  # u32
    code: int  # u8, bit index of the FAULT_* bit
    latched: int  # u8, 0 / 1
    joint: int  # u8, joint index or JOINT_DEVICE
    fault_bits: int  # u16, all device fault bits now

    def payload(self) -> bytes:
        self._check(self.code, self.latched, self.joint, self.fault_bits)
        return struct.pack(
            "<IBBBH", self.fw_time_us, self.code, self.latched, self.joint, self.fault_bits
        )

    @classmethod
    def parse(cls, p: bytes) -> FaultReport:
        _need(p, 9)
        t, code, latched, joint, faults = struct.unpack("<IBBBH", p)
        cls._check(code, latched, joint, faults)
        return cls(t, code, latched, joint, faults)

    @staticmethod
    def _check(code: int, latched: int, joint: int, fault_bits: int) -> None:
        if not (0 <= code < N_FAULT_CODES):
            raise FrameError("value", f"fault report code {code}")
        # codes 0..3 are the latched faults: `latched` follows from the code
        if latched != int((1 << code) & LATCHED_FAULTS != 0):
            raise FrameError("value", f"latched {latched} for {code}")
        if not (0 <= joint < MAX_JOINTS or joint == JOINT_DEVICE):
            raise FrameError("value", f"fault report joint {joint}")
        if not (0 <= fault_bits <= FAULTS_DEFINED):
            raise FrameError("value", f"fault report fault_bits 0x{fault_bits:04x}")


@dataclass(frozen=True, slots=True)
class EstopState:
    """Device -> host: sent on every change of the hardware e-stop input."""

    TYPE: ClassVar[int] = T_ESTOP_STATE
    fw_time_us: int  # u32
    pressed: int  # u8, 0 / 1

    def payload(self) -> bytes:
        if self.pressed not in (0, 1):
            raise FrameError("value", f"estop pressed {self.pressed}")
        return struct.pack("<IB", self.fw_time_us, self.pressed)

    @classmethod
    def parse(cls, p: bytes) -> EstopState:
        _need(p, 5)
        t, pressed = struct.unpack("<IB", p)
        if pressed not in (0, 1):
            raise FrameError("value", f"estop pressed {pressed}")
        return cls(t, pressed)


Message = (
    Hello
    | Enable
    | Disable
    | ClearFaults
    | TorqueCommand
    | Heartbeat
    | DeviceInfo
    | Ack
    | Telemetry
    | FaultReport
    | EstopState
)
MESSAGE_TYPES: dict[int, type[Message]] = {
    c.TYPE: c
    for c in (
        Hello,
        Enable,
        Disable,
        ClearFaults,
        TorqueCommand,
        Heartbeat,
        DeviceInfo,
        Ack,
        Telemetry,
        FaultReport,
        EstopState,
    )
}


def _need(p: bytes, n: int) -> None:
    if len(p) != n:
        raise FrameError("length", f"payload is {len(p)} bytes, this type needs {n}")


def encode_body(msg: Message, version: int = PROTOCOL_VERSION) -> bytes:
    """header + payload + crc, before COBS (what the CRC and the vectors' 'body' cover)."""
    payload = msg.payload()
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload {len(payload)} bytes > MAX_PAYLOAD {MAX_PAYLOAD}")
    body = HEADER.pack(version, msg.TYPE, len(payload)) + payload
    return body + CRC.pack(crc16(body))


def encode(msg: Message, version: int = PROTOCOL_VERSION) -> bytes:
    """The complete wire frame: COBS(header + payload + crc) followed by the 0x00 delimiter."""
    return cobs_encode(encode_body(msg, version)) + b"\x00"


def meant_for(mtype: int) -> str:
    """The receiver a message type is for: DEVICE below 0x80, HOST from 0x80."""
    return DEVICE if mtype < 0x80 else HOST


def decode_body(body: bytes, receiver: str | None = None) -> Message:
    """Check and parse a COBS-decoded frame (header + payload + crc).

    The checks run in the order of docs/protocol.md section 2; the first that fails decides
    the FrameError kind. ``receiver`` (DEVICE or HOST) adds the direction check; None decodes
    both directions (tools, tests, a line sniffer).
    """
    if len(body) < HEADER_SIZE + CRC_SIZE:
        raise FrameError("framing", f"frame of {len(body)} bytes is shorter than header + crc")
    if len(body) > MAX_FRAME:
        raise FrameError("framing", f"frame of {len(body)} bytes exceeds {MAX_FRAME}")
    if crc16(memoryview(body)[:-CRC_SIZE]) != CRC.unpack_from(body, len(body) - CRC_SIZE)[0]:
        raise FrameError("crc", "CRC mismatch")
    version, mtype, length = HEADER.unpack_from(body)
    if length != len(body) - HEADER_SIZE - CRC_SIZE:
        raise FrameError("length", f"header length {length} != payload {len(body) - 6}")
    if version != PROTOCOL_VERSION:
        e = FrameError("version", f"protocol version {version}", version=version, mtype=mtype)
        e.payload = bytes(body[HEADER_SIZE:-CRC_SIZE])
        raise e
    cls = MESSAGE_TYPES.get(mtype)
    if cls is None:
        raise FrameError("type", f"unknown message type 0x{mtype:02x}")
    if receiver is not None and meant_for(mtype) != receiver:
        raise FrameError("direction", f"type 0x{mtype:02x} is not for the {receiver}", mtype=mtype)
    return cls.parse(bytes(body[HEADER_SIZE:-CRC_SIZE]))


def decode(frame: bytes | bytearray | memoryview, receiver: str | None = None) -> Message:
    """Decode one frame as read between delimiters (COBS-encoded, without the 0x00)."""
    if len(frame) > MAX_ENCODED:
        raise FrameError("framing", f"encoded frame of {len(frame)} bytes exceeds {MAX_ENCODED}")
    return decode_body(cobs_decode(frame), receiver)


class StreamDecoder:
    """Split a byte stream at 0x00 delimiters and decode each frame; never raises.

    Garbage is dropped up to the next delimiter (resynchronisation). An over-long run (a 248th
    byte without a delimiter) is dropped up to the next delimiter and counted as one framing
    error when that delimiter arrives; a run cut short by :meth:`discard_partial` is not
    counted. Empty frames (0x00 0x00) are idle fill and are neither counted nor reported.
    Counters: ``good`` and one per FrameError kind.

    ``receiver`` is the end this decoder runs at: HOST (the default: this package is the host
    side), DEVICE (the emulator), or None for a sniffer that accepts both directions.
    ``on_version_error`` is called during :meth:`feed`, before the messages of the same call
    are returned: a receiver whose reaction must keep arrival order feeds one frame at a time.
    """

    def __init__(
        self,
        on_version_error: Callable[[FrameError], None] | None = None,
        *,
        receiver: str | None = HOST,
    ) -> None:
        if receiver not in (HOST, DEVICE, None):
            raise ValueError(f"receiver must be {HOST!r}, {DEVICE!r} or None, got {receiver!r}")
        self.receiver = receiver
        self._on_version_error = on_version_error
        self._buf = bytearray()
        self._overflow = False
        self.good = 0
        self.errors: dict[str, int] = dict.fromkeys(FrameError.KINDS, 0)
        self.last_bad_version: int | None = None

    def discard_partial(self) -> None:
        """Forget a partly received frame (the port was reopened); counters stay."""
        self._buf.clear()
        self._overflow = False

    def feed(self, data: bytes | bytearray | memoryview) -> list[Message]:
        if isinstance(data, memoryview):
            data = data.tobytes()
        out: list[Message] = []
        buf = self._buf
        start = 0
        n = len(data)
        while start < n:
            z = data.find(0, start)
            if z < 0:
                if not self._overflow:
                    buf += data[start:]
                    if len(buf) > MAX_ENCODED:
                        self._overflow = True
                        buf.clear()
                break
            if self._overflow:
                self._overflow = False
                self.errors["framing"] += 1
            else:
                buf += data[start:z]
                if buf:
                    self._one(buf, out)
            buf.clear()
            start = z + 1
        return out

    def _one(self, frame: bytearray, out: list[Message]) -> None:
        try:
            out.append(decode(frame, self.receiver))
            self.good += 1
        except FrameError as e:
            self.errors[e.kind] += 1
            if e.kind == "version":
                self.last_bad_version = e.version
                if self._on_version_error is not None:
                    self._on_version_error(e)
        except Exception:  # the decoder must never raise on wire bytes
            self.errors["framing"] += 1
