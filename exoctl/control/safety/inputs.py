"""What the safety layer looks at and what it reports: states, events, inputs. (The fault
kinds are records in ``faults``.)"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from firmware_bridge.link_api import TelemetrySnapshot


class SafetyState(enum.IntEnum):
    NORMAL = 0
    DEGRADED = 1
    SAFE_STOP = 2
    FAULT_LATCHED = 3
    ESTOP = 4


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One detected fault. Times are the loop's clock (time.monotonic)."""

    kind: str
    detail: str
    t_detected: float
    t_zero: float | None
    """When the command sent first had zero torque on every joint (None: not yet)."""


class RecordingHealth:
    """When the session's recording was last known good on disk, for the recording watchdog.

    The recorder's writer thread publishes ``ok_at`` (time.monotonic() of its last commit with
    no write error since the one before; +inf while no session is being recorded); the control
    loop reads it once a tick. One float attribute replaced whole: no lock on either side."""

    __slots__ = ("ok_at",)

    def __init__(self) -> None:
        self.ok_at = math.inf


@dataclass(slots=True)
class SafetyInputs:
    """Everything the watchdogs look at; one instance, overwritten by the loop each tick.

    ``telemetry`` is the whole newest frame the device sent (angles, velocities, applied
    torques, currents, temperatures, fault bits, per-joint faults, enabled and e-stop flags),
    so that a watchdog on anything the device reports reads it there and needs no field of its
    own here and no line in the loop. ``angles`` and ``velocities`` are the loop's copies of the
    last frame's, kept when a tick has no frame (the layer's limits read them)."""

    now: float
    emg_age_s: float
    emg_flat_or_saturated: np.ndarray | None
    telemetry_age_s: float
    angles: np.ndarray
    velocities: np.ndarray
    firmware_fault_bits: int
    link_healthy: bool
    overrun_streak: int
    emg_source_refused: bool = False
    """The acquisition refused the EMG stream that answered after a dropout (another host,
    another uid, two at once): no sample of it is taken, and it is a fault."""
    actuators_enabled: bool = True
    """The device reports its actuators enabled (host link's view). Assistance requested
    while they are off means the device dropped out (reboot, its own fault, lost session)."""
    recording_age_s: float = -math.inf
    """How long the session's recording has gone without a clean commit to disk (-inf: no
    recording is required, e.g. between sessions or on the HIL bench)."""
    estimate_age_s: float = 0.0
    """How old the torque estimate the loop uses is: the tick's time minus the time it was
    computed (same clock). A hung or crashed estimator makes it grow."""
    telemetry: TelemetrySnapshot | None = None
    """The newest telemetry frame, as the link handed it over (None: none yet). A reference,
    not a copy: frames are immutable and never reused, so holding one allocates nothing."""

    @classmethod
    def healthy(cls, n_joints: int, now: float = 0.0) -> SafetyInputs:
        """A starting instance with fresh ages, zero angles and velocities, no faults."""
        return cls(
            now=now,
            emg_age_s=0.0,
            emg_flat_or_saturated=None,
            telemetry_age_s=0.0,
            angles=np.zeros(n_joints),
            velocities=np.zeros(n_joints),
            firmware_fault_bits=0,
            link_healthy=True,
            overrun_streak=0,
        )
