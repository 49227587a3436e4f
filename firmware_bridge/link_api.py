"""What a controller may use of a link to the actuator firmware, and the shapes that cross it.

``Link`` is the seam between exoctl's runtime and the wire: the control loop and the
controller type against it, never against a transport. Two classes provide it:

* :class:`firmware_bridge.link.HostLink`, the real serial link (pyserial, a reader and a
  supervisor thread, the handshake, heartbeats);
* :class:`firmware_bridge.fake_link.FakeLink`, an in-process stand-in (as python-can's virtual
  bus or pyserial's ``loop://``): it records every command, serves telemetry a test scripts,
  and can pull the cable, reset the device or raise a fault bit. Tests of the loop and the
  controller run against it, and so could an offline mode.

The members are exactly those the loop and the controller call; a link promises the safety
rules of docs/protocol.md whatever the caller does (torque goes out as zeros unless the device
acknowledged an Enable and the link is healthy; a link never re-enables by itself).

The hot path (once per control tick) uses only ``latest_telemetry``, ``healthy``, ``enabled``
and ``send_torque``; everything else is called from the controller's own thread, between
ticks, where blocking for an acknowledgement is allowed.
"""

from __future__ import annotations

import enum
import fnmatch
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.errors import LinkError
from firmware_bridge.protocol import DeviceInfo

__all__ = [
    "DeviceInfo",
    "Link",
    "LinkError",
    "LinkThread",
    "TelemetrySnapshot",
    "device_id_not_accepted",
    "limit_above_device",
]


def limit_above_device(
    info: DeviceInfo, names: Sequence[str], configured_nm: Sequence[float]
) -> str | None:
    """Why the host must not run on this device: a configured torque limit above the
    device's own (its DEVICE_INFO), or None.

    The device clamps to its own limit, but the host's safety layer, rate limits and range-of-
    motion fade are all computed against the configured limit: a configuration that promises
    more torque than the actuator gives is wrong about the hardware it drives. Compared in
    wire counts (0.01 N m), where the device's limit is exact.
    """
    for name, want, have in zip(names, configured_nm, info.torque_limit_nm, strict=True):
        if round(want / P.TORQUE_SCALE_NM) > round(have / P.TORQUE_SCALE_NM):
            return (
                f"device {info.device_id!r} joint {name}: the configured torque limit "
                f"{want:g} N m is above the device's own limit {have:g} N m; lower "
                f"torque_limit_nm for {name} in the configuration to at most {have:g}"
            )
    return None


def device_id_not_accepted(info: DeviceInfo, accepted: Sequence[str]) -> str | None:
    """Why the host must not run on this device: its id (which carries the firmware version,
    e.g. ``exofw-1.0.0``) matches none of the accepted patterns, or None.

    The host's checks of the device's behaviour (protocol, limits, timeouts) hold for the
    firmware it was tested with; an unknown or newer major firmware may differ in ways the
    handshake cannot see. Patterns are shell-style (``fnmatch``) and case-sensitive.
    """
    if any(fnmatch.fnmatchcase(info.device_id, p) for p in accepted):
        return None
    return (
        f"device {info.device_id!r} is not an accepted device: device.accepted_device_ids is "
        f"{list(accepted)}; add its id or a pattern matching it if this firmware is approved"
    )


@dataclass(frozen=True, slots=True)
class TelemetrySnapshot:
    """One telemetry frame in SI units; arrays are read-only and never reused."""

    host_time: float  # time.monotonic() at receipt (the link's clock)
    fw_time_s: float  # firmware clock (wraps every ~71.6 min)
    telemetry_seq: int
    last_seq_applied: int
    angles: np.ndarray  # rad
    velocities: np.ndarray  # rad/s
    torques: np.ndarray  # applied torque, N m
    currents: np.ndarray  # motor current, A
    temperatures: np.ndarray  # deg C
    fault_bits: int  # device fault bits (protocol.FAULT_*)
    joint_faults: np.ndarray  # uint16 per joint (protocol.JFAULT_*)
    enabled: bool
    estop: bool
    handshaken: bool

    @property
    def faults(self) -> tuple[str, ...]:
        return tuple(name for bit, name in P.FAULT_NAMES.items() if self.fault_bits & bit)


class LinkThread(enum.Enum):
    """The threads a link may run, by role; ``Link.threads()`` hands them out by reference so
    that whoever sets real-time priorities never has to match thread names."""

    READER = "reader"  # owns the port: reads, decodes, reopens a lost port
    SUPERVISOR = "supervisor"  # heartbeats and the repeated handshake after a reconnect


@runtime_checkable
class Link(Protocol):
    """The link to one actuator controller, as the control loop and the controller use it."""

    @property
    def healthy(self) -> bool:
        """Port open, handshake done, telemetry fresh, no protocol fault."""
        ...

    @property
    def enabled(self) -> bool:
        """Host-side view: the device acknowledged Enable and has not reported otherwise."""
        ...

    @property
    def last_error(self) -> str | None:
        """Why the link last failed or refused, for a person; None if it never did."""
        ...

    def open(self) -> None:
        """Connect (and start any threads); raises LinkError if the transport cannot open."""
        ...

    def close(self) -> None:
        """Disable (best effort), stop the threads, release the transport."""
        ...

    def handshake(self, timeout_s: float = 1.0) -> DeviceInfo:
        """Exchange Hello / DeviceInfo; raises LinkError on timeout or any mismatch."""
        ...

    def enable(self, timeout_s: float = 0.5, clear_faults: bool = True) -> bool:
        """A person's act: ask the device to accept torque; True once it acknowledged."""
        ...

    def disable(self, timeout_s: float = 0.5) -> bool:
        """Remove assistance; the host-side enable drops at once, before any answer."""
        ...

    def clear_faults(self, timeout_s: float = 0.5) -> bool:
        """Ask the device to clear its latched faults; True once it acknowledged."""
        ...

    def send_torque(self, torques_nm: np.ndarray) -> int:
        """Hot path: one torque command (N m, joint order), never blocking; its sequence number.

        Raises ValueError for a wrong shape or a non-finite value (never sent)."""
        ...

    def latest_telemetry(self) -> TelemetrySnapshot | None:
        """Hot path: the newest telemetry frame (an atomic reference read), None before any."""
        ...

    def stats(self) -> Mapping[str, Any]:
        """Counters for status displays and reports (JSON-able; HostLink's is a TypedDict)."""
        ...

    def threads(self) -> Mapping[LinkThread, threading.Thread]:
        """The link's running threads by role (empty for a link without threads)."""
        ...
