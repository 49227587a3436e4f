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
from firmware_bridge.link_api import DeviceInfo, LinkThread, TelemetrySnapshot
from firmware_bridge.link_stats import LinkStats

# RTT histogram: log-spaced bins from 10 us to 10 s (about 4 % wide).
_RTT_EDGES_MS = np.logspace(-2, 4, 181)
_SEQ_SLOTS = 4096  # send times remembered per sequence number (a power of two)


class HostLink:
    """Serial link to one actuator controller. See module docstring for the threading model."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        n_joints: int,
        heartbeat_period_s: float = 0.02,
        telemetry_timeout_s: float = 0.1,
        low_latency: bool = True,
        joint_names: Sequence[str] | None = None,
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

        # Preallocated torque frame: body = header(4) + seq u32 + time u32 + n u8 + n*int16 + crc.
        self._plen = 9 + 2 * n_joints
        self._body = bytearray(P.HEADER_SIZE + self._plen + P.CRC_SIZE)
        P.HEADER.pack_into(self._body, 0, P.PROTOCOL_VERSION, P.T_TORQUE_CMD, self._plen)
        self._body[12] = n_joints
        self._body_mv = memoryview(self._body)
        self._tq_counts = np.frombuffer(self._body, dtype="<i2", count=n_joints, offset=13)
        self._crc_off = P.HEADER_SIZE + self._plen
        self._wire = bytearray(len(self._body) + 2)  # COBS adds 1 byte (<254), plus 0x00
        self._wire_mv = memoryview(self._wire)
        self._crc_view = self._body_mv[: self._crc_off]
        # body < 254 bytes: COBS adds exactly one code byte, then the delimiter
        self._wire_view = self._wire_mv[: len(self._body) + 2]
        self._scaled = np.zeros(n_joints, dtype=np.float64)
        self._seq = 0
        self._sent_t = np.zeros(_SEQ_SLOTS, dtype=np.float64)
        self._sent_seq = np.zeros(_SEQ_SLOTS, dtype=np.int64)

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
        self._rtt_counts = np.zeros(len(_RTT_EDGES_MS) + 1, dtype=np.int64)
        self._rtt_max_ms = 0.0
        self._rtt_n = 0
        self._rtt_ring = np.zeros(_SEQ_SLOTS, dtype=np.float64)  # the newest exact samples

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

    # ------------------------------------------------------------------ handshake and modes
    def handshake(self, timeout_s: float = 1.0) -> DeviceInfo:
        """Exchange Hello / DeviceInfo; raises LinkError on timeout or any mismatch."""
        if not self._running:
            raise LinkError("handshake before open()")
        self._hello_event.clear()
        self._decoder.last_bad_version = None
        deadline = time.monotonic() + timeout_s
        self._hello_nonce = secrets.randbits(32)
        while True:
            self._send_hello()
            # repeat well within the device's command timeout: a device that got the Hello but
            # whose DeviceInfo was lost must not see host silence
            wait = min(self.heartbeat_period_s, max(0.0, deadline - time.monotonic()))
            if self._hello_event.wait(wait):
                break
            if self._decoder.last_bad_version is not None:
                raise LinkError(
                    f"protocol version mismatch: host speaks {P.PROTOCOL_VERSION}, "
                    f"device {self.port} speaks {self._decoder.last_bad_version}"
                )
            if time.monotonic() >= deadline:
                raise LinkError(
                    f"handshake timed out after {timeout_s} s on {self.port}: no DeviceInfo "
                    f"(frames good {self._decoder.good}, errors {self._decoder.errors})"
                )
        if self._protocol_fault:
            raise LinkError(self._protocol_fault)
        assert self._device is not None
        return self._device

    def _send_hello(self) -> None:
        if self._hello_nonce is None:
            self._hello_nonce = secrets.randbits(32)
        self._last_hello_tx = time.monotonic()
        self._send(P.Hello(self._hello_nonce))

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

    def _next_req_id(self) -> int:
        self._req_id = (self._req_id + 1) & 0xFFFF
        return self._req_id

    def _request(self, cls: type, timeout_s: float) -> P.Ack | None:
        """Send an acknowledged request, repeating it (new request id) every 50 ms until an
        Ack arrives or the timeout expires; the three requests are idempotent."""
        deadline = time.monotonic() + timeout_s
        while True:
            rid = self._next_req_id()
            with self._ack_cv:
                self._acks.pop(rid, None)
            self._send(cls(rid))
            attempt_end = min(deadline, time.monotonic() + 0.05)
            with self._ack_cv:
                while rid not in self._acks:
                    left = attempt_end - time.monotonic()
                    if left <= 0:
                        break
                    self._ack_cv.wait(left)
                if rid in self._acks:
                    return self._acks.pop(rid)
            if time.monotonic() >= deadline:
                return None

    def enable(self, timeout_s: float = 0.5, clear_faults: bool = True) -> bool:
        """Ask the device to accept torque; True once it acknowledged.

        This is the act of a person (operator button, CLI, HIL runner). With ``clear_faults``
        it first clears latched faults whose cause is gone (e.g. a host timeout after a replug).
        False (reason in ``last_error``) when refused, timed out, or the link is not healthy.
        """
        deadline = time.monotonic() + timeout_s
        while not self.healthy:  # e.g. right after the handshake, before the first telemetry
            if time.monotonic() >= deadline:
                self.last_error = "enable refused by host: link not healthy"
                return False
            time.sleep(0.001)
        if clear_faults:
            ack = self._request(P.ClearFaults, max(0.0, deadline - time.monotonic()))
            if ack is None:
                self.last_error = "enable: no acknowledgement of ClearFaults"
                return False
        ack = self._request(P.Enable, max(0.0, deadline - time.monotonic()))
        if ack is None:
            self.last_error = f"enable: no acknowledgement within {timeout_s} s"
            return False
        if ack.result != P.ACK_OK:
            names = [n for b, n in P.FAULT_NAMES.items() if ack.fault_bits & b]
            self.last_error = f"enable refused by device: result {ack.result}, faults {names}"
            self._enabled = False
            return False
        self._enabled = True
        return True

    def disable(self, timeout_s: float = 0.5) -> bool:
        """Remove assistance; the host-side enable drops at once, before any acknowledgement."""
        self._enabled = False
        if self._ser is None:
            return False
        ack = self._request(P.Disable, timeout_s)
        return ack is not None and ack.result == P.ACK_OK

    def clear_faults(self, timeout_s: float = 0.5) -> bool:
        ack = self._request(P.ClearFaults, timeout_s)
        return ack is not None and ack.result == P.ACK_OK

    # ------------------------------------------------------------------ hot path
    def send_torque(self, torques_nm: np.ndarray) -> int:
        """Send one torque command (N m per joint); returns its sequence number.

        Non-blocking: if the OS buffer is full the frame is dropped and counted (the firmware's
        own command timeout covers the gap). Sends zeros unless enabled and healthy. Safe to
        call from several threads (e.g. an e-stop request next to the control loop): the frame
        is composed and written under the write lock (a few microseconds, uncontended).
        """
        t = torques_nm if isinstance(torques_nm, np.ndarray) else np.asarray(torques_nm, float)
        if t.shape != (self.n_joints,):
            raise ValueError(f"torques_nm must have shape ({self.n_joints},), got {t.shape}")
        with self._wlock:
            sc = self._scaled
            np.multiply(t, 1.0 / P.TORQUE_SCALE_NM, out=sc)
            if not math.isfinite(sc.sum()):
                raise ValueError(f"torques_nm must be finite, got {t!r}")
            now = time.monotonic()
            if self._enabled and self._ser is not None and self._fresh(now):
                np.rint(sc, out=sc)
                np.minimum(sc, 32767.0, out=sc)
                np.maximum(sc, -32767.0, out=sc)
                self._tq_counts[:] = sc
            else:
                self._tq_counts[:] = 0
                self._commands_zeroed += 1
            self._seq = seq = (self._seq + 1) & 0xFFFFFFFF or 1
            body = self._body
            P.struct.pack_into("<II", body, 4, seq, int(now * 1e6) & 0xFFFFFFFF)
            P.CRC.pack_into(body, self._crc_off, P.crc16(self._crc_view))
            self._cobs_into()
            slot = seq & (_SEQ_SLOTS - 1)
            self._sent_seq[slot] = seq
            self._sent_t[slot] = now
            err = self._write_locked(self._wire_view)
            if err is None:
                self._commands_sent += 1
        if err:
            self._lost(err)
        return seq

    def _cobs_into(self) -> int:
        """COBS-encode the torque body into the preallocated wire buffer; returns its length."""
        body = self._body
        out = self._wire
        n = len(body)
        code_pos = 0
        o = 1
        for i in range(n):
            b = body[i]
            if b == 0:
                out[code_pos] = o - code_pos
                code_pos = o
            else:
                out[o] = b
            o += 1
        out[code_pos] = o - code_pos
        out[o] = 0
        return o + 1

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
            self.last_error = f"device left the session (faults 0x{m.fault_bits:04x})"
            if self._hello_nonce is None:
                self._hello_nonce = secrets.randbits(32)
        enabled = bool(m.flags & P.FLAG_ENABLED)
        if not enabled and self._enabled:
            # The device dropped out of enabled (timeout, fault, e-stop, reboot): stay off.
            self._enabled = False
            self.last_error = f"device reports disabled, faults 0x{m.fault_bits:04x}"
        last = m.last_seq_applied
        if last and last != self._last_applied_seen:
            self._last_applied_seen = last
            slot = last & (_SEQ_SLOTS - 1)
            if self._sent_seq[slot] == last:
                rtt = (now - self._sent_t[slot]) * 1000.0
                self._rtt_counts[int(np.searchsorted(_RTT_EDGES_MS, rtt))] += 1
                self._rtt_ring[self._rtt_n & (_SEQ_SLOTS - 1)] = rtt
                self._rtt_n += 1
                if rtt > self._rtt_max_ms:
                    self._rtt_max_ms = rtt
        arr = np.array((m.angle, m.velocity, m.torque, m.current, m.temperature), dtype=np.float64)
        arr *= np.array(
            (
                P.ANGLE_SCALE_RAD,
                P.VELOCITY_SCALE_RAD_S,
                P.TORQUE_SCALE_NM,
                P.CURRENT_SCALE_A,
                P.TEMPERATURE_SCALE_C,
            )
        )[:, None]
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

    # ------------------------------------------------------------------ supervisor
    def _supervise_loop(self) -> None:
        period = self.heartbeat_period_s
        while self._running:
            self._wake.wait(period / 4)
            if not self._running:
                break
            now = time.monotonic()
            if self._ser is None:
                continue
            if not self._handshaken:
                if self._device is not None and now - self._last_hello_tx >= period:
                    self._send_hello()  # reconnect: repeat the handshake, never the enable
                continue
            if now - self._last_tx >= period:
                self._heartbeats_sent += 1
                self._send(P.Heartbeat(int(now * 1e6) & 0xFFFFFFFF, self._seq))

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
        return _RTT_EDGES_MS.copy(), self._rtt_counts.copy()

    def rtt_samples_ms(self) -> np.ndarray:
        """The newest (up to 4096) exact round-trip times in ms, oldest first."""
        n = self._rtt_n
        if n <= _SEQ_SLOTS:
            return self._rtt_ring[:n].copy()
        i = n & (_SEQ_SLOTS - 1)
        return np.concatenate((self._rtt_ring[i:], self._rtt_ring[:i]))

    def _rtt_percentile(self, q: float) -> float | None:
        n = self._rtt_n
        if n == 0:
            return None
        c = np.cumsum(self._rtt_counts)
        i = int(np.searchsorted(c, q * n))
        if i == 0:
            return float(_RTT_EDGES_MS[0])
        if i >= len(_RTT_EDGES_MS):
            return float(self._rtt_max_ms)
        # geometric centre of the bin, never above the observed maximum
        return float(min(math.sqrt(_RTT_EDGES_MS[i - 1] * _RTT_EDGES_MS[i]), self._rtt_max_ms))

    def stats(self) -> LinkStats:
        d = self._decoder
        p50, p99 = self._rtt_percentile(0.5), self._rtt_percentile(0.99)
        rtt_max = float(self._rtt_max_ms) if self._rtt_n else None
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
            "rtt_ms": {
                "p50": p50,
                "p99": p99,
                "max": rtt_max,
                "count": self._rtt_n,
                # non-empty bins as [upper edge in ms, count]; the last bin is "above 10 s"
                "histogram": [
                    [float(_RTT_EDGES_MS[i]) if i < len(_RTT_EDGES_MS) else None, int(c)]
                    for i, c in enumerate(self._rtt_counts)
                    if c
                ],
            },
            # the same three figures flat, for reports that want scalar keys
            "rtt_ms_p50": p50,
            "rtt_ms_p99": p99,
            "rtt_ms_max": rtt_max,
            "reconnects": self._reconnects,
            "device_session_losses": self._device_resets,
            "link_losses": len(self.loss_times),
            "low_latency": self.low_latency_active,
            "enabled": self._enabled,
            "healthy": self.healthy,
            "device_faults": [
                P.FAULT_NAMES.get(1 << f.code, str(f.code)) for f in self.device_faults
            ],
            "protocol_fault": self._protocol_fault,
        }
