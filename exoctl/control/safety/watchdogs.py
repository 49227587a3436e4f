"""The watchdogs on every input, as a table: one row per fault kind, one check per row.

Each check looks at this tick's inputs and answers OK, DEGRADED, FAULT or BAD. BAD is the
answer of a *persistent* watchdog (its row names a persistence time): the condition is bad
now, and it becomes a FAULT once it has been bad without a break for that long, a DEGRADED
tick until then (a single spike never trips it, a real fault always does). A check that
answers FAULT or BAD leaves the offending value in ``value`` for the event's detail.

The rows, their thresholds and their values are those of the package docstring
(``exoctl.control.safety``). Checks read arrays one element at a time (``item``): a handful of
joints costs a few hundred nanoseconds, and nothing allocated grows with their number.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from exoctl.config.schema import SafetyConfig
from exoctl.control.safety.inputs import BIT, N_KINDS, FaultKind, SafetyInputs, SafetyState

OK, DEGRADED, FAULT, BAD = 0, 1, 2, 3
_NAN = math.nan

Check = Callable[[np.ndarray, np.ndarray, SafetyInputs], int]


def _first_not_finite(a: np.ndarray) -> int:
    """Index of the first element that is NaN or infinite, -1 if none. (Iterating the array's memoryview
    makes no int per element: with thousands of joints that is where the time would go.)"""
    for x in a.data:
        if not math.isfinite(x):
            return _index_of(a, lambda v: not math.isfinite(v))
    return -1


def _first_implausible(a: np.ndarray, limit: float) -> int:
    """Index of the first element with |x| > limit or NaN, -1 if none."""
    for x in a.data:
        if not abs(x) <= limit:
            return _index_of(a, lambda v: not abs(v) <= limit)
    return -1


def _index_of(a: np.ndarray, bad: Callable[[float], bool]) -> int:
    for i, x in enumerate(a.data):  # the rare path: a bad value is there
        if bad(x):
            return i
    return -1


class Watchdogs:
    """Evaluates the table each tick; keeps the persistent rows' streaks."""

    def __init__(self, cfg: SafetyConfig) -> None:
        self.emg_to = float(cfg.emg_timeout_s)
        self.tel_to = float(cfg.telemetry_timeout_s)
        self.model_to = float(cfg.model_fault_s)
        self.plausible = float(cfg.max_plausible_torque_nm)
        self.recording_to = float(cfg.recording_timeout_s)
        self.max_streak = int(cfg.max_overrun_streak)
        self.degraded_streak = max(1, self.max_streak // 2)
        K = FaultKind
        # kind, check, persistence (None: the check decides FAULT/DEGRADED itself)
        self.table: tuple[tuple[int, Check, float | None], ...] = (
            (K.EMG_STALE, self._emg_stale, None),
            (K.EMG_CHANNEL, self._emg_channel, self.emg_to),
            (K.TELEMETRY_STALE, self._telemetry_stale, None),
            (K.TELEMETRY_INVALID, self._telemetry_invalid, self.tel_to),
            (K.MODEL_OUTPUT, self._model_output, self.model_to),
            (K.OVERRUN, self._overrun, None),
            (K.FIRMWARE_FAULT, self._firmware_fault, None),
            (K.LINK_DOWN, self._link_down, None),
            (K.ACTUATORS_OFF, self._actuators_off, self.tel_to),
            (K.RECORDING_STALLED, self._recording_stalled, None),
        )
        self.state = SafetyState.NORMAL  # the layer's state before this tick (set by the layer)
        self.since = [_NAN] * N_KINDS  # start of the current streak of a persistent row
        self.value = [0.0] * N_KINDS  # the offending value of each kind's last fault
        self._v = 0.0  # the value a check that answered FAULT or BAD left

    def evaluate(
        self, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, now: float
    ) -> tuple[int, int]:
        """(fault bitmask, degraded bitmask) of this tick's inputs."""
        fault = suspect = 0
        since = self.since
        for k, check, persist in self.table:
            level = check(req, est, inp)
            if persist is not None:
                if level == BAD:
                    start = since[k]
                    if start != start:  # NaN: the streak starts now
                        since[k] = start = now
                    level = FAULT if now - start >= persist else DEGRADED
                else:
                    since[k] = _NAN
            if level == FAULT:
                fault |= BIT[k]
                self.value[k] = self._v
            elif level == DEGRADED:
                suspect |= BIT[k]
        return fault, suspect

    def reset_streaks(self) -> None:
        for k in range(N_KINDS):
            self.since[k] = _NAN

    # -- the checks ------------------------------------------------------------------------
    def _stale(self, age: float, timeout: float) -> int:
        if not age <= timeout:  # NaN counts as stale
            self._v = age
            return FAULT
        return DEGRADED if age > 0.5 * timeout else OK

    def _emg_stale(self, req, est, inp: SafetyInputs) -> int:
        return self._stale(inp.emg_age_s, self.emg_to)

    def _telemetry_stale(self, req, est, inp: SafetyInputs) -> int:
        return self._stale(inp.telemetry_age_s, self.tel_to)

    def _emg_channel(self, req, est, inp: SafetyInputs) -> int:
        flags = inp.emg_flat_or_saturated
        if flags is not None and flags.any():
            self._v = float(flags.argmax())
            return BAD
        return OK

    def _telemetry_invalid(self, req, est, inp: SafetyInputs) -> int:
        i = _first_not_finite(inp.angles)
        if i < 0:
            i = _first_not_finite(inp.velocities)
        if i < 0:
            return OK
        self._v = float(i)
        return BAD

    def _model_output(self, req: np.ndarray, est: np.ndarray, inp) -> int:
        i = _first_implausible(est, self.plausible)
        if i >= 0:
            self._v = est.item(i)
            return BAD
        i = _first_implausible(req, self.plausible)
        if i >= 0:
            self._v = req.item(i)
            return BAD
        return OK

    def _overrun(self, req, est, inp: SafetyInputs) -> int:
        streak = inp.overrun_streak
        if streak >= self.max_streak:
            self._v = float(streak)
            return FAULT
        return DEGRADED if streak >= self.degraded_streak else OK

    def _firmware_fault(self, req, est, inp: SafetyInputs) -> int:
        if inp.firmware_fault_bits:
            self._v = float(inp.firmware_fault_bits)
            return FAULT
        return OK

    def _link_down(self, req, est, inp: SafetyInputs) -> int:
        if not inp.link_healthy:
            self._v = 0.0
            return FAULT
        return OK

    def _recording_stalled(self, req, est, inp: SafetyInputs) -> int:
        # No degraded level: the writer commits every flush interval, so until the timeout
        # an old commit is normal, and past it the data is lost (NaN counts as lost too).
        age = inp.recording_age_s
        if not age <= self.recording_to:
            self._v = age
            return FAULT
        return OK

    def _actuators_off(self, req: np.ndarray, est, inp: SafetyInputs) -> int:
        # Assistance requested while the device's actuators are off: a firmware reboot or a
        # lost session that re-handshakes too fast to show as an unhealthy link. Brief during
        # an enable handshake (a clear during a session), so it persists before it faults.
        if inp.actuators_enabled:
            return OK
        for x in req.data:
            if x != 0.0:
                if self.state == SafetyState.ESTOP:
                    # The host switched them off itself (Controller.estop): no device fault to
                    # report, but not healthy either, so a clear waits until they are on again.
                    return DEGRADED
                self._v = 0.0
                return BAD
        return OK
