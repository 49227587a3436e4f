"""Emulated actuator firmware on a real pseudo-terminal, enforcing docs/protocol.md.

The HIL bench runs this in place of the exoskeleton: the host opens the pty with pyserial
exactly as it would open the USB-serial adapter, and nothing but protocol frames cross it.
The emulator is deliberately strict: it refuses torque before handshake and enable, clamps
to its own limits (and counts the commands that exceeded them), zeroes torque and latches a
fault when the host goes silent, and reports faults. Test hooks (``pull_cable``, ``replug``,
``set_bit_error_rate``, ``press_estop``, ``inject_fault``) act on the wire or the device the
way the physical faults would.

The firmware is one state machine (handshake, enable, watchdogs, torque, faults) whose parts
share its state under one lock, so it stays one class; the pieces it uses live beside it:
joints and plant (``emulated_plant``), the device's wire arithmetic (``device_wire``), its
counters (``emulator_stats``) and the pty (``pty_port``), all re-exported here.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import tempfile
import threading
import time
from collections import deque

import numpy as np

from firmware_bridge import protocol as P
from firmware_bridge.device_wire import _counts, _seq_gap, _serial_newer
from firmware_bridge.emulated_plant import EmulatedJoint as EmulatedJoint
from firmware_bridge.emulated_plant import Plant as Plant
from firmware_bridge.emulated_plant import SpringDamperPlant as SpringDamperPlant
from firmware_bridge.emulator_stats import EmulatorStats as EmulatorStats
from firmware_bridge.pty_port import flush_pty as flush_pty
from firmware_bridge.pty_port import plug_pty as plug_pty
from firmware_bridge.pty_port import unplug_pty as unplug_pty

# motor model for telemetry: current = torque / (kt * gear), first-order winding temperature
_KT_GEAR_NM_PER_A = 4.5
_WINDING_R_OHM = 0.5
_THERMAL_R_K_PER_W = 2.0
_THERMAL_TAU_S = 60.0
_AMBIENT_C = 30.0
_ANGLE_LIMIT_COUNT = 32767


class FirmwareEmulator:
    """Device side of the protocol on a pty; one thread, ~1 kHz plant integration."""

    TICK_S = 0.001

    def __init__(
        self,
        joints: list[EmulatedJoint],
        command_timeout_s: float = 0.1,
        telemetry_period_s: float = 0.002,
        plant: Plant | None = None,
        device_id: str = "exo-emulator",
        *,
        seed: int = 0,
    ) -> None:
        if not 1 <= len(joints) <= P.MAX_JOINTS:
            raise ValueError(f"need 1..{P.MAX_JOINTS} joints, got {len(joints)}")
        # DEVICE_INFO carries them as u16 ms and u16 us, each at least 1
        if not 1 <= round(command_timeout_s * 1000) <= 0xFFFF:
            raise ValueError("command_timeout_s must be in [0.001, 65.535]")
        if not 1 <= round(telemetry_period_s * 1e6) <= 0xFFFF:
            raise ValueError("telemetry_period_s must be in [1e-6, 0.065535]")
        P._pad(device_id, P.DEVICE_ID_LEN, "device_id")
        self.joints = list(joints)
        self.n = len(joints)
        self.command_timeout_s = float(command_timeout_s)
        self.telemetry_period_s = float(telemetry_period_s)
        self.device_id = device_id
        lo = np.array([j.angle_min_rad for j in joints])
        hi = np.array([j.angle_max_rad for j in joints])
        self.plant: Plant = plant or SpringDamperPlant(np.clip(0.0, lo, hi))
        self._lo, self._hi = lo, hi
        self._limit_counts = np.array(
            [
                P.to_u16_count(j.torque_limit_nm, P.TORQUE_COUNTS_PER_NM, "torque_limit_nm")
                for j in joints
            ],
            dtype=np.int64,
        )
        self._rng = np.random.default_rng(seed)
        self._ber = 0.0
        self._mute = False

        self._lock = threading.RLock()  # guards device state against test-hook calls
        self._master = -1
        self._slave = -1
        self._dir: str | None = None
        self._link_path: str | None = None
        self._thread: threading.Thread | None = None
        self._running = False
        self._t0 = time.monotonic()

        # device state
        self._decoder = P.StreamDecoder(self._on_version_error, receiver=P.DEVICE)
        self._handshaken = False
        self._enabled = False
        self._latched = 0
        self._status = 0
        self._estop = False
        self._joint_faults = np.zeros(self.n, dtype=np.int64)
        self._cmd_counts = np.zeros(self.n, dtype=np.int64)  # applied, after clamp
        self._torque = np.zeros(self.n, dtype=np.float64)
        self._theta = np.zeros(self.n)
        self._omega = np.zeros(self.n)
        self._temp = np.full(self.n, _AMBIENT_C)
        self._last_applied = 0
        self._last_rx = 0.0
        self._last_cmd = 0.0
        self._last_tel = 0.0
        self._measured_us = 0  # device time of the joint state telemetry reports
        self._tel_seq = 0
        self._txbuf = bytearray()

        # counters
        self._commands_received = 0
        self._commands_applied = 0
        self._commands_refused = 0
        self._commands_stale_seq = 0
        self._limit_violations = 0
        self._timeouts = 0
        self._seq_gaps = 0
        self._faults: list[dict] = []
        self.applied_log: deque[tuple[int, tuple[int, ...]]] = deque(maxlen=200_000)
        self.refused_log: deque[int] = deque(maxlen=10_000)
        self._bytes_corrupted = 0
        self.pulled_at: float | None = None
        self._resets = 0

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> str:
        """Create the pty and a stable symlink to it; start the device thread; return the path."""
        if self._running:
            raise RuntimeError("emulator already started")
        self._dir = tempfile.mkdtemp(prefix="exoctl-emu-")
        self._link_path = os.path.join(self._dir, "exoskeleton")
        self._plug()
        self._t0 = time.monotonic()
        self._running = True
        self._thread = threading.Thread(target=self._run, name="fw-emulator", daemon=True)
        self._thread.start()
        return self._link_path

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        with self._lock:
            self._unplug()
        if self._link_path and os.path.lexists(self._link_path):
            os.unlink(self._link_path)
        if self._dir:
            with contextlib.suppress(OSError):
                os.rmdir(self._dir)

    @property
    def port(self) -> str | None:
        return self._link_path

    def _plug(self) -> None:
        assert self._link_path is not None, "start() sets the link path before plugging"
        self._master, self._slave = plug_pty(self._link_path)

    def _unplug(self) -> None:
        unplug_pty(self._master, self._slave)
        self._master = self._slave = -1
        self._txbuf.clear()

    # ------------------------------------------------------------------ test hooks
    def pull_cable(self) -> None:
        """Close the pty master: the host's next read fails, as on a USB unplug."""
        with self._lock:
            self.pulled_at = time.monotonic()
            self._unplug()

    def replug(self) -> str:
        """A new pty behind the same symlink path, as udev does for a re-enumerated adapter."""
        with self._lock:
            self._unplug()
            self._plug()
            self._decoder = P.StreamDecoder(self._on_version_error, receiver=P.DEVICE)
        assert self._link_path is not None
        return self._link_path

    def reset(self) -> None:
        """A firmware reboot: torque off, every state and latched fault forgotten, telemetry
        counter and clock restarted. The pty stays (the USB adapter did not re-enumerate)."""
        with self._lock:
            self._zero_and_disable()
            self._handshaken = False
            self._latched = 0
            self._status = 0
            self._joint_faults[:] = 0
            self._last_applied = 0
            self._tel_seq = 0
            self._t0 = time.monotonic()
            self._measured_us = 0
            self._decoder = P.StreamDecoder(self._on_version_error, receiver=P.DEVICE)
            self._resets += 1

    def set_mute(self, mute: bool) -> None:
        """Stop (or resume) sending anything while the port stays open: a firmware that hangs
        or a cut TX wire, which no OS error reveals to the host."""
        self._mute = bool(mute)

    def set_bit_error_rate(self, p: float) -> None:
        """Flip each bit on the wire (both directions) with probability p."""
        if not 0.0 <= p < 0.5:
            raise ValueError("bit error rate must be in [0, 0.5)")
        self._ber = float(p)

    def press_estop(self) -> None:
        with self._lock:
            self._estop = True
            self._zero_and_disable()
            self._raise_fault(P.FAULT_ESTOP, latched=True)
            self._send(P.EstopState(self._fw_us(), 1))

    def release_estop(self) -> None:
        with self._lock:
            self._estop = False
            self._send(P.EstopState(self._fw_us(), 0))

    def inject_fault(self, bit: int, joint: int = P.JOINT_DEVICE) -> None:
        """Raise a latched device fault (e.g. FAULT_OVER_TEMPERATURE) as the hardware would."""
        if bit not in (P.FAULT_OVER_TEMPERATURE, P.FAULT_OVERCURRENT):
            raise ValueError("inject_fault accepts FAULT_OVER_TEMPERATURE or FAULT_OVERCURRENT")
        if joint != P.JOINT_DEVICE and not 0 <= joint < self.n:
            raise ValueError(f"joint must be 0..{self.n - 1} or JOINT_DEVICE, got {joint}")
        with self._lock:
            self._zero_and_disable()
            self._raise_fault(bit, latched=True, joint=joint)

    # ------------------------------------------------------------------ wire
    def _corrupt(self, data: bytes) -> bytes:
        p = self._ber
        if p <= 0.0 or not data:
            return data
        nbits = 8 * len(data)
        k = self._rng.binomial(nbits, p)
        if k == 0:
            return data
        buf = bytearray(data)
        for pos in self._rng.choice(nbits, size=k, replace=False):
            buf[pos >> 3] ^= 1 << (pos & 7)
        self._bytes_corrupted += k
        return bytes(buf)

    def _send(self, msg: P.Message) -> None:
        if self._master < 0 or self._mute:
            return
        self._txbuf += self._corrupt(P.encode(msg))
        self._flush()

    def _flush(self) -> None:
        flush_pty(self._master, self._txbuf)

    def _fw_us(self) -> int:
        return int((time.monotonic() - self._t0) * 1e6) & 0xFFFFFFFF

    # ------------------------------------------------------------------ device loop
    def _run(self) -> None:
        next_tick = time.monotonic()
        t_plant = 0.0
        last_step = time.monotonic()
        while self._running:
            now = time.monotonic()
            timeout = max(0.0, next_tick - now)
            master = self._master
            data = b""
            if master >= 0:
                try:
                    r, _, _ = select.select([master], [], [], timeout)
                except (OSError, ValueError):
                    r = []
                if r:
                    try:
                        data = os.read(master, 4096)
                    except (BlockingIOError, InterruptedError):
                        data = b""
                    except OSError:
                        data = b""  # EIO: no slave open right now; keep the line up
                        time.sleep(0.0005)
            else:
                time.sleep(min(timeout, 0.001))
            with self._lock:
                if data:
                    self._receive(self._corrupt(data))
                now = time.monotonic()
                if now >= next_tick:
                    dt = min(now - last_step, 0.02)
                    last_step = now
                    steps = max(1, round(dt / self.TICK_S))
                    for _ in range(steps):
                        t_plant += dt / steps
                        th, om = self.plant.step(t_plant, dt / steps, self._torque)
                    self._theta[:] = th
                    self._omega[:] = om
                    # telemetry is stamped with the instant its joint state was measured,
                    # not the instant it is sent: the host pairs the angles with the EMG
                    # by this time
                    at = getattr(self.plant, "measured_at", now)
                    at = at if math.isfinite(at) else now
                    self._measured_us = int((at - self._t0) * 1e6) & 0xFFFFFFFF
                    self._update_thermal(dt)
                    self._watchdogs(now)
                    next_tick += self.TICK_S
                    if next_tick < now:
                        next_tick = now + self.TICK_S
                if now - self._last_tel >= self.telemetry_period_s:
                    self._send_telemetry(now)
                self._flush()

    def _receive(self, data: bytes) -> None:
        """Handle the frames in ``data`` strictly in arrival order. The decoder reports a
        foreign HELLO through a callback during feed(), before it returns the messages of the
        same chunk, so it is fed one frame at a time: a TORQUE_CMD followed by a foreign HELLO
        in one read is applied before the HELLO unpairs the device, as on the wire."""
        start, n = 0, len(data)
        while start < n:
            z = data.find(0, start)
            end = n if z < 0 else z + 1
            for m in self._decoder.feed(data[start:end]):
                self._handle(m, time.monotonic())
            start = end

    def _update_thermal(self, dt: float) -> None:
        cur = self._torque / _KT_GEAR_NM_PER_A
        target = _AMBIENT_C + cur * cur * _WINDING_R_OHM * _THERMAL_R_K_PER_W
        self._temp += (target - self._temp) * (dt / _THERMAL_TAU_S)

    def _watchdogs(self, now: float) -> None:
        if self._handshaken and now - self._last_rx > self.command_timeout_s:
            # Host silent: remove torque, latch, and require a new handshake.
            self._timeouts += 1
            self._zero_and_disable()
            self._handshaken = False
            self._raise_fault(P.FAULT_HOST_TIMEOUT, latched=True)
        elif (
            self._enabled
            and now - self._last_cmd > self.command_timeout_s
            and not self._status & P.FAULT_COMMAND_STALE
        ):
            # Heartbeats but no torque command: the controller stalled; hold zero torque.
            self._cmd_counts[:] = 0
            self._torque[:] = 0.0
            self._raise_fault(P.FAULT_COMMAND_STALE, latched=False)
        # angle limits: never push further out of the range of motion
        out_hi = (self._theta > self._hi) & (self._torque > 0)
        out_lo = (self._theta < self._lo) & (self._torque < 0)
        out = out_hi | out_lo
        if out.any():
            self._torque[out] = 0.0
            self._cmd_counts[out] = 0
        self._joint_faults &= ~P.JFAULT_ANGLE_LIMIT
        self._joint_faults[(self._theta > self._hi) | (self._theta < self._lo)] |= (
            P.JFAULT_ANGLE_LIMIT
        )
        if (self._joint_faults & P.JFAULT_ANGLE_LIMIT).any():
            self._status |= P.FAULT_ANGLE_LIMIT
        else:
            self._status &= ~P.FAULT_ANGLE_LIMIT

    def _zero_and_disable(self) -> None:
        self._enabled = False
        self._cmd_counts[:] = 0
        self._torque[:] = 0.0

    def _raise_fault(self, bit: int, *, latched: bool, joint: int = P.JOINT_DEVICE) -> None:
        if latched:
            self._latched |= bit
        else:
            self._status |= bit
        self._faults.append(
            {"t": time.monotonic(), "fault": P.FAULT_NAMES[bit], "latched": latched}
        )
        self._send(
            P.FaultReport(self._fw_us(), bit.bit_length() - 1, int(latched), joint, self._bits())
        )

    def _bits(self) -> int:
        return self._latched | self._status

    def _flags(self) -> int:
        return (
            (P.FLAG_ENABLED if self._enabled else 0)
            | (P.FLAG_ESTOP if self._estop else 0)
            | (P.FLAG_HANDSHAKEN if self._handshaken else 0)
        )

    def _send_telemetry(self, now: float) -> None:
        self._last_tel = now
        self._tel_seq = (self._tel_seq + 1) & 0xFFFFFFFF
        ang = _counts(self._theta, P.ANGLE_COUNTS_PER_RAD)
        vel = _counts(self._omega, P.VELOCITY_COUNTS_PER_RAD_S)
        cur = _counts(self._torque / _KT_GEAR_NM_PER_A, P.CURRENT_COUNTS_PER_A)
        tmp = _counts(self._temp, P.TEMPERATURE_COUNTS_PER_C)
        self._send(
            P.Telemetry(
                self._tel_seq,
                self._measured_us,
                self._last_applied,
                self._flags(),
                self._bits(),
                ang,
                vel,
                tuple(self._cmd_counts.tolist()),
                cur,
                tmp,
                tuple(self._joint_faults.tolist()),
            )
        )

    def _ack(self, req: P.Enable | P.Disable | P.ClearFaults, result: int) -> None:
        state = (
            P.STATE_ENABLED
            if self._enabled
            else (P.STATE_DISABLED if self._handshaken else P.STATE_UNPAIRED)
        )
        self._send(P.Ack(req.request_id, req.TYPE, result, state, self._bits()))

    def _on_version_error(self, e: P.FrameError) -> None:
        """A HELLO in a version we do not speak (checks 1-5 passed, counted as a version
        error): answer in ours so the host can say why, and do what a HELLO does except
        pairing: torque off, UNPAIRED, sequence reference forgotten (docs/protocol.md 5.1).
        A foreign HELLO whose payload is shorter than its nonce is not answered."""
        nonce = e.hello_nonce
        if nonce is None:
            return
        self._zero_and_disable()
        self._handshaken = False
        self._last_applied = 0
        self._status &= ~(P.FAULT_COMMAND_STALE | P.FAULT_BAD_COMMAND)
        self._send_device_info(nonce)

    def _send_device_info(self, nonce: int) -> None:
        self._send(
            P.DeviceInfo(
                nonce,
                round(self.command_timeout_s * 1000),
                round(self.telemetry_period_s * 1e6),
                self.device_id,
                tuple(
                    P.JointInfo(
                        j.name,
                        int(self._limit_counts[k]),
                        P.to_count(j.angle_min_rad, P.ANGLE_COUNTS_PER_RAD),
                        P.to_count(j.angle_max_rad, P.ANGLE_COUNTS_PER_RAD),
                    )
                    for k, j in enumerate(self.joints)
                ),
            )
        )

    def _handle(self, m: P.Message, now: float) -> None:
        if isinstance(m, P.Hello):
            self._last_rx = now
            self._zero_and_disable()
            self._handshaken = True
            self._last_applied = 0
            self._status &= ~(P.FAULT_COMMAND_STALE | P.FAULT_BAD_COMMAND)
            self._send_device_info(m.nonce)
            return
        if not self._handshaken:
            if isinstance(m, P.TorqueCommand):
                self._on_torque(m, now)  # not enabled before a handshake: refused and counted
            elif isinstance(m, P.Enable | P.ClearFaults):
                self._ack(m, P.ACK_NOT_HANDSHAKEN)
            elif isinstance(m, P.Disable):
                self._zero_and_disable()
                self._ack(m, P.ACK_OK)
            return  # nothing else counts as host activity before Hello
        self._last_rx = now
        if isinstance(m, P.TorqueCommand):
            self._on_torque(m, now)
        elif isinstance(m, P.Heartbeat):
            pass
        elif isinstance(m, P.Enable):
            if self._estop:
                self._ack(m, P.ACK_ESTOP_ACTIVE)
            elif self._latched:
                self._ack(m, P.ACK_FAULT_LATCHED)
            else:
                self._enabled = True
                self._last_cmd = now  # the stale-command clock starts at enable
                self._cmd_counts[:] = 0
                self._torque[:] = 0.0
                self._ack(m, P.ACK_OK)
        elif isinstance(m, P.Disable):
            self._zero_and_disable()
            self._ack(m, P.ACK_OK)
        elif isinstance(m, P.ClearFaults):
            if self._estop:
                self._latched &= ~(P.LATCHED_FAULTS & ~P.FAULT_ESTOP)
                self._ack(m, P.ACK_ESTOP_ACTIVE)
            else:
                self._latched = 0
                self._status &= ~P.FAULT_BAD_COMMAND
                self._ack(m, P.ACK_OK)
        # device->host types never get here: the decoder drops them ("direction"), so a
        # looped-back wire does not feed the host-silence watchdog

    def _on_torque(self, m: P.TorqueCommand, now: float) -> None:
        self._commands_received += 1
        counts = np.array(m.torque, dtype=np.int64)
        over = np.abs(counts) > self._limit_counts if len(m.torque) == self.n else None
        if over is not None and over.any():
            self._limit_violations += 1  # counted on receipt, applied or not
        if not self._enabled:
            self._commands_refused += 1
            self.refused_log.append(m.seq)
            return
        if over is None:
            self._commands_refused += 1
            if not self._status & P.FAULT_BAD_COMMAND:
                self._raise_fault(P.FAULT_BAD_COMMAND, latched=False)
            return
        # _last_applied 0 means "none since HELLO" (a seq-0 command never gets here: the
        # decoder drops it), so the first command of a session sets the reference
        if self._last_applied and not _serial_newer(m.seq, self._last_applied):
            self._commands_stale_seq += 1  # duplicate or reordered: never apply an old command
            return
        if self._last_applied:
            self._seq_gaps += _seq_gap(m.seq, self._last_applied)
        if over.any():
            np.clip(counts, -self._limit_counts, self._limit_counts, out=counts)
            self._status |= P.FAULT_TORQUE_CLAMPED
        else:
            self._status &= ~P.FAULT_TORQUE_CLAMPED
        self._joint_faults &= ~P.JFAULT_TORQUE_CLAMPED
        self._joint_faults[over] |= P.JFAULT_TORQUE_CLAMPED
        self._cmd_counts[:] = counts
        self._torque[:] = counts * P.TORQUE_SCALE_NM
        self._last_applied = m.seq
        self._last_cmd = now
        self._status &= ~P.FAULT_COMMAND_STALE
        self._commands_applied += 1
        self.applied_log.append((m.seq, m.torque))
        self._send_telemetry(now)

    # ------------------------------------------------------------------ observation
    def stats(self) -> EmulatorStats:
        with self._lock:
            d = self._decoder
            return {
                "commands_received": self._commands_received,
                "commands_applied": self._commands_applied,
                "commands_refused": self._commands_refused,
                "commands_out_of_order": self._commands_stale_seq,
                "limit_violations": self._limit_violations,
                "crc_errors": d.errors["crc"],
                "framing_errors": d.errors["framing"],
                "frame_errors": dict(d.errors),
                "frames_good": d.good,
                "seq_gaps": self._seq_gaps,
                "timeouts": self._timeouts,
                "resets": self._resets,
                "faults": list(self._faults),
                "fault_bits": self._bits(),
                "enabled": self._enabled,
                "handshaken": self._handshaken,
                "estop": self._estop,
                "bits_corrupted": self._bytes_corrupted,
                "applied_torque_nm": self._torque.tolist(),
            }
