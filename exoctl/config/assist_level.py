"""The assistance level: the fraction of the patient's estimated joint torque the exoskeleton
adds, in [0, 1]. The range and its one check, for every place that takes a level: the
configuration (``control.assist_gain``), the CLI, the daemon's RPC, the controller and the
assist law. No exoctl imports here, so the configuration schema can use it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

ASSIST_MIN = 0.0
ASSIST_MAX = 1.0


class AssistLevelError(ValueError):
    """A level that is not a number within [ASSIST_MIN, ASSIST_MAX]; the message says which."""


def check_level(value: object, joint: str | None = None) -> float:
    """``value`` as a float within [0, 1], else AssistLevelError (NaN and booleans included)."""
    of = f" for {joint}" if joint else ""
    if isinstance(value, bool):
        v = math.nan
    else:
        try:
            v = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            v = math.nan
            if not isinstance(value, int | float):
                raise AssistLevelError(
                    f"assist level{of} must be a number within [{ASSIST_MIN:g}, {ASSIST_MAX:g}], "
                    f"got {value!r}"
                ) from None
    if not ASSIST_MIN <= v <= ASSIST_MAX:  # also NaN
        raise AssistLevelError(
            f"assist level{of} must be within [{ASSIST_MIN:g}, {ASSIST_MAX:g}], got {value!r}"
        )
    return v


def check_levels(value: object, joints: Iterable[str] | None = None) -> float | dict[str, float]:
    """One level for every joint (a number) or ``{joint: level}``; with ``joints``, a name
    that is not one of them is refused too. An empty mapping is refused: it names no joint,
    and a change that names none must not be mistaken for "every joint to its default"."""
    if isinstance(value, Mapping):
        known = None if joints is None else list(joints)
        if not value:
            raise AssistLevelError(
                "name at least one joint ({joint: level}) or give one level for every joint"
            )
        out: dict[str, float] = {}
        for k, v in value.items():
            if known is not None and k not in known:
                raise AssistLevelError(f"unknown joint {k!r}; joints are {known}")
            out[str(k)] = check_level(v, str(k))
        return out
    if isinstance(value, str | bytes) or not isinstance(value, int | float):
        raise AssistLevelError(
            f"assist level must be a number within [{ASSIST_MIN:g}, {ASSIST_MAX:g}] or "
            f"{{joint: number}}, got {value!r}"
        )
    return check_level(value)
