"""Host side of the serial link to the actuator firmware (protocol in docs/protocol.md).

Threads: a *reader* that owns the port (reads, decodes, resynchronises after garbage, notices a
lost port and reopens it), and a *supervisor* that sends a heartbeat whenever no frame went out
for a heartbeat period and repeats the handshake after a reconnect. The control thread only
calls :meth:`HostLink.send_torque` (preallocated frame, one non-blocking write) and
:meth:`HostLink.latest_telemetry` (an atomic reference read).

Safety rules the link enforces on its own, whatever the caller does:
- torque is sent as zeros unless the device acknowledged an Enable in this session and the link
  is healthy; a lost port, stale telemetry or a device that reports itself disabled clears the
  host-side enable, so after an unplug/replug assistance stays off until ``enable()`` is called
  again (by a person, through the CLI or the HIL runner);
- the link never re-enables by itself: reconnection repeats only the handshake.

Why this module is longer than most: it is HostLink's I/O half (the supervision half is
``link_supervision.py``); the port, the reader thread and the torque send share the port lock
and the enable state, and keeping them together keeps the rules above in one place.
"""

from __future__ import annotations

import contextlib
import math
import os
import secrets
import threading
import time
from collections import deque
from collections.abc import Sequence

import numpy as np
import serial

from firmware_bridge import protocol as P
from firmware_bridge.errors import LinkError
from firmware_bridge.link_api import (
    DeviceInfo,
    LinkThread,
    TelemetrySnapshot,
    device_id_not_accepted,
    limit_above_device,
)
from firmware_bridge.link_stats import LinkStats
from firmware_bridge.rtt import RttStats
from firmware_bridge.supervision import LinkSupervision

__all__ = ["DeviceInfo", "HostLink", "LinkError", "TelemetrySnapshot"]

_TELEMETRY_SCALES = np.array(
    (
        P.ANGLE_SCALE_RAD,
        P.VELOCITY_SCALE_RAD_S,
        P.TORQUE_SCALE_NM,
        P.CURRENT_SCALE_A,
        P.TEMPERATURE_SCALE_C,
    )
)[:, None]
"""Counts to SI units, one row per telemetry column (angle, velocity, torque, current,
temperature)."""
_TELEMETRY_SCALES.setflags(write=False)


IDLE_READ_S = 0.01
"""While the device is handshaken but not enabled (no session: nothing is commanded) the
reader takes what arrived every this often instead of waking for every telemetry frame (500
a second at the emulator's 2 ms period): the telemetry it keeps is at most this much older,
far inside ``telemetry_timeout_s``, and an acknowledgement waits at most this long. With the
device enabled, or before a handshake, every frame is read as it arrives."""


