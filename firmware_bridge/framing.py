"""Framing of the host <-> firmware protocol (docs/protocol.md section 2).

Frame on the wire::

    COBS( header | payload | crc16 ) 0x00

    header  = u8 version, u8 type, u16 payload_length      (little-endian)
    crc16   = CRC-16/CCITT-FALSE over header + payload, stored little-endian

This module holds the byte-level layer: the CRC, COBS both ways and :class:`FrameError`, the
one error a receiver drops a frame for (its ``kind`` names the counter). It knows nothing of
message contents, which live in :mod:`firmware_bridge.messages`.
"""

from __future__ import annotations

import binascii

from firmware_bridge.errors import BridgeError
from firmware_bridge.protocol_constants import T_HELLO


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
