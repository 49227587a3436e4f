"""The safety layer: the last stage before the wire. Nothing bypasses it.

Every control tick the loop calls ``SafetyLayer.apply(requested, estimate, inputs, out)`` and
sends exactly what it writes into ``out``. The layer owns four things:

1. **Limits**, per joint, on every command:

   * magnitude: ``|out| <= torque_limit_nm``;
   * range of motion (from telemetry angles; flexion positive): a positive (flexing) request
     fades linearly to zero over the last ``rom_fade_rad`` before ``angle_max_rad``, a negative
     one over the last ``rom_fade_rad`` before ``angle_min_rad``; at or beyond an end no torque
     pushes further out. An unknown (NaN) angle allows no torque at all;
   * velocity: above ``velocity_limit_rad_s`` no torque in the direction of motion (an unknown
     velocity allows none);
   * rate: ``|out - prev| <= rate_limit_nm_per_s / rate_hz`` per tick, **with one exception,
     the zeroing rule: a move towards zero that does not cross it is always permitted**. The
     rate limit protects the patient from a kick; taking torque away is never a kick worth
     keeping torque on for. So the magnitude, range-of-motion and velocity limits, the safe-stop
     ramp and the e-stop may remove torque faster than the rate limit.
     Formally, every command lies in [min(prev - r, 0), max(prev + r, 0)].

2. **Watchdogs** on every input, each with a degraded level (transient, assistance is held
   down at the rate limit, nothing latches) and a fault level:

   * ``emg_stale``: degraded while the newest EMG sample is older than emg_timeout_s / 2;
     fault when older than emg_timeout_s (NaN or no sample yet counts as stale);
   * ``emg_channel``: degraded while a channel is flagged flat or saturated (by
     :class:`ChannelMonitor`); fault when flagged continuously for emg_timeout_s;
   * ``telemetry_stale``: degraded above telemetry_timeout_s / 2; fault above
     telemetry_timeout_s;
   * ``telemetry_invalid``: degraded while an angle or velocity is NaN or infinite; fault
     when that lasts telemetry_timeout_s;
   * ``model_output``: degraded while the estimate or the request is NaN, infinite or beyond
     max_plausible_torque_nm; fault when that lasts model_fault_s;
   * ``overrun``: degraded at max_overrun_streak / 2 consecutive late ticks; fault at
     max_overrun_streak;
   * ``firmware_fault``: fault as soon as the firmware reports fault bits;
   * ``link_down``: fault as soon as the host link reports itself unhealthy;
   * ``actuators_off``: degraded while assistance is requested but the device reports its
     actuators off; fault when that lasts telemetry_timeout_s (a firmware reboot that
     re-handshakes between two ticks shows only here).

   A fault counter of this kind (persistence for a set time) ignores a single spike without
   hiding a real fault.

3. **The fault state machine**: NORMAL -> DEGRADED (transient, recovers by itself) -> SAFE_STOP
   (a fault was detected: torque ramps linearly from its value at detection to zero over half
   of ``safe_stop_s``, the other half being margin for late ticks, so it is zero no later than
   ``safe_stop_s`` after detection) -> FAULT_LATCHED (zero torque until a
   person calls ``clear_fault`` and the inputs are healthy again).

4. **The e-stop**: ``estop()`` zeroes torque at the next tick boundary (the output of an
   ``apply`` in progress is zeroed too) and latches (state ESTOP) until ``clear_fault``.

Detected faults are recorded into a preallocated ring (no allocation, no logging on the hot
path) and drained by ``events()`` off the hot path as ``FaultEvent`` records: kind, detail,
when detected, when torque reached zero.

Threading: ``apply``, ``clear_fault`` and ``events`` belong to the control-loop thread (or must
be serialised by the caller). ``estop`` may be called from any thread.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from exoctl.config.schema import JointConfig, SafetyConfig


class SafetyState(enum.IntEnum):
    NORMAL = 0
    DEGRADED = 1
    SAFE_STOP = 2
    FAULT_LATCHED = 3
    ESTOP = 4


class FaultKind(enum.IntEnum):
    EMG_STALE = 0
    EMG_CHANNEL = 1
    TELEMETRY_STALE = 2
    TELEMETRY_INVALID = 3
    MODEL_OUTPUT = 4
    OVERRUN = 5
    FIRMWARE_FAULT = 6
    LINK_DOWN = 7
    ESTOP = 8
    ACTUATORS_OFF = 9

    @property
    def label(self) -> str:
        return self.name.lower()


_N_KINDS = len(FaultKind)
_BIT = [1 << k for k in range(_N_KINDS)]


@dataclass(frozen=True, slots=True)
class FaultEvent:
    """One detected fault. Times are the loop's clock (time.monotonic)."""

    kind: str
    detail: str
    t_detected: float
    t_zero: float | None
    """When the command sent first had zero torque on every joint (None: not yet)."""


