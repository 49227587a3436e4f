"""The device side's wire arithmetic, shared by the emulated firmware.

u32 serial-number order and gaps of torque commands (docs/protocol.md section 5.3) and SI
values as i16 counts for a whole vector at once (section 3, the rule of protocol.to_count).
"""

from __future__ import annotations

import numpy as np

from firmware_bridge import protocol as P


def _serial_newer(a: int, b: int) -> bool:
    """a is after b in u32 serial-number arithmetic (a difference of exactly 2^31 is neither
    newer nor older, so such a command is not applied)."""
    d = (a - b) & 0xFFFFFFFF
    return 0 < d < 0x80000000


def _seq_gap(seq: int, last: int) -> int:
    """Commands missing between ``last`` and a newer ``seq``; 0 is never sent, so a wrap from
    0xFFFFFFFF to 1 is no gap."""
    gap = (seq - last - 1) & 0xFFFFFFFF
    return gap - 1 if seq < last else gap


def _counts(values: np.ndarray, counts_per_unit: int) -> tuple[int, ...]:
    """SI values as i16 wire counts: times the integer scale, ties to even, +-32767
    (docs/protocol.md section 3; the same rule as protocol.to_count, vectorised)."""
    c = np.rint(values * float(counts_per_unit))
    return tuple(np.clip(c, -P.I16_SATURATION, P.I16_SATURATION).astype(int).tolist())
