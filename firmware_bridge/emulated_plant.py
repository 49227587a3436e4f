"""The emulated device's joints and the dynamics they move with (the HIL bench's plant).

:class:`EmulatedJoint` is a joint as the device describes it (name, torque limit, angle range,
checked against what the wire can carry); :class:`Plant` is what the emulator integrates the
applied torque through, :class:`SpringDamperPlant` its default. The HIL simulator supplies a
plant that adds the synthetic patient's own torque.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

from firmware_bridge import protocol as P


@dataclass(frozen=True)
class EmulatedJoint:
    name: str
    torque_limit_nm: float
    angle_min_rad: float
    angle_max_rad: float

    def __post_init__(self) -> None:
        # the wire carries the limit as u16 counts of 0.01 N m: 0 .. 655.35 N m, refused
        # (not saturated) outside; a zero limit would be a joint that never gets torque
        if not P.to_u16_count(self.torque_limit_nm, P.TORQUE_COUNTS_PER_NM, "torque_limit_nm"):
            raise ValueError(f"joint {self.name}: torque_limit_nm must be > 0")
        if not -3.27 <= self.angle_min_rad < self.angle_max_rad <= 3.27:
            raise ValueError(f"joint {self.name}: need -3.27 <= angle_min < angle_max <= 3.27")
        P._pad(self.name, P.JOINT_NAME_LEN, "joint name")  # 1..8 visible ASCII characters


class Plant(Protocol):
    """Joint dynamics driven by the exoskeleton torque (the HIL patient adds its own).

    A plant whose state is read off a clock (a replayed recording) may say when the state it
    returned was measured: a finite ``measured_at`` (``time.monotonic()``) after ``step``; the
    telemetry is stamped with that instant rather than the emulator's tick."""

    def step(
        self, t: float, dt: float, exo_torque_nm: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]: ...


class SpringDamperPlant:
    """Default plant: each joint an inertia on a spring and a damper about a rest angle.

    J theta'' = tau - b theta' - k (theta - rest), semi-implicit Euler (stable at 1 kHz).
    """

    def __init__(
        self,
        rest_rad: np.ndarray,
        inertia: float = 0.3,
        damping: float = 3.0,
        stiffness: float = 30.0,
    ) -> None:
        self.rest = np.asarray(rest_rad, dtype=np.float64).copy()
        self.theta = self.rest.copy()
        self.omega = np.zeros_like(self.rest)
        self.J, self.b, self.k = inertia, damping, stiffness

    def step(self, t: float, dt: float, exo_torque_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acc = (exo_torque_nm - self.b * self.omega - self.k * (self.theta - self.rest)) / self.J
        self.omega += acc * dt
        self.theta += self.omega * dt
        return self.theta, self.omega
