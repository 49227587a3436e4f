"""Recorded events in plain words: what happened, and for a fault its likely cause.

The recording keeps what the software knew (``{"kind": "telemetry_stale", "detail": "newest
telemetry 0.101 s old > telemetry_timeout_s 0.1 s", ...}``); a clinician needs "the
exoskeleton stopped reporting its state: check its cable". The technical text stays
available beside the plain one (reports show it in small print, exports in ``detail_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from exoctl.control.safety.faults import BY_EVENT


@dataclass(frozen=True)
class Described:
    """An event for people: ``severity`` is fault, warning, action (a person's) or info."""

    kind: str
    title: str
    text: str
    severity: str
    technical: str = ""


def percent(g: float) -> str:
    return f"{100 * float(g):.0f} %"


def gains_text(gains: Any) -> str:
    """``{"hip_l": .5, "hip_r": .5, "knee_l": .3, "knee_r": .3}`` -> "hips 50 %, knees 30 %"."""
    if isinstance(gains, int | float):
        return f"all joints {percent(gains)}"
    if not isinstance(gains, dict) or not gains:
        return "unchanged"
    values = {float(v) for v in gains.values()}
    if len(values) == 1:
        return f"all joints {percent(values.pop())}"
    groups: dict[str, dict[str, float]] = {}
    for joint, g in gains.items():
        base, _, side = str(joint).rpartition("_")
        groups.setdefault(base or str(joint), {})[side] = float(g)
    parts = []
    for base, sides in groups.items():
        if len(set(sides.values())) == 1 and len(sides) > 1:
            parts.append(f"{base}s {percent(next(iter(sides.values())))}")
        else:
            parts += [f"{base} {s.upper()} {percent(g)}" for s, g in sides.items()]
    return ", ".join(parts)


def fault_words(kind: str) -> tuple[str, str]:
    """(title, likely cause) of a fault kind in plain words, from its record (``faults``); a
    kind no record names (a recording made by another version) reads as its name."""
    f = BY_EVENT.get(kind)
    if f is None:
        return kind.replace("_", " ").capitalize(), "see the detail"
    return f.title, f.cause


def describe(event: dict[str, Any]) -> Described:
    """One recorded event (``{"t", "kind", "detail"}``) in plain words."""
    kind, d = event["kind"], event.get("detail")
    d = d if isinstance(d, dict) else {}
    if kind == "fault" and d.get("kind") == "estop":  # the safety layer's own record of it
        title = fault_words("estop")[0]
        return Described("estop", title, f"{title} applied by the safety layer: torque "
                         "removed.", "fault", str(d.get("detail") or ""))  # fmt: skip
    if kind == "fault":
        fk = str(d.get("kind", "fault"))
        title, cause = fault_words(fk)
        return Described(fk, title, f"{title}: {cause}. Assistance stopped.", "fault",
                         str(d.get("detail") or ""))  # fmt: skip
    if kind == "estop":
        src = d.get("source")
        via = " from the control software" if src == "rpc" else f" ({src})" if src else ""
        return Described(kind, "Emergency stop", f"Emergency stop pressed{via}: assistance off "
                         "until a person clears it.", "fault")  # fmt: skip
    if kind == "fault_clear":
        return Described(kind, "Fault cleared", "Cleared by the clinician: assistance resumes "
                         "(ramped in).", "action")  # fmt: skip
    if kind == "session_start":
        return Described(kind, "Session started",
                         f"Session started, assistance {gains_text(d.get('gains'))}.", "action")  # fmt: skip
    if kind == "session_stop":
        return Described(kind, "Session stopped", f"Session stopped ({d.get('reason', '-')}).",
                         "action")  # fmt: skip
    if kind == "assist_change":
        return Described(kind, "Assistance changed",
                         f"Assistance set to {gains_text(d.get('gains'))}.", "action")  # fmt: skip
    if kind == "recorder_overflow":
        return Described(kind, "Recording gap", f"{d.get('dropped', '?')} blocks of data were "
                         "not recorded (the computer was busy).", "warning")  # fmt: skip
    if kind == "emg_record_gap":
        return Described(kind, "EMG recording gap", f"{d.get('samples', '?')} EMG samples were "
                         "not recorded (the computer was busy).", "warning")  # fmt: skip
    if kind == "estimator_restart":
        done = "was restarted" if d.get("restarted") else "could not be restarted"
        return Described(kind, "Estimator restarted", f"The torque estimator stopped and {done}; "
                         "assistance stays off until a person clears the fault.", "warning",
                         str(d.get("detail") or d.get("reason") or ""))  # fmt: skip
    text = kind.replace("_", " ").capitalize()
    return Described(kind, text, text + ".", "info")
