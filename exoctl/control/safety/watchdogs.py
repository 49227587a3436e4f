"""The watchdogs on every input: the fault records' checks, evaluated each tick.

The rows are the records of ``faults`` that have a check, in bit order; each row is read once,
at construction, into (bit, check, threshold, persistence) with the thresholds as floats from the
configuration, so a tick only calls the checks and keeps the persistent rows' streaks. What a
check answers (OK, DEGRADED, FAULT, BAD) and what persistence means is described in ``faults``.
"""

from __future__ import annotations

import math

import numpy as np

from exoctl.config.schema import SafetyConfig
from exoctl.control.safety.faults import (
    BAD,
    BIT,
    DEGRADED,
    FAULT,
    LAYER_FAULTS,
    N_KINDS,
    Check,
)
from exoctl.control.safety.inputs import SafetyInputs, SafetyState

_NAN = math.nan


def _key(cfg: SafetyConfig, key: str | None) -> float | None:
    return None if key is None else float(getattr(cfg, key))


class Watchdogs:
    """Evaluates the table each tick; keeps the persistent rows' streaks."""

    def __init__(self, cfg: SafetyConfig) -> None:
        # bit, check, threshold (0.0 if none), persistence (None: the check decides itself)
        self.table: tuple[tuple[int, Check, float, float | None], ...] = tuple(
            (int(f.kind), f.check, _key(cfg, f.threshold) or 0.0, _key(cfg, f.persist))
            for f in LAYER_FAULTS
            if f.check is not None
        )
        # The table split for the tick: rows whose check answers by itself, then the persistent
        # ones; each with its bit, so that a tick does one test per OK answer (the usual one).
        self._plain = tuple((k, BIT[k], c, lim) for k, c, lim, p in self.table if p is None)
        self._persistent = tuple(
            (k, BIT[k], c, lim, p) for k, c, lim, p in self.table if p is not None
        )
        self.state = SafetyState.NORMAL  # the layer's state before this tick (set by the layer)
        # The command the layer wrote last tick, the one on the wire (the layer hands in its
        # own array, updated in place; zeros until then).
        self.sent = np.zeros(0)
        self.since = [_NAN] * N_KINDS  # start of the current streak of a persistent row
        self.value = [0.0] * N_KINDS  # the offending value of each kind's last fault
        self.value_now = 0.0  # the value a check that answered FAULT or BAD left

    def evaluate(
        self, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, now: float
    ) -> tuple[int, int]:
        """(fault bitmask, degraded bitmask) of this tick's inputs."""
        fault = suspect = 0
        for k, bit, check, limit in self._plain:
            level = check(self, req, est, inp, limit)
            if level:  # OK is 0
                if level == FAULT:
                    fault |= bit
                    self.value[k] = self.value_now
                elif level == DEGRADED:
                    suspect |= bit
        since = self.since
        for k, bit, check, limit, persist in self._persistent:
            level = check(self, req, est, inp, limit)
            if level == BAD:
                start = since[k]
                if start != start:  # NaN: the streak starts now
                    since[k] = start = now
                level = FAULT if now - start >= persist else DEGRADED
            else:
                since[k] = _NAN
            if level == FAULT:
                fault |= bit
                self.value[k] = self.value_now
            elif level == DEGRADED:
                suspect |= bit
        return fault, suspect

    def reset_streaks(self) -> None:
        for k in range(N_KINDS):
            self.since[k] = _NAN
