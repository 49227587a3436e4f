"""The messages of the host <-> firmware protocol (docs/protocol.md section 4), one class each.

Messages are frozen dataclasses holding the *wire* integers (fixed-point counts), so that
``decode(encode(m)) == m`` exactly; conversion to SI units lives in the host link and the
emulator. Each class packs its payload (``payload``) and parses one (``parse``), checking
every field: a failure is a :class:`~firmware_bridge.framing.FrameError`. Headers, CRC and
COBS are the codec's (:mod:`firmware_bridge.protocol`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import ClassVar

from firmware_bridge.framing import FrameError
from firmware_bridge.protocol_constants import (
    ACK_RESULTS,
    ANGLE_SCALE_RAD,
    DEVICE_ID_LEN,
    FAULTS_DEFINED,
    FLAGS_DEFINED,
    JFAULTS_DEFINED,
    JOINT_DEVICE,
    JOINT_NAME_LEN,
    LATCHED_FAULTS,
    MAX_JOINTS,
    N_FAULT_CODES,
    PROTOCOL_VERSION,
    REQUEST_TYPES,
    STATES,
    T_ACK,
    T_CLEAR_FAULTS,
    T_DEVICE_INFO,
    T_DISABLE,
    T_ENABLE,
    T_ESTOP_STATE,
    T_FAULT_REPORT,
    T_HEARTBEAT,
    T_HELLO,
    T_TELEMETRY,
    T_TORQUE_CMD,
    TORQUE_SCALE_NM,
)
from firmware_bridge.wire_fields import _check_ints, _check_name, _need, _pad


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
