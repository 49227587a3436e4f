"""Wire codec for the exoctl host <-> actuator firmware serial protocol (version 1).

The normative description is ``docs/protocol.md``; the Python reference of it is this module
and the four it gathers, one per part of the specification:

* :mod:`firmware_bridge.protocol_constants`: sizes, scales, message types, states, fault bits
  (sections 1 to 4);
* :mod:`firmware_bridge.framing`: CRC-16, COBS and :class:`FrameError` (section 2);
* :mod:`firmware_bridge.wire_fields`: names, ranges and SI-to-count conversion (section 3);
* :mod:`firmware_bridge.messages`: one frozen dataclass per message (section 4).

This module puts them together: a message to a frame and back (``encode``, ``decode``, with
the receiver checks in the order of section 2), the byte-stream receiver
(:class:`StreamDecoder`) and the hot path's preallocated torque-frame encoder. Every name of
the four is re-exported here, so ``from firmware_bridge import protocol as P; P.X`` is the one
way callers reach the protocol. Decoding never trusts a field it has not checked: every
failure is a :class:`FrameError` with a ``kind`` the counters use.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence

# Re-exported: every public name of the four modules is reachable as ``protocol.X``.
from firmware_bridge.framing import *  # noqa: F403
from firmware_bridge.framing import FrameError, cobs_decode, cobs_encode, cobs_encode_into, crc16
from firmware_bridge.messages import *  # noqa: F403
from firmware_bridge.messages import MESSAGE_TYPES, Message, TorqueCommand
from firmware_bridge.protocol_constants import *  # noqa: F403
from firmware_bridge.protocol_constants import (
    CRC,
    CRC_SIZE,
    DEVICE,
    HEADER,
    HEADER_SIZE,
    HOST,
    MAX_ENCODED,
    MAX_FRAME,
    MAX_JOINTS,
    MAX_PAYLOAD,
    PROTOCOL_VERSION,
    T_TORQUE_CMD,
)
from firmware_bridge.wire_fields import *  # noqa: F403
from firmware_bridge.wire_fields import _pad as _pad  # the emulators pad their names with it


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
