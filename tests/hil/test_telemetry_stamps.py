"""The emulated firmware stamps its telemetry with the instant the joint state it reports was
measured (``Plant.measured_at``), over a real pty: the host pairs the angles with the EMG by
that stamp (``exoctl.estimation.pairing``), so a frame sent late, or a state read late by a
preempted thread, must still carry the instant its angles describe."""

from __future__ import annotations

import math
import time

import numpy as np
import serial

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatedJoint, FirmwareEmulator

JOINTS = [EmulatedJoint("hip_r", 40.0, -3.2, 3.2), EmulatedJoint("knee_r", 35.0, -3.2, 3.2)]


class ClockPlant:
    """Each joint's angle is the time (s, modulo 3) at which it was read off the clock; every
    fourth read comes 1.5 ms after the firmware's tick (a thread preempted in between)."""

    def __init__(self) -> None:
        self.emu: FirmwareEmulator | None = None  # whose clock origin the angles count from
        self.measured_at = math.nan
        self.reads = 0

    def step(self, t: float, dt: float, exo_torque_nm: np.ndarray):
        self.reads += 1
        if self.reads % 4 == 0:
            time.sleep(0.0015)
        self.measured_at = time.monotonic()
        assert self.emu is not None
        a = (self.measured_at - self.emu._t0) % 3.0
        return np.array([a, a]), np.zeros(2)


def test_telemetry_carries_the_instant_its_angles_were_measured():
    plant = ClockPlant()
    emu = FirmwareEmulator(JOINTS, plant=plant, telemetry_period_s=0.002)
    plant.emu = emu  # angle = the device time of the read
    port = emu.start()
    try:
        ser = serial.Serial(port, 1_000_000, timeout=0.05)
        dec = P.StreamDecoder()
        frames: list[P.Telemetry] = []
        deadline = time.monotonic() + 10.0
        while len(frames) < 300 and time.monotonic() < deadline:
            for m in dec.feed(ser.read(ser.in_waiting or 1)):
                if isinstance(m, P.Telemetry) and m.telemetry_seq > 5:
                    frames.append(m)
        ser.close()
    finally:
        emu.stop()
    assert len(frames) >= 300
    stamp = np.array([f.fw_time_us / 1e6 for f in frames]) % 3.0
    angle = np.array([f.angle[0] / P.ANGLE_COUNTS_PER_RAD for f in frames])
    err = np.abs((angle - stamp + 1.5) % 3.0 - 1.5)  # modulo 3 s
    # the angle is sent in counts of 1e-4 rad: 0.1 ms of this clock
    assert err.max() <= 1.5e-4, f"stamp and angle differ by up to {err.max() * 1e3:.2f} ms"
