"""The safety layer proper: limits, fault state machine, e-stop and the event ring.

See the package docstring (``exoctl.control.safety``) for the rules. ``apply`` reads its
watchdogs from the table in ``watchdogs``, then computes each joint's command in one pass over
the joints on Python floats: the range-of-motion and velocity bounds (``lo <= 0 <= hi``), the
target of the state (proportional fade, zero, or the safe-stop envelope), the rate limit, the
bounds, and a last check that nothing non-finite leaves.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from exoctl.config.schema import JointConfig, SafetyConfig
from exoctl.control.safety.faults import BIT, LAYER_FAULTS, N_KINDS, FaultKind
from exoctl.control.safety.inputs import FaultEvent, SafetyInputs, SafetyState
from exoctl.control.safety.watchdogs import Watchdogs

_NORMAL, _DEGRADED, _SAFE_STOP = SafetyState.NORMAL, SafetyState.DEGRADED, SafetyState.SAFE_STOP
_LATCHED, _ESTOP = SafetyState.FAULT_LATCHED, SafetyState.ESTOP


class SafetyLayer:
    """Limits, watchdogs, fault state machine and e-stop; see the package docstring."""

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
        self._index = list(range(n))  # made once: iterating a range makes an int per joint
        self._cfg = safety
        self._dt = 1.0 / float(rate_hz)
        # Per-joint limits as Python floats (read per tick without numpy's per-call cost).
        self._tmax = [float(j.torque_limit_nm) for j in joints]
        self._rate = [float(j.rate_limit_nm_per_s) * self._dt for j in joints]
        self._amin = [float(j.angle_min_rad) for j in joints]
        self._amax = [float(j.angle_max_rad) for j in joints]
        self._vlim = [float(j.velocity_limit_rad_s) for j in joints]
        fade = float(safety.rom_fade_rad)
        # Zero fade = a hard edge: a huge slope makes the scale 0 at the end and 1 just inside.
        self._inv_fade = 1.0 / fade if fade > 0.0 else 1e15

        self._watchdogs = Watchdogs(safety)
        # The safe-stop ramp ends at half of safe_stop_s: the other half is margin for late
        # ticks (a loaded machine, a skipped deadline), so zero is reached within safe_stop_s
        # of detection as measured on the wall clock, not only on an ideal tick grid.
        self._ramp_s = 0.5 * float(safety.safe_stop_s)
        # Inputs must have been seen healthy this recently for clear_fault to accept.
        self._clear_window = max(
            float(safety.emg_timeout_s), float(safety.telemetry_timeout_s), 10 * self._dt
        )

        # State.
        self._state = SafetyState.NORMAL
        self._fault_active = 0  # bitmask of fault conditions present at the last tick
        self._suspect = 0  # bitmask of degraded conditions present at the last tick
        self._t_stop = 0.0
        self._last_eval_t = -math.inf
        self._last_eval_clean = False
        self._estop_t = math.nan  # set by estop() (any thread), consumed by apply()
        self._prev = np.zeros(n)  # the last command (read by last_command)
        self._stop_from = np.zeros(n)  # the command when the safe stop began
        self._watchdogs.sent = self._prev  # the checks see the command on the wire, in place

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
        faults = [k.label for k in FaultKind if self._fault_active & BIT[k]]
        degr = [k.label for k in FaultKind if self._suspect & BIT[k]]
        return faults, degr

    @property
    def has_events(self) -> bool:
        """Fault records not drained yet (any thread may ask: two counters compared), so a
        reader with nothing to drain need not call into the loop's thread."""
        return self._ev_tail != self._ev_head

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
        self._watchdogs.reset_streaks()
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
        self._watchdogs.state = self._state
        fault, suspect = self._watchdogs.evaluate(requested_nm, estimate_nm, inputs, now)
        rising = fault & ~self._fault_active
        self._fault_active = fault
        self._suspect = suspect
        if rising:
            value = self._watchdogs.value
            for k in range(N_KINDS):
                if rising & BIT[k]:
                    self._record(k, value[k], now)
        self._last_eval_t = now
        self._last_eval_clean = not (fault or suspect)

        if self._estop_t == self._estop_t:  # not NaN: an e-stop to process
            self._record(FaultKind.ESTOP, 0.0, self._estop_t)
            self._estop_t = math.nan
            self._state = SafetyState.ESTOP

        state = self._state
        if state in (_NORMAL, _DEGRADED):
            if fault:
                state = _SAFE_STOP
                self._t_stop = now
                np.copyto(self._stop_from, self._prev)
            elif suspect:
                state = _DEGRADED
            else:
                state = _NORMAL

        if state >= _LATCHED:
            out.fill(0.0)
            moving = False
        else:
            moving = self._command(state, requested_nm, inputs, now, out)

        if self._estop_t == self._estop_t:  # an e-stop arrived while we computed
            out.fill(0.0)
            moving = False
            state = _ESTOP
        np.copyto(self._prev, out)
        if state == _DEGRADED:
            self.degraded_ticks += 1
        if not moving:
            if state == _SAFE_STOP:
                state = _LATCHED
            if self._ev_pending < self._ev_tail:
                self._complete(now)
        if self._state != _ESTOP or state == _ESTOP:
            self._state = state
        return out

    # -- internals -------------------------------------------------------------------------
    def _command(
        self, state: int, req: np.ndarray, inp: SafetyInputs, now: float, out: np.ndarray
    ) -> bool:
        """Write each joint's command into ``out``; True if any is non-zero."""
        ang, vel, prev, stop_from = inp.angles, inp.velocities, self._prev, self._stop_from
        tmax, rate, amin, amax, vlim = self._tmax, self._rate, self._amin, self._amax, self._vlim
        inv_fade = self._inv_fade
        isfinite = math.isfinite
        frac = 0.0
        if state == _SAFE_STOP:  # |command| <= |stop_from| * frac, frac hitting 0 one tick early
            frac = 1.0 - (now - self._t_stop + self._dt) / self._ramp_s
            if frac < 1e-9:  # also absorbs rounding in the time arithmetic
                frac = 0.0
        moving = False
        for i in self._index:
            # Hard bounds lo <= 0 <= hi. Range of motion: a push towards an end fades
            # linearly to zero over the last rom_fade_rad; an unknown (NaN) angle allows none.
            tm, a = tmax[i], ang.item(i)
            s = (amax[i] - a) * inv_fade
            s_hi = 1.0 if s > 1.0 else (s if s > 0.0 else 0.0)
            s = (a - amin[i]) * inv_fade
            s_lo = 1.0 if s > 1.0 else (s if s > 0.0 else 0.0)
            # Velocity: no torque in the direction of motion above the limit; a velocity that
            # is not finite is unknown and allows none either way.
            v, vl = vel.item(i), vlim[i]
            known = isfinite(v)
            if not (known and v <= vl):
                s_hi = 0.0
            if not (known and v >= -vl):
                s_lo = 0.0
            hi, lo = tm * s_hi, -(tm * s_lo)
            p = prev.item(i)
            if state == _SAFE_STOP:
                env = abs(stop_from.item(i)) * frac
                o = p if p < env else env
                if o < -env:
                    o = -env
            else:
                if state == _NORMAL:
                    # the fade as a proportional scale: hi/tmax for pushes towards the upper
                    # end, lo/-tmax towards the lower end
                    r = req.item(i)
                    t = r * (hi / tm if r > 0.0 else -lo / tm)
                else:  # DEGRADED: hold assistance down, at the rate limit
                    t = 0.0
                if t != t:  # NaN: nothing non-finite leaves this layer
                    o = 0.0
                else:  # rate limit: [prev - r, prev + r]
                    step = rate[i]
                    o = t if t > p - step else p - step
                    if o > p + step:
                        o = p + step
            # Hard bounds last: they contain 0, so clipping only ever moves towards zero.
            if o < lo:
                o = lo
            if o > hi:
                o = hi
            if not isfinite(o):  # belt and braces
                o = 0.0
            out[i] = o
            if o != 0.0:
                moving = True
        return moving

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
            fault = LAYER_FAULTS[int(self._ev_kind[j])]
            tz = float(self._ev_zero[j])
            out.append(
                FaultEvent(
                    kind=fault.event,
                    detail=fault.detail(float(self._ev_value[j]), self._cfg, self._names),
                    t_detected=float(self._ev_det[j]),
                    t_zero=None if i >= self._ev_pending or tz != tz else tz,
                )
            )
        self._ev_head = end
        if self._ev_pending < end:
            self._ev_pending = end
        return out
