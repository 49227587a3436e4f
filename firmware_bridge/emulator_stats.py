"""The counters a device model behind a pty reports (the emulator and the QEMU board alike)."""

from __future__ import annotations

from typing import Any, TypedDict


class EmulatorStats(TypedDict):
    """``FirmwareEmulator.stats()``: the device's own counters, read by the HIL summary."""

    commands_received: int
    commands_applied: int
    commands_refused: int
    commands_out_of_order: int
    limit_violations: int
    crc_errors: int
    framing_errors: int
    frame_errors: dict[str, int]  # per FrameError kind
    frames_good: int
    seq_gaps: int
    timeouts: int
    resets: int
    faults: list[dict[str, Any]]
    fault_bits: int
    enabled: bool
    handshaken: bool
    estop: bool
    bits_corrupted: int
    applied_torque_nm: list[float]
