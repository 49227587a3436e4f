from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import pytest
import serial

from firmware_bridge import protocol as P
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


class RawHost:
    """A bare pyserial host speaking the protocol frame by frame (no HostLink)."""

    def __init__(self, port: str) -> None:
        self.ser = serial.Serial(port, 1_000_000, timeout=0.05)
        self.dec = P.StreamDecoder()
        self.got: list[P.Message] = []

    def send(self, *msgs: P.Message) -> None:
        self.ser.write(b"".join(P.encode(m) for m in msgs))

    def write(self, wire: bytes) -> None:
        """Raw bytes, for frames the encoder refuses to build (the point of the test)."""
        self.ser.write(wire)

    def expect(self, pred, what: str) -> P.Message:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for i, m in enumerate(self.got):
                if pred(m):
                    del self.got[: i + 1]
                    return m
            self.got.extend(self.dec.feed(self.ser.read(self.ser.in_waiting or 1)))
        raise AssertionError(f"no {what}")

    def ack(self, rid: int) -> P.Ack:
        return self.expect(lambda m: isinstance(m, P.Ack) and m.request_id == rid, f"ack {rid}")

    def echo(self, seq: int) -> P.Telemetry:
        return self.expect(
            lambda m: isinstance(m, P.Telemetry) and m.last_seq_applied == seq, f"echo {seq}"
        )
