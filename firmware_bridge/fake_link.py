"""An in-process link to a pretend device: the ``Link`` that tests (and an offline mode) use.

Like python-can's virtual bus or pyserial's ``loop://``, nothing here is a mock: ``FakeLink`` is
a small device model behind the host-side rules that :class:`~firmware_bridge.link.HostLink`
enforces, with the serial port, the threads and the byte encoding taken out. The control loop
and the controller cannot tell it from the real link except by what it lets a test do.

As the device (the emulator's rules, docs/protocol.md):

* the handshake answers with a :class:`~firmware_bridge.protocol.DeviceInfo` built from the
  joints given; a device with other joints than the host configured is refused, as HostLink
  refuses it;
* Enable is refused while the e-stop is pressed or a latched fault remains (``enable`` clears
  latched faults first by default, as HostLink's does); Disable and ClearFaults are
  acknowledged at once;
* while enabled, the last command on the wire, clamped to the device's torque limits
  (FAULT_TORQUE_CLAMPED while it is), is the applied torque that telemetry reports;
* telemetry is served fresh at every read (a device streaming at its period), stamped with
  the link's clock, until :meth:`stall`; angles and velocities are what :meth:`set_joint_state`
  last set;
* a cable pulled for longer than the device's command timeout latches FAULT_HOST_TIMEOUT, as
  the firmware does when the host falls silent.

As the host side of the link:

* torque goes on the wire as zeros unless the device acknowledged Enable and the link is
  healthy (counted in ``commands_zeroed``), quantised to the protocol's 0.01 N m;
* any loss (cable, device reset, latched fault, e-stop) clears the host-side enable, and
  nothing re-enables by itself; a replug or a reset repeats only the handshake;
* ``send_torque`` refuses a wrong shape or a non-finite value with ValueError, as HostLink does.

Why one module of this length (~430 lines): it is one device model whose rules (handshake,
enable, limits, timeout, faults) share its state; split, each part would reach into the others,
and it is read beside the emulator it stands in for.

For a test: :attr:`frames` holds every command sent (what was asked, what went on the wire,
whether it was delivered), :attr:`requests` every acknowledged request in order, and
:meth:`pull_cable`, :meth:`plug_cable`, :meth:`reset_device`, :meth:`raise_fault`,
:meth:`end_fault`, :meth:`press_estop`, :meth:`release_estop`, :meth:`stall`, :meth:`resume`
and :attr:`answers` (False: the device stops acknowledging) inject what goes wrong on a bench.

Thread-safe: the control loop and an API thread (an e-stop) may call it at once; every call
holds one lock for a few microseconds. Not for the hot path of a real controller: it
allocates a telemetry frame per read and a record per command.

Why about 430 lines: one device model behind the ``Link`` interface; its methods are that
interface plus the fault-injection hooks above, each short, sharing one lock and one state.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.errors import LinkError
from firmware_bridge.link_api import (
    DeviceInfo,
    LinkThread,
    TelemetrySnapshot,
    device_id_not_accepted,
    limit_above_device,
)


@dataclass(frozen=True, slots=True)
class SentFrame:
    """One ``send_torque`` call as the link handled it."""

    seq: int
    t: float  # the link's clock when sent
    requested: np.ndarray  # what the caller asked, N m
    wire: np.ndarray  # what went on the wire, N m (zeros when gated; 0.01 N m steps)
    delivered: bool  # False when the cable was out: nothing reached the device


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)
    return a


class FakeLink:
    """In-process ``Link`` to a pretend actuator controller; see the module docstring."""

    def __init__(
        self,
        joint_names: Sequence[str],
        *,
        device_joint_names: Sequence[str] | None = None,
        torque_limits_nm: Sequence[float] | None = None,
        configured_limits_nm: Sequence[float] | None = None,
        accepted_device_ids: Sequence[str] | None = None,
        device_id: str = "fake-device",
        command_timeout_s: float = 0.1,
        telemetry_timeout_s: float = 0.1,
        telemetry_period_s: float = 0.002,
        clock: Callable[[], float] = time.monotonic,
        max_frames: int = 100_000,
    ) -> None:
        n = len(joint_names)
        if not 1 <= n <= P.MAX_JOINTS:
            raise ValueError(f"1..{P.MAX_JOINTS} joints, got {n}")
        dev_names = tuple(device_joint_names or joint_names)
        limits = [300.0] * len(dev_names) if torque_limits_nm is None else list(torque_limits_nm)
        self.joint_names = tuple(joint_names)
        self.n_joints = n
        self.configured_limits_nm = (
            None if configured_limits_nm is None else tuple(map(float, configured_limits_nm))
        )
        """The host's configured limits (as HostLink's torque_limits_nm): a pretend device
        whose own limit (``torque_limits_nm``) is lower is refused at the handshake."""
        self.accepted_device_ids = (
            None if accepted_device_ids is None else tuple(accepted_device_ids)
        )
        """The host's accepted device ids (as HostLink's): a pretend device whose
        ``device_id`` matches none is refused at the handshake."""
        self.telemetry_timeout_s = float(telemetry_timeout_s)
        self.command_timeout_s = float(command_timeout_s)
        self._clock = clock
        self._info_template = P.DeviceInfo(
            0,
            round(command_timeout_s * 1000),
            round(telemetry_period_s * 1e6),
            device_id,
            tuple(
                P.JointInfo(name, round(lim / P.TORQUE_SCALE_NM), -32767, 32767)
                for name, lim in zip(dev_names, limits, strict=True)
            ),
        )
        self.answers = True
        """False: the device stops acknowledging requests (enable/disable/clear time out)."""
        self.frames: deque[SentFrame] = deque(maxlen=max_frames)
        self.requests: list[tuple[float, str, bool]] = []
        """(time, "hello" | "enable" | "disable" | "clear_faults", acknowledged OK)."""
        self.last_error: str | None = None

        self._lock = threading.Lock()
        self._open = False
        self._connected = True  # the cable
        self._unplugged_at = math.nan
        self._handshaken = False
        self._enabled = False
        self._estop = False
        self._latched = 0
        self._status = 0
        self._streaming = True
        self._protocol_fault: str | None = None
        self._device: DeviceInfo | None = None
        self._angles = np.zeros(n)
        self._velocities = np.zeros(n)
        self._applied = np.zeros(n)
        self._limit_nm = np.array(self._info_template.torque_limit_nm)
        self._joint_faults = np.zeros(n, dtype=np.uint16)
        self._last_applied_seq = 0
        self._telemetry: TelemetrySnapshot | None = None
        self._tel_seq = 0
        self._seq = 0
        self._counts = {
            "commands_sent": 0,
            "commands_zeroed": 0,
            "tx_errors": 0,
            "telemetry_received": 0,
            "reconnects": 0,
            "device_session_losses": 0,
            "link_losses": 0,
        }
        self._device_faults: list[str] = []

    # ------------------------------------------------------------------ Link: lifecycle
    def open(self) -> None:
        with self._lock:
            if self._open:
                raise LinkError("link already open")
            self._open = True

    def close(self) -> None:
        with self._lock:
            if self._open and self._connected and self._handshaken:
                self._log("disable", True)
            self._open = False
            self._enabled = False
            self._handshaken = False

    def handshake(self, timeout_s: float = 1.0) -> DeviceInfo:
        with self._lock:
            if not self._open:
                raise LinkError("handshake before open()")
            if not self._connected or not self.answers:
                raise LinkError(f"handshake timed out after {timeout_s} s: no DeviceInfo")
            self._handshake_locked()
            if self._protocol_fault:
                raise LinkError(self._protocol_fault)
            assert self._device is not None
            return self._device

    def _handshake_locked(self) -> None:
        info = self._info_template
        self._log("hello", True)
        if info.joint_names != self.joint_names:
            self._protocol_fault = (
                f"device {info.device_id!r} joints {info.joint_names} differ from the "
                f"configured {self.joint_names} (order matters)"
            )
            return
        if self.configured_limits_nm is not None and (
            above := limit_above_device(info, self.joint_names, self.configured_limits_nm)
        ):
            self._protocol_fault = above
            return
        if self.accepted_device_ids is not None and (
            refused := device_id_not_accepted(info, self.accepted_device_ids)
        ):
            self._protocol_fault = refused
            return
        self._protocol_fault = None
        self._device = info
        self._handshaken = True
        self._enabled = False  # Hello always leaves the device disabled
        self._applied[:] = 0.0

    # ------------------------------------------------------------------ Link: requests
    def enable(self, timeout_s: float = 0.5, clear_faults: bool = True) -> bool:
        with self._lock:
            if not self._healthy_locked(self._clock()):
                self.last_error = "enable refused by host: link not healthy"
                return False
            if not self.answers:
                self.last_error = f"enable: no acknowledgement within {timeout_s} s"
                return False
            if clear_faults:
                self._clear_faults_locked()
            if self._estop or self._latched:
                names = [n for b, n in P.FAULT_NAMES.items() if (self._latched | self._status) & b]
                self.last_error = f"enable refused by device: faults {names}"
                self._enabled = False
                self._log("enable", False)
                return False
            self._enabled = True
            self._applied[:] = 0.0
            self._log("enable", True)
            return True

    def disable(self, timeout_s: float = 0.5) -> bool:
        with self._lock:
            self._enabled = False  # host side drops at once, answered or not
            self._applied[:] = 0.0
            if not (self._open and self._connected) or not self.answers:
                return False
            self._log("disable", True)
            return True

    def clear_faults(self, timeout_s: float = 0.5) -> bool:
        with self._lock:
            if not (self._open and self._connected and self._handshaken) or not self.answers:
                return False
            return self._clear_faults_locked()

    def _clear_faults_locked(self) -> bool:
        ok = not self._estop
        self._latched &= P.FAULT_ESTOP if self._estop else 0  # pressed: that one stays
        self._log("clear_faults", ok)
        return ok

    def _log(self, what: str, ok: bool) -> None:
        self.requests.append((self._clock(), what, ok))

    # ------------------------------------------------------------------ Link: hot path
    def send_torque(self, torques_nm: np.ndarray) -> int:
        t = np.array(torques_nm, dtype=np.float64)
        if t.shape != (self.n_joints,):
            raise ValueError(f"torques_nm must have shape ({self.n_joints},), got {t.shape}")
        if not np.isfinite(t).all():
            raise ValueError(f"torques_nm must be finite, got {t!r}")
        with self._lock:
            now = self._clock()
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
            if self._enabled and self._healthy_locked(now):
                counts = np.clip(np.rint(t / P.TORQUE_SCALE_NM), -32767, 32767)
                wire = counts * P.TORQUE_SCALE_NM
            else:
                wire = np.zeros(self.n_joints)
                self._counts["commands_zeroed"] += 1
            delivered = self._open and self._connected
            if delivered:
                self._counts["commands_sent"] += 1
                if self._enabled:  # the device clamps to its own limits, and says so
                    over = np.abs(wire) > self._limit_nm
                    np.clip(wire, -self._limit_nm, self._limit_nm, out=self._applied)
                    self._joint_faults[:] = np.where(over, P.JFAULT_TORQUE_CLAMPED, 0)
                    if over.any():
                        self._status |= P.FAULT_TORQUE_CLAMPED
                    else:
                        self._status &= ~P.FAULT_TORQUE_CLAMPED
                    self._last_applied_seq = seq
            else:
                self._counts["tx_errors"] += 1
            self.frames.append(SentFrame(seq, now, _readonly(t), _readonly(wire), delivered))
            return seq

    def latest_telemetry(self) -> TelemetrySnapshot | None:
        with self._lock:
            if self._open and self._connected and self._streaming:
                self._telemetry = self._frame(self._clock())
            return self._telemetry

    def _frame(self, now: float) -> TelemetrySnapshot:
        self._tel_seq = (self._tel_seq + 1) & 0xFFFFFFFF
        self._counts["telemetry_received"] += 1
        n = self.n_joints
        return TelemetrySnapshot(
            host_time=now,
            fw_time_s=now,
            telemetry_seq=self._tel_seq,
            last_seq_applied=self._last_applied_seq,
            angles=_readonly(self._angles.copy()),
            velocities=_readonly(self._velocities.copy()),
            torques=_readonly(self._applied.copy()),
            currents=_readonly(np.zeros(n)),
            temperatures=_readonly(np.full(n, 30.0)),
            fault_bits=self._latched | self._status,
            joint_faults=_readonly(self._joint_faults.copy()),
            enabled=self._enabled,
            estop=self._estop,
            handshaken=self._handshaken,
        )

    # ------------------------------------------------------------------ Link: observation
    @property
    def healthy(self) -> bool:
        with self._lock:
            return self._healthy_locked(self._clock())

    def _healthy_locked(self, now: float) -> bool:
        if not (self._open and self._connected and self._handshaken) or self._protocol_fault:
            return False
        if self._streaming:
            return True
        tel = self._telemetry
        return tel is not None and now - tel.host_time < self.telemetry_timeout_s

    @property
    def enabled(self) -> bool:
        return self._enabled

    @property
    def device_info(self) -> DeviceInfo | None:
        return self._device

    def threads(self) -> dict[LinkThread, threading.Thread]:
        return {}  # everything happens in the caller's thread

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {
                "link": "fake",
                **self._counts,
                "enabled": self._enabled,
                "healthy": self._healthy_locked(self._clock()),
                "device_faults": list(self._device_faults),
                "protocol_fault": self._protocol_fault,
            }

    # ------------------------------------------------------------------ scripting
    def set_joint_state(
        self, angles: Sequence[float] | None = None, velocities: Sequence[float] | None = None
    ) -> None:
        """What the following telemetry frames report (rad, rad/s; NaN allowed)."""
        with self._lock:
            if angles is not None:
                self._angles[:] = angles
            if velocities is not None:
                self._velocities[:] = velocities

    def stall(self) -> None:
        """Telemetry stops arriving (the last frame ages); the port stays open."""
        with self._lock:
            self._streaming = False

    def resume(self) -> None:
        with self._lock:
            self._streaming = True

    def pull_cable(self) -> None:
        """The port goes away: assistance off at once, no telemetry, nothing delivered."""
        with self._lock:
            if not self._connected:
                return
            self._connected = False
            self._unplugged_at = self._clock()
            self._enabled = False
            self._handshaken = False
            self._counts["link_losses"] += 1
            self.last_error = "link lost: cable pulled"

    def plug_cable(self) -> None:
        """The port is back: the handshake is repeated (never the enable). A pull longer
        than the device's command timeout left it with FAULT_HOST_TIMEOUT latched."""
        with self._lock:
            if self._connected:
                return
            self._connected = True
            self._counts["reconnects"] += 1
            if self._clock() - self._unplugged_at > self.command_timeout_s:
                self._latch(P.FAULT_HOST_TIMEOUT)
            if self._open and self._device is not None:
                self._handshake_locked()

    def reset_device(self, rehandshake: bool = True) -> None:
        """The device reboots: it leaves the session (disabled, latched faults gone). The link
        repeats the handshake at once unless ``rehandshake`` is False (then it stays
        unhealthy until ``handshake()``)."""
        with self._lock:
            self._enabled = False
            self._handshaken = False
            self._latched = 0
            self._status = 0
            self._applied[:] = 0.0
            self._counts["device_session_losses"] += 1
            self.last_error = "device left the session (faults 0x0000)"
            if rehandshake and self._open and self._connected:
                self._handshake_locked()

    def raise_fault(self, bits: int) -> None:
        """The device reports fault bits: latched ones (protocol.LATCHED_FAULTS) disable it
        until cleared; status bits show until :meth:`end_fault`."""
        with self._lock:
            if bits & P.LATCHED_FAULTS:
                self._latch(bits & P.LATCHED_FAULTS)
            self._status |= bits & ~P.LATCHED_FAULTS
            self._device_faults += [n for b, n in P.FAULT_NAMES.items() if bits & b]

    def end_fault(self, bits: int) -> None:
        """A status condition is over (latched bits need ``clear_faults``)."""
        with self._lock:
            self._status &= ~bits

    def press_estop(self) -> None:
        """The device's own e-stop: latched FAULT_ESTOP, actuators off, Enable refused."""
        with self._lock:
            self._estop = True
            self._latch(P.FAULT_ESTOP)

    def release_estop(self) -> None:
        """Released; FAULT_ESTOP stays latched until ``clear_faults``."""
        with self._lock:
            self._estop = False

    def _latch(self, bits: int) -> None:
        self._latched |= bits
        self._enabled = False
        self._applied[:] = 0.0

    # ------------------------------------------------------------------ for tests
    def wire_torques(self) -> np.ndarray:
        """Every torque that went on the wire and was delivered, (n_frames, n_joints), N m."""
        with self._lock:
            rows = [f.wire for f in self.frames if f.delivered]
        return np.array(rows).reshape(-1, self.n_joints)
