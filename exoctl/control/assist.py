"""Assist law: per-joint assist ratio x estimated patient torque, smoothed and ramped.

Why it looks like this:

* The exoskeleton adds a *fraction* of the torque the patient is estimated to produce
  (``control.assist_gain``), so assistance follows intent and vanishes when the patient relaxes.
* Sudden steps of assistance are felt as a kick. Every change is therefore ramped: the session
  factor ramps 0 -> 1 over ``ramp_in_s`` when a session starts and back to 0 over
  ``ramp_out_s`` when it stops; an assist-level change ramps from the level in force to the new
  level over ``ramp_in_s`` (raising) or ``ramp_out_s`` (lowering).
* An optional first-order low-pass (``smoothing_hz``) removes estimator jitter that the
  patient would feel as buzz.
* An estimate that is NaN, infinite or beyond ``max_input_nm`` is not fed into the filter
  (it would poison its state for seconds); that joint's request is zero for the tick and its
  filter restarts from zero. Reporting the bad estimate is the safety layer's job: it sees the
  raw estimate too and removes assistance.
* ``update`` runs once per control tick and allocates no arrays: the per-joint state lives in
  arrays made in ``__init__``, and the arithmetic is done on Python floats read one element
  at a time (``ndarray.item``): for a handful of joints numpy's per-call overhead (~0.5-1 us a
  call, ~15 calls) was the whole cost.

This module never limits torque; the safety layer (:mod:`exoctl.control.safety`) is the last stage and
nothing bypasses it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from exoctl.config.assist_level import check_level
from exoctl.config.schema import ControlConfig


class AssistLaw:
    """Per-joint gain x estimate, optional low-pass, session ramp and assist-level ramps.

    Per-joint arrays are in ``joints`` order (the configuration's ``device.joints`` order).
    Not thread-safe: call every method from the control-loop thread (or serialise them).
    """

    def __init__(
        self,
        joints: tuple[str, ...],
        control: ControlConfig,
        rate_hz: float,
        *,
        max_input_nm: float = 1000.0,
    ) -> None:
        joints = tuple(joints)
        if not joints:
            raise ValueError("AssistLaw needs at least one joint")
        if len(set(joints)) != len(joints):
            raise ValueError(f"joint names must be unique, got {list(joints)}")
        if not (math.isfinite(rate_hz) and rate_hz > 0):
            raise ValueError(f"rate_hz must be a positive number, got {rate_hz!r}")
        if not (math.isfinite(max_input_nm) and max_input_nm > 0):
            raise ValueError(f"max_input_nm must be a positive number, got {max_input_nm!r}")
        missing = [j for j in joints if j not in control.assist_gain]
        if missing:
            raise ValueError(
                f"control.assist_gain has no gain for joint(s) {missing}; it names "
                f"{sorted(control.assist_gain)}"
            )
        n = len(joints)
        self._joints = joints
        self._index = {j: i for i, j in enumerate(joints)}
        self._n = n
        self._order = list(range(n))  # made once: iterating a range makes an int per joint
        self._dt = 1.0 / float(rate_hz)
        self._ramp_in_s = float(control.ramp_in_s)
        self._ramp_out_s = float(control.ramp_out_s)
        self._max_input = float(max_input_nm)

        # Low-pass: y += alpha (x - y), alpha = 1 - exp(-2 pi fc dt) (exact for a first-order
        # continuous filter sampled at the loop rate). None = no smoothing.
        fc = control.smoothing_hz
        self._alpha = None if fc is None else 1.0 - math.exp(-2.0 * math.pi * fc * self._dt)

        # Assist levels: each joint ramps linearly from _g_from to _g_to over _g_dur from _g_t0.
        # (joints were checked against assist_gain's keys above; the key type is JointName)
        g = np.array([float(control.assist_gain[j]) for j in joints], dtype=np.float64)  # type: ignore[index]
        self._g_from = g.copy()
        self._g_to = g.copy()
        self._g_t0 = np.zeros(n)
        self._g_inv_dur = np.zeros(n)  # 1/duration; 0 means "already at _g_to"
        self._g_now = g.copy()

        # Session factor s in [0, 1]: s(t) = clip(s0 + dir * (t - t0) * rate, 0, 1).
        self._s0 = 0.0
        self._s_t0 = 0.0
        self._s_dir = -1.0
        self._s_rate = math.inf
        self._active = False

        self._y = np.zeros(n)  # filter state

    # -- session ---------------------------------------------------------------------------
    @property
    def joints(self) -> tuple[str, ...]:
        return self._joints

    @property
    def active(self) -> bool:
        """True between ``start`` and ``stop`` (assistance ramping in or fully on)."""
        return self._active

    def session_factor(self, now: float) -> float:
        """The session ramp factor in [0, 1] at time ``now``."""
        if self._s_rate == math.inf:
            return 1.0 if self._s_dir > 0 else 0.0
        s = self._s0 + self._s_dir * (now - self._s_t0) * self._s_rate
        return 0.0 if s <= 0.0 else (1.0 if s >= 1.0 else s)

    def start(self, now: float) -> None:
        """Start (or resume) assistance: the session factor ramps up at 1/ramp_in_s per second.

        Starting from a partly ramped-out state continues from where the factor is, so a quick
        stop/start never steps the torque.
        """
        self._set_session(now, +1.0, self._ramp_in_s)
        self._active = True

    def stop(self, now: float) -> None:
        """Stop assistance: the session factor ramps down to 0 at 1/ramp_out_s per second."""
        self._set_session(now, -1.0, self._ramp_out_s)
        self._active = False

    def _set_session(self, now: float, direction: float, ramp_s: float) -> None:
        now = _check_time(now)
        s = self.session_factor(now)
        self._s0 = s
        self._s_t0 = now
        self._s_dir = direction
        self._s_rate = math.inf if ramp_s <= 0.0 else 1.0 / ramp_s
        if self._s_rate == math.inf:
            self._s0 = 1.0 if direction > 0 else 0.0

    # -- assist level ----------------------------------------------------------------------
    @property
    def gains(self) -> dict[str, float]:
        """The target assist level of each joint (what ``set_gain`` last asked for)."""
        return {j: float(self._g_to[i]) for i, j in enumerate(self._joints)}

    def gains_at(self, now: float) -> dict[str, float]:
        """The assist level in force at ``now`` (mid-ramp values included)."""
        self._gain_now(now)
        return {j: float(self._g_now[i]) for i, j in enumerate(self._joints)}

    def set_gain(self, gains: Mapping[str, float], now: float) -> None:
        """Change the assist level of some joints; each ramps from its level in force.

        Raising ramps over ``ramp_in_s``, lowering over ``ramp_out_s``. Joints not named keep
        their level. Raises ValueError (nothing changed) on an unknown joint or a gain outside
        [0, 1].
        """
        now = _check_time(now)
        updates: list[tuple[int, float]] = []
        for name, value in gains.items():
            if name not in self._index:
                raise ValueError(f"unknown joint {name!r}; joints are {list(self._joints)}")
            updates.append((self._index[name], check_level(value, name)))
        self._gain_now(now)
        for i, v in updates:
            current = float(self._g_now[i])
            ramp_s = self._ramp_in_s if v > current else self._ramp_out_s
            self._g_from[i] = current
            self._g_to[i] = v
            self._g_t0[i] = now
            self._g_inv_dur[i] = 0.0 if ramp_s <= 0.0 or v == current else 1.0 / ramp_s

    def _gain(self, i: int, now: float) -> float:
        """The level of joint ``i`` at ``now``: a linear ramp from _g_from to _g_to."""
        g_from = self._g_from.item(i)
        inv = self._g_inv_dur.item(i)
        if inv == 0.0:  # settled
            frac = 1.0
        else:
            frac = (now - self._g_t0.item(i)) * inv
            frac = 0.0 if frac < 0.0 else (1.0 if frac > 1.0 else frac)
        return (self._g_to.item(i) - g_from) * frac + g_from

    def _gain_now(self, now: float) -> np.ndarray:
        """Fill ``_g_now`` with the per-joint level at ``now`` (off the hot path)."""
        for i in range(self._n):
            self._g_now[i] = self._gain(i, now)
        return self._g_now

    # -- per tick --------------------------------------------------------------------------
    def update(self, estimate_nm: np.ndarray, now: float, out: np.ndarray) -> np.ndarray:
        """Write the requested assist torque (N m, joint order) into ``out`` and return it.

        ``estimate_nm`` is the torque model's raw output for this tick; it is not modified.
        """
        s = self.session_factor(now)
        alpha, limit, y = self._alpha, self._max_input, self._y
        for i in self._order:
            e = estimate_nm.item(i)
            # Sanitise: non-finite or implausible inputs count as zero and reset the filter.
            ok = abs(e) <= limit  # False for NaN too
            x = e if ok else 0.0
            if alpha is not None:
                yi = y.item(i) if ok else 0.0
                x = yi + (x - yi) * alpha
                y[i] = x
            o = x * self._gain(i, now)
            out[i] = o * s if s != 1.0 else o
        return out

    def reset_filter(self) -> None:
        """Forget the smoothing state (e.g. after a latched fault is cleared)."""
        self._y.fill(0.0)


def _check_time(now: float) -> float:
    now = float(now)
    if not math.isfinite(now):
        raise ValueError(f"time must be finite, got {now!r}")
    return now