class HostLink(LinkSupervision):
    """Serial link to one actuator controller. See module docstring for the threading model;
    the handshake, requests and supervisor thread are in ``firmware_bridge.supervision``."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        n_joints: int,
        heartbeat_period_s: float = 0.02,
        telemetry_timeout_s: float = 0.1,
        low_latency: bool = True,
        joint_names: Sequence[str] | None = None,
        torque_limits_nm: Sequence[float] | None = None,
        accepted_device_ids: Sequence[str] | None = None,
    ) -> None:
        if not 1 <= n_joints <= P.MAX_JOINTS:
            raise ValueError(f"n_joints must be 1..{P.MAX_JOINTS}, got {n_joints}")
        if heartbeat_period_s <= 0 or telemetry_timeout_s <= 0:
            raise ValueError("heartbeat_period_s and telemetry_timeout_s must be > 0")
        self.port = port
        self.baudrate = int(baudrate)
        self.n_joints = n_joints
        self.heartbeat_period_s = float(heartbeat_period_s)
        self.telemetry_timeout_s = float(telemetry_timeout_s)
        self.low_latency = low_latency
        if joint_names is not None and len(joint_names) != n_joints:
            raise ValueError(f"joint_names has {len(joint_names)} names for {n_joints} joints")
        self.joint_names = tuple(joint_names) if joint_names is not None else None
        if torque_limits_nm is not None and len(torque_limits_nm) != n_joints:
            raise ValueError(f"torque_limits_nm has {len(torque_limits_nm)} values for {n_joints}")
        self.torque_limits_nm = (
            tuple(float(x) for x in torque_limits_nm) if torque_limits_nm is not None else None
        )
        """The configured limits: a device whose own limit is lower is refused (handshake)."""
        if accepted_device_ids is not None and not accepted_device_ids:
            raise ValueError("accepted_device_ids is empty (None skips the device id check)")
        self.accepted_device_ids = (
            tuple(accepted_device_ids) if accepted_device_ids is not None else None
        )
        """Patterns of the device ids the handshake accepts (None: no check, tools and tests)."""
        self.low_latency_active = False
        self.last_error: str | None = None

        self._ser: serial.Serial | None = None
        self._fd = -1
        self._running = False
        self._reader: threading.Thread | None = None
        self._supervisor: threading.Thread | None = None
        self._wlock = threading.Lock()
        self._wake = threading.Event()
        self._decoder = P.StreamDecoder()

        self._device: DeviceInfo | None = None
        self._handshaken = False
        self._enabled = False  # host-side: device acked Enable in this session
        self._protocol_fault: str | None = None
        self._hello_nonce: int | None = None
        self._hello_event = threading.Event()
        self._last_hello_tx = 0.0
        self._req_id = 0
        self._acks: dict[int, P.Ack] = {}
        self._ack_cv = threading.Condition()
        self._telemetry: TelemetrySnapshot | None = None
        self._last_tel_seq: int | None = None
        self._last_applied_seen = 0
        self._last_tx = 0.0
        self.loss_times: deque[float] = deque(maxlen=64)  # monotonic time of each detected loss
        self.device_faults: deque[P.FaultReport] = deque(maxlen=256)
        self.estop_events: deque[P.EstopState] = deque(maxlen=64)

        # The send path: one preallocated frame encoder, per-joint counts as Python ints.
        self._encoder = P.TorqueFrameEncoder(n_joints)
        self._counts = [0] * n_joints
        self._order = list(range(n_joints))
        self._seq = 0
        self._rtt = RttStats()

        # counters
        self._commands_sent = 0
        self._commands_zeroed = 0
        self._tx_errors = 0
        self._tx_would_block = 0
        self._tx_partial = False
        self._heartbeats_sent = 0
        self._seq_gaps = 0
        self._telemetry_received = 0
        self._reconnects = 0
        self._device_resets = 0

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> None:
        """Open the port (pyserial) and start the reader and supervisor threads."""
        if self._running:
            raise LinkError("link already open")
        self._open_port()  # the first open must succeed: a wrong path is a clear error
        self._running = True
        self._reader = threading.Thread(target=self._read_loop, name="hostlink-reader", daemon=True)
        self._supervisor = threading.Thread(
            target=self._supervise_loop, name="hostlink-supervisor", daemon=True
        )
        self._reader.start()
        self._supervisor.start()

    def close(self) -> None:
        """Disable (best effort), stop the threads and close the port."""
        if self._running and self._ser is not None and self._handshaken:
            with contextlib.suppress(Exception):  # closing anyway
                self._send(P.Disable(self._next_req_id()))
        self._running = False
        self._wake.set()
        for t in (self._reader, self._supervisor):
            if t is not None and t is not threading.current_thread():
                t.join(timeout=1.0)
        with self._wlock:  # never close the fd under a concurrent send_torque
            self._close_port()
        self._enabled = False
        self._handshaken = False

    def __enter__(self) -> HostLink:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open_port(self) -> None:
        try:
            ser = serial.Serial(
                self.port, self.baudrate, timeout=0.05, write_timeout=0, exclusive=True
            )
        except (serial.SerialException, OSError, ValueError) as e:
            raise LinkError(f"cannot open serial port {self.port!r}: {e}") from e
        self.low_latency_active = False
        if self.low_latency:
            # FTDI-style adapters hold bytes for 16 ms by default; ASYNC_LOW_LATENCY cuts that
            # to ~1 ms. A pty (the emulator) has no such ioctl: that is not an error.
            try:
                ser.set_low_latency_mode(True)
                self.low_latency_active = True
            except (ValueError, OSError, AttributeError, NotImplementedError):
                self.low_latency_active = False
        ser.reset_input_buffer()
        self._decoder.discard_partial()
        self._tx_partial = False
        self._ser = ser
        self._fd = ser.fileno()

    def _close_port(self) -> None:
        ser, self._ser, self._fd = self._ser, None, -1
        if ser is not None:
            with contextlib.suppress(Exception):  # port already gone
                ser.close()

    def _lost(self, why: str) -> None:
        """The port failed: assistance off at once, then the reader reopens it."""
        if self._ser is None:
            return
        self._enabled = False
        self._handshaken = False
        self.loss_times.append(time.monotonic())
        self.last_error = f"link lost: {why}"
        with self._wlock:
            self._close_port()

    # ------------------------------------------------------------------ handshake replies
    def _on_device_info(self, m: P.DeviceInfo) -> None:
        if m.nonce != self._hello_nonce:
            return  # a reply to an older Hello
        info = m  # one DeviceInfo: the message itself gives its fields in SI units
        if info.n_joints != self.n_joints:
            self._protocol_fault = (
                f"device {info.device_id!r} has {info.n_joints} joints {info.joint_names}, "
                f"host configured {self.n_joints}"
            )
        elif self.joint_names is not None and info.joint_names != self.joint_names:
            self._protocol_fault = (
                f"device {info.device_id!r} joints {info.joint_names} differ from the "
                f"configured {self.joint_names} (order matters)"
            )
        elif self.torque_limits_nm is not None and (
            above := limit_above_device(info, info.joint_names, self.torque_limits_nm)
        ):
            self._protocol_fault = above
        elif self.accepted_device_ids is not None and (
            refused := device_id_not_accepted(info, self.accepted_device_ids)
        ):
            self._protocol_fault = refused
        elif self._device is not None and (
            info.device_id != self._device.device_id or info.joint_names != self._device.joint_names
        ):
            self._protocol_fault = (
                f"a different device answered after reconnect: {info.device_id!r} "
                f"{info.joint_names}, expected {self._device.device_id!r} {self._device.joint_names}"
            )
        else:
            self._protocol_fault = None
            self._device = info
            self._handshaken = True
            self._enabled = False  # Hello always leaves the device disabled
            self._last_applied_seen = 0
        self._hello_nonce = None
        self._hello_event.set()

    # ------------------------------------------------------------------ hot path
    def send_torque(self, torques_nm: np.ndarray) -> int:
        """Send one torque command (N m per joint); returns its sequence number.

        Non-blocking: if the OS buffer is full the frame is dropped and counted (the firmware's
        own command timeout covers the gap). Sends zeros unless enabled and healthy. Safe to
        call from several threads (e.g. an e-stop request next to the control loop): the frame
        is composed and written under the write lock (a few microseconds, uncontended). The
        counts are computed on Python floats and packed by ``protocol.TorqueFrameEncoder`` (a
        handful of joints: numpy's per-call overhead was most of this call's cost).
        """
        t = torques_nm if isinstance(torques_nm, np.ndarray) else np.asarray(torques_nm, float)
        if t.shape != (self.n_joints,):
            raise ValueError(f"torques_nm must have shape ({self.n_joints},), got {t.shape}")
        scale = 1.0 / P.TORQUE_SCALE_NM
        counts = self._counts
        with self._wlock:
            total = 0.0
            for i in self._order:
                c = t.item(i) * scale
                total += c
                counts[i] = c
            if not math.isfinite(total):
                raise ValueError(f"torques_nm must be finite, got {t!r}")
            now = time.monotonic()
            if self._enabled and self._ser is not None and self._fresh(now):
                for i in self._order:  # round half to even (as np.rint), then the int16 range
                    c = round(counts[i])
                    counts[i] = 32767 if c > 32767 else (-32767 if c < -32767 else c)
            else:
                for i in self._order:
                    counts[i] = 0
                self._commands_zeroed += 1
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
            frame = self._encoder.encode(seq, int(now * 1e6) & 0xFFFFFFFF, counts)
            self._rtt.note_sent(seq, now)
            err = self._write_locked(frame)
            if err is None:
                self._commands_sent += 1
        if err:
            self._lost(err)
        return seq

    def _fresh(self, now: float) -> bool:
        tel = self._telemetry
        return tel is not None and now - tel.host_time < self.telemetry_timeout_s

    def _write_locked(self, data: memoryview | bytes) -> str | None:
        """One non-blocking write, caller holds ``_wlock``. None when the frame went out
        whole; "" when it was dropped (counted); else why the port failed."""
        fd = self._fd
        if fd < 0:
            self._tx_errors += 1
            return ""
        try:
            if self._tx_partial:
                # an earlier frame went out cut short: terminate it first, or this frame
                # would be glued to it and lost at the receiver
                os.write(fd, b"\x00")
                self._tx_partial = False
            written = os.write(fd, data)
        except BlockingIOError:
            self._tx_would_block += 1
            return ""
        except OSError as e:
            self._tx_errors += 1
            return f"write failed: {e}"
        self._last_tx = time.monotonic()
        if written != len(data):
            # Partial write: the next write starts with a delimiter so the peer drops the stub.
            self._tx_would_block += 1
            self._tx_partial = True
            return ""
        return None

    def _write(self, data: memoryview | bytes) -> bool:
        with self._wlock:
            err = self._write_locked(data)
        if err:
            self._lost(err)
        return err is None

    def _send(self, msg: P.Message) -> bool:
        return self._write(P.encode(msg))

    # ------------------------------------------------------------------ reader
    def _read_loop(self) -> None:
        while self._running:
            ser = self._ser
            if ser is None:
                try:
                    self._open_port()
                except LinkError:
                    time.sleep(0.02)
                    continue
                if not self._running:  # close() raced with the reopen
                    with self._wlock:
                        self._close_port()
                    break
                self._reconnects += 1
                if self._device is not None:
                    self._hello_nonce = secrets.randbits(32)
                    self._send_hello()
                continue
            try:
                data = ser.read(ser.in_waiting or 1)
            except (serial.SerialException, OSError, TypeError, AttributeError) as e:
                self._lost(f"read failed: {e}")
                continue
            if data:
                for m in self._decoder.feed(data):
                    self._dispatch(m)
            if self._handshaken and not self._enabled and self._running:
                time.sleep(IDLE_READ_S)

    def _dispatch(self, m: P.Message) -> None:
        if isinstance(m, P.Telemetry):
            self._on_telemetry(m)
        elif isinstance(m, P.Ack):
            with self._ack_cv:
                self._acks[m.request_id] = m
                if len(self._acks) > 64:
                    self._acks.pop(next(iter(self._acks)))
                self._ack_cv.notify_all()
        elif isinstance(m, P.DeviceInfo):
            self._on_device_info(m)
        elif isinstance(m, P.FaultReport):
            self.device_faults.append(m)
            if m.latched:
                self._enabled = False
        elif isinstance(m, P.EstopState):
            self.estop_events.append(m)
            if m.pressed:
                self._enabled = False
        # host->device messages echoed back (loopback wiring) are ignored

    def _on_telemetry(self, m: P.Telemetry) -> None:
        now = time.monotonic()
        if len(m.angle) != self.n_joints:
            self._protocol_fault = f"telemetry has {len(m.angle)} joints, expected {self.n_joints}"
            return
        if self._last_tel_seq is not None:
            gap = (m.telemetry_seq - self._last_tel_seq - 1) & 0xFFFFFFFF
            if 0 < gap < 0x80000000:
                self._seq_gaps += gap
        self._last_tel_seq = m.telemetry_seq
        self._telemetry_received += 1
        if self._handshaken and not m.flags & P.FLAG_HANDSHAKEN:
            # The device forgot the session (reboot, or it timed out on us): assistance off,
            # the supervisor repeats the handshake; enabling again is a person's act.
            self._handshaken = False
            self._enabled = False
            self._device_resets += 1
            self.last_error = f"device left the session ({P.fault_text(m.fault_bits)})"
            if self._hello_nonce is None:
                self._hello_nonce = secrets.randbits(32)
        enabled = bool(m.flags & P.FLAG_ENABLED)
        if not enabled and self._enabled:
            # The device dropped out of enabled (timeout, fault, e-stop, reboot): stay off.
            self._enabled = False
            self.last_error = f"device reports disabled ({P.fault_text(m.fault_bits)})"
        last = m.last_seq_applied
        if last and last != self._last_applied_seen:
            self._last_applied_seen = last
            self._rtt.on_applied(last, now)
        arr = np.array((m.angle, m.velocity, m.torque, m.current, m.temperature), dtype=np.float64)
        arr *= _TELEMETRY_SCALES  # made once: this runs for every frame, holding the GIL
        arr.setflags(write=False)
        jf = np.array(m.joint_faults, dtype=np.uint16)
        jf.setflags(write=False)
        self._telemetry = TelemetrySnapshot(
            host_time=now,
            fw_time_s=m.fw_time_us / 1e6,
            telemetry_seq=m.telemetry_seq,
            last_seq_applied=last,
            angles=arr[0],
            velocities=arr[1],
            torques=arr[2],
            currents=arr[3],
            temperatures=arr[4],
            fault_bits=m.fault_bits,
            joint_faults=jf,
            enabled=enabled,
            estop=bool(m.flags & P.FLAG_ESTOP),
            handshaken=bool(m.flags & P.FLAG_HANDSHAKEN),
        )

    # ------------------------------------------------------------------ observation
    def latest_telemetry(self) -> TelemetrySnapshot | None:
        return self._telemetry

    def telemetry_age_s(self) -> float:
        tel = self._telemetry
        return math.inf if tel is None else time.monotonic() - tel.host_time

    @property
    def enabled(self) -> bool:
        """Host-side view: the device acknowledged Enable and has not reported otherwise."""
        return self._enabled

    @property
    def device_info(self) -> DeviceInfo | None:
        return self._device

    def threads(self) -> dict[LinkThread, threading.Thread]:
        """The reader and supervisor threads by role, while open (see ``Link.threads``)."""
        roles = ((LinkThread.READER, self._reader), (LinkThread.SUPERVISOR, self._supervisor))
        return {role: t for role, t in roles if t is not None and t.is_alive()}

    @property
    def healthy(self) -> bool:
        """Port open, handshake done, telemetry fresh, no protocol fault."""
        return (
            self._ser is not None
            and self._handshaken
            and self._protocol_fault is None
            and self._fresh(time.monotonic())
        )

    def rtt_histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges in ms, counts); counts[0] is below the first edge, counts[-1] above."""
        return self._rtt.histogram()

    def rtt_samples_ms(self) -> np.ndarray:
        """The newest (up to 4096) exact round-trip times in ms, oldest first."""
        return self._rtt.samples_ms()

    def stats(self) -> LinkStats:
        d = self._decoder
        tel = self._telemetry
        rtt = self._rtt.summary()
        return {
            "frames_good": d.good,
            "crc_errors": d.errors["crc"],
            "framing_errors": d.errors["framing"],
            "length_errors": d.errors["length"],
            "version_errors": d.errors["version"],
            "unknown_type_errors": d.errors["type"],
            "direction_errors": d.errors["direction"],
            "value_errors": d.errors["value"],
            "seq_gaps": self._seq_gaps,
            "telemetry_received": self._telemetry_received,
            "commands_sent": self._commands_sent,
            "commands_zeroed": self._commands_zeroed,
            "heartbeats_sent": self._heartbeats_sent,
            "tx_errors": self._tx_errors,
            "tx_would_block": self._tx_would_block,
            "rtt_ms": rtt,
            # the same three figures flat, for reports that want scalar keys
            "rtt_ms_p50": rtt["p50"],
            "rtt_ms_p99": rtt["p99"],
            "rtt_ms_max": rtt["max"],
            "reconnects": self._reconnects,
            "device_session_losses": self._device_resets,
            "link_losses": len(self.loss_times),
            "low_latency": self.low_latency_active,
            "enabled": self._enabled,
            "healthy": self.healthy,
            # history: every fault the device reported (FaultReport), oldest first ...
            "device_faults": [
                P.FAULT_NAMES.get(1 << f.code, str(f.code)) for f in self.device_faults
            ],
            # ... and now: the bits in the newest telemetry (None before any telemetry)
            "device_faults_current": None if tel is None else P.fault_names(tel.fault_bits),
            "protocol_fault": self._protocol_fault,
        }
