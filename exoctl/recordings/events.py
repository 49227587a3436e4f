"""Recorded events in plain words: what happened, and for a fault its likely cause.

The recording keeps what the software knew (``{"kind": "telemetry_stale", "detail": "newest
telemetry 0.101 s old > telemetry_timeout_s 0.1 s", ...}``); a clinician needs "the
exoskeleton stopped reporting its state: check its cable". The technical text stays
available beside the plain one (reports show it in small print, exports in ``detail_json``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# Fault kinds of the safety layer (and the daemon's own), each with a title and a likely cause.
FAULTS: dict[str, tuple[str, str]] = {
    "emg_stale": (
        "EMG signal interrupted",
        "no new muscle signal arrived in time: check the EMG receiver and its connection",
    ),
    "emg_channel": (
        "EMG electrode problem",
        "one muscle signal was flat or saturated: check that electrode's skin contact",
    ),
    "telemetry_stale": (
        "Exoskeleton stopped reporting",
        "no status from the exoskeleton in time: check its cable and power",
    ),
    "telemetry_invalid": (
        "Invalid joint sensor reading",
        "a joint angle or speed reading was not valid: check the joint sensors",
    ),
    "model_output": (
        "Implausible torque estimate",
        "the estimated torque was invalid or far too large: check the EMG electrodes and "
        "the calibration",
    ),
    "overrun": (
        "Controller fell behind",
        "the control computer missed its deadlines repeatedly (it was overloaded)",
    ),
    "firmware_fault": (
        "Exoskeleton reported a fault",
        "the exoskeleton's motor controller reported its own fault",
    ),
    "link_down": (
        "Connection to the exoskeleton lost",
        "the computer lost contact with the exoskeleton: check its cable and power",
    ),
    "estop": ("Emergency stop", "the emergency stop was used"),
    "actuators_off": (
        "Exoskeleton motors switched off",
        "the exoskeleton turned its motors off by itself (restart or its own protection)",
    ),
    "recording_stalled": (
        "Recording failed",
        "the session's data could not be written to disk (disk full or failing), and no "
        "assistance runs unrecorded: free space on the data disk, or stop the session",
    ),
    "emg_source": (
        "EMG signal refused",
        "after an interruption the muscle signal came back from another device or computer: "
        "it was not used. Check the EMG receiver, then restart the exoskeleton software",
    ),
    "control_loop_died": (
        "Controller stopped",
        "the control program stopped unexpectedly; the session was ended",
    ),
}


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


def describe(event: dict[str, Any]) -> Described:
    """One recorded event (``{"t", "kind", "detail"}``) in plain words."""
    kind, d = event["kind"], event.get("detail")
    d = d if isinstance(d, dict) else {}
    if kind == "fault" and d.get("kind") == "estop":  # the safety layer's own record of it
        return Described("estop", "Emergency stop", "Emergency stop applied by the safety "
                         "layer: torque removed.", "fault", str(d.get("detail") or ""))  # fmt: skip
    if kind == "fault":
        fk = str(d.get("kind", "fault"))
        title, cause = FAULTS.get(fk, (fk.replace("_", " ").capitalize(), "see the detail"))
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
    text = kind.replace("_", " ").capitalize()
    return Described(kind, text, text + ".", "info")
