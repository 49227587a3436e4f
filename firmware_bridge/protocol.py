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
"""

from __future__ import annotations

import binascii
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

PROTOCOL_VERSION = 1
MAX_JOINTS = 8
HEADER = struct.Struct("<BBH")  # version, type, payload length
CRC = struct.Struct("<H")
HEADER_SIZE = HEADER.size  # 4
CRC_SIZE = CRC.size  # 2
MAX_PAYLOAD = 240
# A decoded frame (header + payload + crc) never exceeds 254 bytes, so COBS adds exactly one
# byte and the encoded frame is at most 255 bytes plus the 0x00 delimiter.
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 246
MAX_ENCODED = MAX_FRAME + 1  # 247, without delimiter
DEVICE_ID_LEN = 16
JOINT_NAME_LEN = 8

# Fixed-point scales: SI value = count * scale.
TORQUE_SCALE_NM = 0.01  # int16, 0.01 N m   (+-327.67 N m)
ANGLE_SCALE_RAD = 1e-4  # int16, 0.1 mrad   (+-3.2767 rad)
VELOCITY_SCALE_RAD_S = 1e-3  # int16, 1 mrad/s (+-32.767 rad/s)
CURRENT_SCALE_A = 0.01  # int16, 10 mA      (+-327.67 A)
TEMPERATURE_SCALE_C = 0.1  # int16, 0.1 degC (+-3276.7 degC)

# Message types: host -> device below 0x80, device -> host from 0x80.
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


class FrameError(ValueError):
    """A frame that must be dropped. ``kind`` is one of KINDS (the counter it goes to)."""

    KINDS = ("framing", "crc", "version", "type", "length")

    def __init__(
        self, kind: str, detail: str, *, version: int | None = None, mtype: int | None = None
    ) -> None:
        super().__init__(f"{kind}: {detail}")
        self.kind = kind
        self.version = version
        self.mtype = mtype
        self.payload: bytes = b""


def _check_name(b: bytes, what: str, maxlen: int) -> str:
    s = b.rstrip(b"\0")
    if b"\0" in s:
        raise FrameError("length", f"{what} has bytes after its NUL padding")
    try:
        return s.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("length", f"{what} is not ASCII") from None


def _pad(s: str, n: int, what: str) -> bytes:
    b = s.encode("ascii")
    if len(b) > n or "\0" in s:
        raise ValueError(f"{what} {s!r} must be ASCII, at most {n} bytes, no NUL")
    return b.ljust(n, b"\0")


def _check_ints(values: tuple[int, ...], lo: int, hi: int, what: str) -> None:
    for v in values:
        if not (isinstance(v, int) and lo <= v <= hi):
            raise ValueError(f"{what}: {v!r} outside [{lo}, {hi}]")


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
    seq: int  # u32, increases by one per command
    host_time_us: int  # u32, host monotonic clock in microseconds, wraps
    torque: tuple[int, ...]  # int16 counts of TORQUE_SCALE_NM

    _S: ClassVar[struct.Struct] = struct.Struct("<IIB")

    def payload(self) -> bytes:
        if not 1 <= len(self.torque) <= MAX_JOINTS:
            raise ValueError(f"torque must have 1..{MAX_JOINTS} joints, got {len(self.torque)}")
        _check_ints(self.torque, -32768, 32767, "torque count")
        n = len(self.torque)
        return self._S.pack(self.seq, self.host_time_us, n) + struct.pack(f"<{n}h", *self.torque)

    @classmethod
    def parse(cls, p: bytes) -> TorqueCommand:
        if len(p) < 9:
            raise FrameError("length", f"torque command payload {len(p)} < 9 bytes")
        seq, t, n = cls._S.unpack_from(p)
        if not 1 <= n <= MAX_JOINTS or len(p) != 9 + 2 * n:
            raise FrameError("length", f"torque command: n_joints {n} vs payload {len(p)}")
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
    name: str  # ASCII, <= 8 bytes
    torque_limit: int  # u16, 0.01 N m
    angle_min: int  # int16, 1e-4 rad
    angle_max: int  # int16, 1e-4 rad


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Device -> host: reply to Hello, carrying identity and joint configuration."""

    TYPE: ClassVar[int] = T_DEVICE_INFO
    nonce: int  # u32, from Hello
    command_timeout_ms: int  # u16
    telemetry_period_us: int  # u16
    device_id: str  # ASCII, <= 16 bytes
    joints: tuple[JointInfo, ...]

    _S: ClassVar[struct.Struct] = struct.Struct(f"<IHH{DEVICE_ID_LEN}sB")
    _J: ClassVar[struct.Struct] = struct.Struct(f"<{JOINT_NAME_LEN}sHhh")

    @property
    def n_joints(self) -> int:
        return len(self.joints)

    def payload(self) -> bytes:
        if not 1 <= len(self.joints) <= MAX_JOINTS:
            raise ValueError(f"device info must have 1..{MAX_JOINTS} joints")
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
        joints = []
        for k in range(n):
            name, lim, lo, hi = cls._J.unpack_from(p, cls._S.size + k * cls._J.size)
            joints.append(JointInfo(_check_name(name, "joint name", JOINT_NAME_LEN), lim, lo, hi))
        return cls(nonce, tmo, per, _check_name(did, "device_id", DEVICE_ID_LEN), tuple(joints))


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
        return struct.pack(
            "<HBBBH", self.request_id, self.request_type, self.result, self.state, self.fault_bits
        )

    @classmethod
    def parse(cls, p: bytes) -> Ack:
        _need(p, 7)
        return cls(*struct.unpack("<HBBBH", p))


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
        _check_ints(self.joint_faults, 0, 0xFFFF, "joint fault bits")
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
        return cls(tseq, fwt, last, flags, faults, *cols)


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
        return struct.pack(
            "<IBBBH", self.fw_time_us, self.code, self.latched, self.joint, self.fault_bits
        )

    @classmethod
    def parse(cls, p: bytes) -> FaultReport:
        _need(p, 9)
        return cls(*struct.unpack("<IBBBH", p))