@dataclass(slots=True)
class SafetyInputs:
    """Everything the watchdogs look at; one instance, overwritten by the loop each tick."""

    now: float
    emg_age_s: float
    emg_flat_or_saturated: np.ndarray | None
    telemetry_age_s: float
    angles: np.ndarray
    velocities: np.ndarray
    firmware_fault_bits: int
    link_healthy: bool
    overrun_streak: int
    actuators_enabled: bool = True
    """The device reports its actuators enabled (host link's view). Assistance requested
    while they are off means the device dropped out (reboot, its own fault, lost session)."""

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


class ChannelMonitor:
    """Per-channel "flat or stuck at the rail" flags from raw EMG chunks, for SafetyInputs.

    A live surface electrode always shows amplifier noise, so a channel whose peak-to-peak
    range stays below ``safety.emg_flat_range`` over a window of ``emg_channel_window_s`` is
    disconnected (flat) or saturated (stuck at the rail, the same picture at a large value).
    Flags are re-evaluated at the end of each window and held in between; the safety layer
    turns a flag that persists for ``emg_timeout_s`` into a fault. Non-finite samples are the
    estimator's and model watchdog's business and raise no flag here.

    ``update`` allocates nothing for chunks of ``dtype`` (float32, as the loop's EMG buffer):
    running per-channel minimum and maximum in preallocated arrays, reductions with ``out=``.
    """

    def __init__(
        self,
        n_channels: int,
        fs_hz: float,
        safety: SafetyConfig,
        dtype: type = np.float32,
        *,
        flat_range: float | None = None,
    ) -> None:
        if n_channels < 1:
            raise ValueError(f"n_channels must be >= 1, got {n_channels}")
        if not (math.isfinite(fs_hz) and fs_hz > 0):
            raise ValueError(f"fs_hz must be a positive number, got {fs_hz!r}")
        self._window = max(2, int(round(safety.emg_channel_window_s * fs_hz)))
        # emg_flat_range is in raw EMG units; already-enveloped, normalised input (values in
        # [0, 1]) needs its own threshold, passed as flat_range.
        self._thr = float(safety.emg_flat_range if flat_range is None else flat_range)
        self.flags = np.zeros(n_channels, dtype=bool)
        # Buffers in the chunks' dtype (the loop's EMG buffer is float32): a mixed-type
        # reduction would allocate a casting buffer.
        self._lo: np.ndarray = np.full(n_channels, np.inf, dtype=dtype)
        self._hi: np.ndarray = np.full(n_channels, -np.inf, dtype=dtype)
        self._cmin: np.ndarray = np.zeros(n_channels, dtype=dtype)
        self._cmax: np.ndarray = np.zeros(n_channels, dtype=dtype)
        self._range: np.ndarray = np.zeros(n_channels, dtype=dtype)
        self._seen = np.zeros(n_channels, dtype=bool)
        self._count = 0

    def update(self, chunk: np.ndarray) -> np.ndarray:
        """Feed the samples that arrived this tick (n, channels); return the flags array."""
        if chunk.shape[0] == 0:
            return self.flags
        np.min(chunk, axis=0, out=self._cmin)
        np.max(chunk, axis=0, out=self._cmax)
        np.fmin(self._lo, self._cmin, out=self._lo)
        np.fmax(self._hi, self._cmax, out=self._hi)
        self._count += chunk.shape[0]
        if self._count >= self._window:
            np.subtract(self._hi, self._lo, out=self._range)
            np.less(self._range, self._thr, out=self.flags)
            # A window without a finite sample (range -inf) says nothing about the electrode.
            np.greater_equal(self._range, 0.0, out=self._seen)
            np.logical_and(self.flags, self._seen, out=self.flags)
            self._lo.fill(np.inf)
            self._hi.fill(-np.inf)
            self._count = 0
        return self.flags

    def reset(self) -> None:
        self.flags.fill(False)
        self._lo.fill(np.inf)
        self._hi.fill(-np.inf)
        self._count = 0


