from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest

from firmware_bridge.emulator import EmulatedJoint, FirmwareEmulator

JOINTS = [
    EmulatedJoint("hip_l", 40.0, -0.5, 1.8),
    EmulatedJoint("hip_r", 40.0, -0.5, 1.8),
    EmulatedJoint("knee_l", 35.0, -0.05, 2.0),
    EmulatedJoint("knee_r", 35.0, -0.05, 2.0),
]


def wait_until(cond: Callable[[], bool], timeout_s: float = 5.0, what: str = "") -> None:
    """Poll a condition; generous timeouts because the test machine is shared and noisy."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what or cond}")
        time.sleep(0.002)


@pytest.fixture
def emulator() -> Iterator[FirmwareEmulator]:
    emu = FirmwareEmulator(JOINTS, command_timeout_s=0.1, telemetry_period_s=0.002)
    emu.start()
    yield emu
    emu.stop()