@dataclass(frozen=True, slots=True)
class EstopState:
    """Device -> host: sent on every change of the hardware e-stop input."""

    TYPE: ClassVar[int] = T_ESTOP_STATE
    fw_time_us: int  # u32
    pressed: int  # u8, 0 / 1

    def payload(self) -> bytes:
        return struct.pack("<IB", self.fw_time_us, self.pressed)

    @classmethod
    def parse(cls, p: bytes) -> EstopState:
        _need(p, 5)
        return cls(*struct.unpack("<IB", p))


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
MESSAGE_TYPES: dict[int, type] = {
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


def decode_body(body: bytes) -> Message:
    """Check and parse a COBS-decoded frame (header + payload + crc)."""
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
    return cls.parse(bytes(body[HEADER_SIZE:-CRC_SIZE]))


def decode(frame: bytes | bytearray | memoryview) -> Message:
    """Decode one frame as read between delimiters (COBS-encoded, without the 0x00)."""
    if len(frame) > MAX_ENCODED:
        raise FrameError("framing", f"encoded frame of {len(frame)} bytes exceeds {MAX_ENCODED}")
    return decode_body(cobs_decode(frame))


class StreamDecoder:
    """Split a byte stream at 0x00 delimiters and decode each frame; never raises.

    Garbage is dropped up to the next delimiter (resynchronisation); an over-long run without
    a delimiter is dropped as one framing error. Empty frames (0x00 0x00) are idle fill and are
    neither counted nor reported. Counters: ``good`` and one per FrameError kind.
    """

    def __init__(self, on_version_error: Callable[[FrameError], None] | None = None) -> None:
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
            out.append(decode(frame))
            self.good += 1
        except FrameError as e:
            self.errors[e.kind] += 1
            if e.kind == "version":
                self.last_bad_version = e.version
                if self._on_version_error is not None:
                    self._on_version_error(e)
        except Exception:  # the decoder must never raise on wire bytes
            self.errors["framing"] += 1
