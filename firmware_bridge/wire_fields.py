"""Field rules shared by the protocol's messages (docs/protocol.md sections 3 and 4).

Names (NUL-padded visible ASCII), integer ranges, payload lengths and the SI-to-count
conversion (binary64 product, ties to even, i16 saturation). The message classes check every
field with these on both encode and decode, so that a sender never produces a frame a receiver
would drop.
"""

from __future__ import annotations

import math

from firmware_bridge.framing import FrameError
from firmware_bridge.protocol_constants import I16_SATURATION, NAME_FIRST_BYTE, NAME_LAST_BYTE


def _need(p: bytes, n: int) -> None:
    if len(p) != n:
        raise FrameError("length", f"payload is {len(p)} bytes, this type needs {n}")


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