class SafetyLayer:
    """Limits, watchdogs, fault state machine and e-stop; see the module docstring."""

    EVENT_CAPACITY = 256

    def __init__(self, joints: Sequence[JointConfig], safety: SafetyConfig, rate_hz: float) -> None:
        joints = list(joints)
        if not joints:
            raise ValueError("SafetyLayer needs at least one joint")
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        n = len(joints)
        self._n = n
        self._names = tuple(j.name for j in joints)
        self._cfg = safety
        self._dt = 1.0 / float(rate_hz)
        f64 = np.float64
        self._tmax = np.array([j.torque_limit_nm for j in joints], dtype=f64)
        self._rate = np.array([j.rate_limit_nm_per_s for j in joints], dtype=f64) * self._dt
        self._amin = np.array([j.angle_min_rad for j in joints], dtype=f64)
        self._amax = np.array([j.angle_max_rad for j in joints], dtype=f64)
        self._vlim = np.array([j.velocity_limit_rad_s for j in joints], dtype=f64)
        fade = float(safety.rom_fade_rad)
        # Zero fade = a hard edge: a huge slope makes the scale 0 at the end and 1 just inside.
        self._inv_fade = 1.0 / fade if fade > 0.0 else 1e15

        self._emg_to = float(safety.emg_timeout_s)
        self._tel_to = float(safety.telemetry_timeout_s)
        self._model_to = float(safety.model_fault_s)
        self._plaus = float(safety.max_plausible_torque_nm)
        self._max_streak = int(safety.max_overrun_streak)
        self._degr_streak = max(1, self._max_streak // 2)
        # The safe-stop ramp ends at half of safe_stop_s: the other half is margin for late
        # ticks (a loaded machine, a skipped deadline), so zero is reached within safe_stop_s
        # of detection as measured on the wall clock, not only on an ideal tick grid.
        self._ramp_s = 0.5 * float(safety.safe_stop_s)
        # Inputs must have been seen healthy this recently for clear_fault to accept.
        self._clear_window = max(self._emg_to, self._tel_to, 10 * self._dt)

        # State.
        self._state = SafetyState.NORMAL
        self._fault_active = 0  # bitmask of fault conditions present at the last tick
        self._suspect = 0  # bitmask of degraded conditions present at the last tick
        self._since = [math.nan] * _N_KINDS  # start of the current streak of a persistent condition
        self._value = [0.0] * _N_KINDS  # the offending value, for the event's detail
        self._t_stop = 0.0
        self._last_eval_t = -math.inf
        self._last_eval_clean = False
        self._estop_t = math.nan  # set by estop() (any thread), consumed by apply()

        # Preallocated per-tick buffers.
        self._prev = np.zeros(n)
        self._stop_from = np.zeros(n)
        self._target = np.zeros(n)
        self._lo = np.zeros(n)
        self._hi = np.zeros(n)
        self._s = np.zeros(n)
        self._t = np.zeros(n)
        self._b = np.zeros(n, dtype=bool)
        self._b2 = np.zeros(n, dtype=bool)

        # Event ring: written by apply/estop-processing, drained by events().
        cap = self.EVENT_CAPACITY
        self._ev_kind = np.zeros(cap, dtype=np.int16)
        self._ev_value = np.zeros(cap)
        self._ev_det = np.zeros(cap)
        self._ev_zero = np.full(cap, np.nan)
        self._ev_head = 0  # next to drain (monotonic counter)
        self._ev_tail = 0  # next to write (monotonic counter)
        self._ev_pending = 0  # first index whose t_zero is unknown
        self.dropped_events = 0
        self.ticks = 0
        self.degraded_ticks = 0

    # -- public state ----------------------------------------------------------------------
    @property
    def state(self) -> SafetyState:
        return self._state

    @property
    def joints(self) -> tuple[str, ...]:
        return self._names

    @property
    def last_command(self) -> np.ndarray:
        """The command written by the last ``apply`` (read-only view)."""
        v = self._prev.view()
        v.flags.writeable = False
        return v

    @property
    def active_conditions(self) -> tuple[list[str], list[str]]:
        """(fault kinds, degraded kinds) present at the last tick; for status displays."""
        faults = [k.label for k in FaultKind if self._fault_active & _BIT[k]]
        degr = [k.label for k in FaultKind if self._suspect & _BIT[k]]
        return faults, degr

    # -- person's actions ------------------------------------------------------------------
    def estop(self, now: float) -> None:
        """Emergency stop: zero torque from the next tick boundary on, latched.

        Safe to call from any thread: it only sets a flag (and the state) that ``apply``
        honours at its start and again before it returns.
        """
        self._estop_t = float(now)
        self._state = SafetyState.ESTOP

    def clear_fault(self, now: float) -> bool:
        """A person clears a latched fault or e-stop; True if the layer is (now) clear.

        Refused (False) during a safe stop, or unless the last tick evaluated every input
        healthy (no fault and no degraded condition) within the last
        max(emg_timeout_s, telemetry_timeout_s). After a clear the command starts from zero
        and rises no faster than the rate limit (the loop should also restart the assist ramp).
        """
        state = self._state
        if state in (SafetyState.NORMAL, SafetyState.DEGRADED):
            return True
        if state == SafetyState.SAFE_STOP:
            return False
        if self._estop_t == self._estop_t:  # an e-stop not yet processed by apply
            return False
        if not self._last_eval_clean or now - self._last_eval_t > self._clear_window:
            return False
        self._prev.fill(0.0)
        self._fault_active = 0
        self._suspect = 0
        for k in range(_N_KINDS):
            self._since[k] = math.nan
        self._state = SafetyState.NORMAL
        return True

    # -- per tick --------------------------------------------------------------------------
    def apply(
        self,
        requested_nm: np.ndarray,
        estimate_nm: np.ndarray,
        inputs: SafetyInputs,
        out: np.ndarray,
    ) -> np.ndarray:
        """Write the command to send into ``out`` (N m, joint order) and return it."""
        now = float(inputs.now)
        self.ticks += 1
        fault, suspect = self._evaluate(requested_nm, estimate_nm, inputs, now)
        rising = fault & ~self._fault_active
        self._fault_active = fault
        self._suspect = suspect
        if rising:
            for k in range(_N_KINDS):
                if rising & _BIT[k]:
                    self._record(k, self._value[k], now)
        self._last_eval_t = now
        self._last_eval_clean = not (fault or suspect)

        if self._estop_t == self._estop_t:  # not NaN: an e-stop to process
            self._record(FaultKind.ESTOP, 0.0, self._estop_t)
            self._estop_t = math.nan
            self._state = SafetyState.ESTOP

        state = self._state
        if state in (SafetyState.NORMAL, SafetyState.DEGRADED):
            if fault:
                state = SafetyState.SAFE_STOP
                self._t_stop = now
                np.copyto(self._stop_from, self._prev)
            elif suspect:
                state = SafetyState.DEGRADED
            else:
                state = SafetyState.NORMAL

        if state >= SafetyState.FAULT_LATCHED:
            out.fill(0.0)
        else:
            self._limits(inputs)
            self._command(state, requested_nm, now, out)

        if self._estop_t == self._estop_t:  # an e-stop arrived while we computed
            out.fill(0.0)
            state = SafetyState.ESTOP
        np.copyto(self._prev, out)
        if state == SafetyState.DEGRADED:
            self.degraded_ticks += 1
        np.not_equal(out, 0.0, out=self._b2)
        if not self._b2.any():
            if state == SafetyState.SAFE_STOP:
                state = SafetyState.FAULT_LATCHED
            if self._ev_pending < self._ev_tail:
                self._complete(now)
        if self._state != SafetyState.ESTOP or state == SafetyState.ESTOP:
            self._state = state
        return out

    # -- internals -------------------------------------------------------------------------
    def _evaluate(
        self, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, now: float
    ) -> tuple[int, int]:
        """Return (fault bitmask, degraded bitmask) for this tick's inputs."""
        fault = 0
        suspect = 0
        val = self._value
        b = self._b
        t = self._t

        age = inp.emg_age_s
        if not age <= self._emg_to:  # NaN counts as stale
            fault |= _BIT[FaultKind.EMG_STALE]
            val[FaultKind.EMG_STALE] = age
        elif age > 0.5 * self._emg_to:
            suspect |= _BIT[FaultKind.EMG_STALE]

        flags = inp.emg_flat_or_saturated
        k = FaultKind.EMG_CHANNEL
        if flags is not None and flags.any():
            if self._persist(k, now, self._emg_to):
                fault |= _BIT[k]
                val[k] = float(flags.argmax())
            else:
                suspect |= _BIT[k]
        else:
            self._since[k] = math.nan

        age = inp.telemetry_age_s
        if not age <= self._tel_to:
            fault |= _BIT[FaultKind.TELEMETRY_STALE]
            val[FaultKind.TELEMETRY_STALE] = age
        elif age > 0.5 * self._tel_to:
            suspect |= _BIT[FaultKind.TELEMETRY_STALE]

        k = FaultKind.TELEMETRY_INVALID
        np.isfinite(inp.angles, out=b)
        tel_ok = bool(b.all())
        if tel_ok:
            np.isfinite(inp.velocities, out=b)
            tel_ok = bool(b.all())
        if tel_ok:
            self._since[k] = math.nan
        elif self._persist(k, now, self._tel_to):
            fault |= _BIT[k]
            val[k] = float(b.argmin())
        else:
            suspect |= _BIT[k]

        k = FaultKind.MODEL_OUTPUT
        np.abs(est, out=t)
        np.less_equal(t, self._plaus, out=b)  # False for NaN
        model_ok = bool(b.all())
        bad_val = 0.0
        if model_ok:
            np.abs(req, out=t)
            np.less_equal(t, self._plaus, out=b)
            model_ok = bool(b.all())
            if not model_ok:
                bad_val = float(req[b.argmin()])
        else:
            bad_val = float(est[b.argmin()])
        if model_ok:
            self._since[k] = math.nan
        elif self._persist(k, now, self._model_to):
            fault |= _BIT[k]
            val[k] = bad_val
        else:
            suspect |= _BIT[k]

        streak = inp.overrun_streak
        if streak >= self._max_streak:
            fault |= _BIT[FaultKind.OVERRUN]
            val[FaultKind.OVERRUN] = float(streak)
        elif streak >= self._degr_streak:
            suspect |= _BIT[FaultKind.OVERRUN]

        if inp.firmware_fault_bits:
            fault |= _BIT[FaultKind.FIRMWARE_FAULT]
            val[FaultKind.FIRMWARE_FAULT] = float(inp.firmware_fault_bits)

        if not inp.link_healthy:
            fault |= _BIT[FaultKind.LINK_DOWN]
            val[FaultKind.LINK_DOWN] = 0.0

        # Assistance requested while the device's actuators are off: a firmware reboot or a
        # lost session that re-handshakes too fast to show as an unhealthy link. Brief during
        # an enable handshake (a clear during a session), so it persists before it faults.
        k = FaultKind.ACTUATORS_OFF
        off = False
        if not inp.actuators_enabled:
            np.not_equal(req, 0.0, out=b)
            off = bool(b.any())
        if not off:
            self._since[k] = math.nan
        elif self._state == SafetyState.ESTOP:
            # The host switched them off itself (Controller.estop): no device fault to report,
            # but not healthy either, so a clear waits until they are on again.
            suspect |= _BIT[k]
        elif self._persist(k, now, self._tel_to):
            fault |= _BIT[k]
            val[k] = 0.0
        else:
            suspect |= _BIT[k]
        return fault, suspect

    def _persist(self, k: int, now: float, timeout: float) -> bool:
        """A condition is bad this tick; True once it has been bad for ``timeout`` seconds."""
        since = self._since[k]
        if since != since:  # NaN: the streak starts now
            self._since[k] = since = now
        return now - since >= timeout

    def _limits(self, inp: SafetyInputs) -> None:
        """Fill _lo/_hi (hard bounds, both containing 0) from torque, range and velocity."""
        lo, hi, s, b = self._lo, self._hi, self._s, self._b
        ang = inp.angles
        # Positive torque: scale = clip((amax - angle) / fade, 0, 1); fmax maps NaN to 0.
        np.subtract(self._amax, ang, out=s)
        s *= self._inv_fade
        np.fmax(s, 0.0, out=s)
        np.fmin(s, 1.0, out=s)
        np.multiply(self._tmax, s, out=hi)
        # Negative torque: scale = clip((angle - amin) / fade, 0, 1).
        np.subtract(ang, self._amin, out=s)
        s *= self._inv_fade
        np.fmax(s, 0.0, out=s)
        np.fmin(s, 1.0, out=s)
        np.multiply(self._tmax, s, out=lo)
        np.negative(lo, out=lo)
        # Velocity: no torque in the direction of motion above the limit; a velocity that is
        # not finite is unknown and allows none either way.
        vel = inp.velocities
        b2 = self._b2
        np.isfinite(vel, out=b2)
        np.less_equal(vel, self._vlim, out=b)
        np.logical_and(b, b2, out=b)
        np.logical_not(b, out=b)
        np.copyto(hi, 0.0, where=b)
        np.negative(self._vlim, out=s)
        np.greater_equal(vel, s, out=b)
        np.logical_and(b, b2, out=b)
        np.logical_not(b, out=b)
        np.copyto(lo, 0.0, where=b)

    def _command(self, state: int, req: np.ndarray, now: float, out: np.ndarray) -> None:
        tgt, s, t, b = self._target, self._s, self._t, self._b
        prev = self._prev
        if state == SafetyState.NORMAL:
            # Range-of-motion fade as a proportional scale: hi/tmax for pushes towards the
            # upper end, lo/-tmax towards the lower end.
            np.copyto(tgt, req)
            np.greater(tgt, 0.0, out=b)
            np.divide(self._lo, self._tmax, out=s)
            np.negative(s, out=s)
            np.divide(self._hi, self._tmax, out=t)
            np.copyto(s, t, where=b)
            tgt *= s
        elif state == SafetyState.DEGRADED:
            tgt.fill(0.0)  # hold assistance down, at the rate limit
        else:  # SAFE_STOP: |target| <= |stop_from| * frac, frac hitting 0 one tick early
            frac = 1.0 - (now - self._t_stop + self._dt) / self._ramp_s
            if frac < 1e-9:  # also absorbs rounding in the time arithmetic
                frac = 0.0
            np.abs(self._stop_from, out=s)
            s *= frac
            np.negative(s, out=t)
            np.clip(prev, t, s, out=out)
        if state != SafetyState.SAFE_STOP:
            # Rate limit: [prev - r, prev + r].
            np.subtract(prev, self._rate, out=t)
            np.maximum(tgt, t, out=out)
            np.add(prev, self._rate, out=t)
            np.minimum(out, t, out=out)
        # Hard bounds last: they contain 0, so clipping only ever moves towards zero.
        np.maximum(out, self._lo, out=out)
        np.minimum(out, self._hi, out=out)
        # Belt and braces: nothing non-finite leaves this layer.
        np.isfinite(out, out=self._b2)
        np.logical_not(self._b2, out=self._b2)
        np.copyto(out, 0.0, where=self._b2)

    def _record(self, kind: int, value: float, t_det: float) -> None:
        i = self._ev_tail
        if i - self._ev_head >= self.EVENT_CAPACITY:
            self.dropped_events += 1
            return
        j = i % self.EVENT_CAPACITY
        self._ev_kind[j] = kind
        self._ev_value[j] = value
        self._ev_det[j] = t_det
        self._ev_zero[j] = math.nan
        self._ev_tail = i + 1

    def _complete(self, now: float) -> None:
        for i in range(self._ev_pending, self._ev_tail):
            self._ev_zero[i % self.EVENT_CAPACITY] = now
        self._ev_pending = self._ev_tail

    # -- off the hot path ------------------------------------------------------------------
    def events(self, include_pending: bool = False) -> list[FaultEvent]:
        """Drain recorded faults, oldest first.

        Events whose torque has not reached zero yet stay queued unless ``include_pending``
        (then they are returned with ``t_zero=None`` and not reported again).
        """
        end = self._ev_tail if include_pending else self._ev_pending
        out: list[FaultEvent] = []
        for i in range(self._ev_head, end):
            j = i % self.EVENT_CAPACITY
            kind = FaultKind(int(self._ev_kind[j]))
            tz = float(self._ev_zero[j])
            out.append(
                FaultEvent(
                    kind=kind.label,
                    detail=self._detail(kind, float(self._ev_value[j])),
                    t_detected=float(self._ev_det[j]),
                    t_zero=None if i >= self._ev_pending or tz != tz else tz,
                )
            )
        self._ev_head = end
        if self._ev_pending < end:
            self._ev_pending = end
        return out

    def _detail(self, kind: FaultKind, v: float) -> str:
        c = self._cfg
        if kind == FaultKind.EMG_STALE:
            return f"newest EMG sample {v:.3f} s old > emg_timeout_s {c.emg_timeout_s} s"
        if kind == FaultKind.EMG_CHANNEL:
            return f"EMG channel {int(v)} flat or saturated for >= {c.emg_timeout_s} s"
        if kind == FaultKind.TELEMETRY_STALE:
            return f"newest telemetry {v:.3f} s old > telemetry_timeout_s {c.telemetry_timeout_s} s"
        if kind == FaultKind.TELEMETRY_INVALID:
            return (
                f"telemetry angle/velocity not finite (joint {self._names[int(v)]}) "
                f"for >= {c.telemetry_timeout_s} s"
            )
        if kind == FaultKind.MODEL_OUTPUT:
            return (
                f"torque estimate {v!r} N m is NaN, infinite or beyond "
                f"max_plausible_torque_nm {c.max_plausible_torque_nm} for >= {c.model_fault_s} s"
            )
        if kind == FaultKind.OVERRUN:
            return (
                f"{int(v)} consecutive loop overruns >= max_overrun_streak {c.max_overrun_streak}"
            )
        if kind == FaultKind.FIRMWARE_FAULT:
            return f"firmware fault bits 0x{int(v):x}"
        if kind == FaultKind.LINK_DOWN:
            return "host link unhealthy (no telemetry or handshake lost)"
        if kind == FaultKind.ACTUATORS_OFF:
            return (
                "assistance requested while the device's actuators are off (reboot, device "
                f"fault or lost session) for >= {c.telemetry_timeout_s} s"
            )
        return "emergency stop"
