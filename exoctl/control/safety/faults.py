"""Every fault kind, one record each: what detects it and how it reads to people.

A record (:class:`Fault`) holds all there is to know about one kind: its bit (the
:class:`FaultKind` member, whose label is the event name in recordings), its check (a function of
this tick's inputs), the ``SafetyConfig`` key of the check's threshold and of its persistence time,
the technical detail of an event, the rule as the package docstring states it, and the title and
likely cause a clinician reads. The watchdogs (``watchdogs``), the layer's events (``layer``), the
package docstring (``exoctl.control.safety``), the plain-words events and the session report
(``exoctl.recordings.events``, ``exoctl.recordings.report``) all read this table; none of them
keeps a list of kinds of its own. A new watchdog is a member of ``FaultKind``, a check and a
record here, plus its threshold (one key of ``SafetyConfig``) if it has one. What it reads is
already there: ``SafetyInputs`` carries what the loop measures each tick (the ages of its inputs,
the overrun streak, the link's view) and the whole newest telemetry frame (``inputs.telemetry``:
anything the device reports), and ``Watch.sent`` is the command the device was sent.

A check answers OK, DEGRADED, FAULT or BAD from this tick's inputs and its threshold. BAD is the
answer of a *persistent* watchdog (its record names a persistence time): the condition is bad
now, and it becomes a FAULT once it has been bad without a break for that long, a DEGRADED tick
until then (a single spike never trips it, a real fault always does). A check that answers FAULT
or BAD leaves the offending value in ``wd.value_now`` for the event's detail. Checks run on the
hot path: they read arrays one element at a time (``item``, a memoryview), allocate nothing that
grows with the number of joints, and log nothing.
"""

from __future__ import annotations

import enum
import math
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from exoctl.config.schema import SafetyConfig
from exoctl.control.safety.inputs import SafetyInputs, SafetyState

OK, DEGRADED, FAULT, BAD = 0, 1, 2, 3
_INF = math.inf


class FaultKind(enum.IntEnum):
    """The safety layer's fault kinds; the value is the kind's bit in the layer's masks."""

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
    RECORDING_STALLED = 10
    EMG_SOURCE = 11
    ESTIMATE_STALE = 12
    JOINT_OVERSPEED = 13

    @property
    def label(self) -> str:
        """The kind's name in events and recordings."""
        return self.name.lower()


N_KINDS = len(FaultKind)
BIT = [1 << k for k in range(N_KINDS)]


class Watch(Protocol):
    """What a check may touch of the watchdogs: where it leaves the offending value, the
    layer's state before this tick, and the command the layer wrote last tick (the one the
    device was sent: compare it with ``inputs.telemetry.torques`` to see it followed)."""

    value_now: float
    state: SafetyState
    sent: np.ndarray


Check = Callable[[Watch, np.ndarray, np.ndarray, SafetyInputs, float], int]
"""``check(wd, requested, estimate, inputs, threshold) -> OK | DEGRADED | FAULT | BAD``."""
Detail = Callable[[float, SafetyConfig, Sequence[str]], str]
"""``detail(value, config, joint names) -> text``: an event's technical detail."""


@dataclass(frozen=True, slots=True)
class Fault:
    """One fault kind: its detection, its event, and its words for people."""

    kind: FaultKind | str
    """The layer's kind (its bit), or the event name of a fault recorded outside the layer."""
    title: str
    """A few plain words for the clinician ("EMG signal interrupted")."""
    cause: str
    """The likely cause and what to check, in plain words."""
    detail: Detail
    rule: str = ""
    """The watchdog's rule as the package docstring lists it (empty: not a watchdog)."""
    check: Check | None = None
    threshold: str | None = None
    """The ``SafetyConfig`` key the check compares against (passed to it as a float)."""
    persist: str | None = None
    """The ``SafetyConfig`` key of the time a BAD answer must last to be a FAULT (None: the
    check answers FAULT or DEGRADED itself)."""

    @property
    def event(self) -> str:
        """The kind's name in events and recordings."""
        return self.kind.label if isinstance(self.kind, FaultKind) else self.kind


# -- shared pieces of the checks -----------------------------------------------------------------
def _stale(wd: Watch, age: float, timeout: float) -> int:
    """Degraded above half the timeout, a fault above it; NaN counts as stale."""
    if not age <= timeout:
        wd.value_now = age
        return FAULT
    return DEGRADED if age > 0.5 * timeout else OK


def _index_of(a: np.ndarray, bad: Callable[[float], bool]) -> int:
    for i, x in enumerate(a.data):  # the rare path: a bad value is there
        if bad(x):
            return i
    return -1


def _first_not_finite(a: np.ndarray) -> int:
    """Index of the first element that is NaN or infinite, -1 if none. (Iterating the array's
    memoryview makes no int per element: with thousands of joints that is where the time would
    go.)"""
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


# -- the checks, one per watchdog ----------------------------------------------------------------
def emg_stale(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, to: float) -> int:
    return _stale(wd, inp.emg_age_s, to)


def emg_channel(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, _: float) -> int:
    flags = inp.emg_flat_or_saturated
    if flags is not None and np.count_nonzero(flags):  # a C call, where .any() is a ufunc reduce
        wd.value_now = float(flags.argmax())
        return BAD
    return OK


def telemetry_stale(
    wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, to: float
) -> int:
    return _stale(wd, inp.telemetry_age_s, to)


def telemetry_invalid(
    wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, _: float
) -> int:
    i = _first_not_finite(inp.angles)
    if i < 0:
        i = _first_not_finite(inp.velocities)
    if i < 0:
        return OK
    wd.value_now = float(i)
    return BAD


def model_output(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, lim: float) -> int:
    i = _first_implausible(est, lim)
    if i >= 0:
        wd.value_now = est.item(i)
        return BAD
    i = _first_implausible(req, lim)
    if i >= 0:
        wd.value_now = req.item(i)
        return BAD
    return OK


def overrun(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, most: float) -> int:
    streak = inp.overrun_streak
    if streak == 0:
        return OK
    if streak >= most:
        wd.value_now = float(streak)
        return FAULT
    return DEGRADED if streak >= most // 2 else OK  # streak >= 1 here: max(1, most // 2)


def firmware_fault(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, _: float) -> int:
    if inp.firmware_fault_bits:
        wd.value_now = float(inp.firmware_fault_bits)
        return FAULT
    return OK


def link_down(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, _: float) -> int:
    if not inp.link_healthy:
        wd.value_now = 0.0
        return FAULT
    return OK


def actuators_off(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, _: float) -> int:
    # Assistance requested while the device's actuators are off: a firmware reboot or a lost
    # session that re-handshakes too fast to show as an unhealthy link. Brief during an enable
    # handshake (a clear during a session), so it persists before it faults.
    if inp.actuators_enabled:
        return OK
    for x in req.data:
        if x != 0.0:
            if wd.state == SafetyState.ESTOP:
                # The host switched them off itself (Controller.estop): no device fault to
                # report, but not healthy either, so a clear waits until they are on again.
                return DEGRADED
            wd.value_now = 0.0
            return BAD
    return OK


def recording_stalled(
    wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, to: float
) -> int:
    # No degraded level: the writer commits every flush interval, so until the timeout an old
    # commit is normal, and past it the data is lost (NaN counts as lost too).
    age = inp.recording_age_s
    if not age <= to:
        wd.value_now = age
        return FAULT
    return OK


def emg_source(wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, _: float) -> int:
    if inp.emg_source_refused:
        wd.value_now = 0.0
        return FAULT
    return OK


def estimate_stale(
    wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, to: float
) -> int:
    return _stale(wd, inp.estimate_age_s, to)


def joint_overspeed(
    wd: Watch, req: np.ndarray, est: np.ndarray, inp: SafetyInputs, most: float
) -> int:
    # Faster than a person moves a joint: a sensor glitch (the angles and velocities every limit
    # relies on are wrong) or a runaway. NaN and infinity are telemetry_invalid's.
    vel = inp.velocities
    for x in vel.data:
        if most < abs(x) < _INF:
            i = _index_of(vel, lambda v: most < abs(v) < _INF)
            wd.value_now = _joint_and_speed(i, vel.item(i), len(vel))
            return BAD
    return OK


def _joint_and_speed(i: int, v: float, n: int) -> float:
    """One float for an event's value: joint ``i`` of ``n`` and its speed to 0.01 rad/s."""
    return float(round(abs(v) * 100.0) * n + i)


def _overspeed_text(v: float, c: SafetyConfig, names: Sequence[str]) -> str:
    n = len(names)
    speed, i = divmod(int(v), n)
    return (
        f"joint {names[i]} moving at {speed / 100:.2f} rad/s > max_joint_speed_rad_s "
        f"{c.max_joint_speed_rad_s} rad/s for >= {c.telemetry_timeout_s} s"
    )


def _firmware_text(v: float, c: SafetyConfig, names: Sequence[str]) -> str:
    from firmware_bridge.protocol import fault_text  # not the hot path: a message

    return f"firmware reports {fault_text(int(v))}"


# -- the records ---------------------------------------------------------------------------------
LAYER_FAULTS: tuple[Fault, ...] = (
    Fault(
        FaultKind.EMG_STALE,
        "EMG signal interrupted",
        "no new muscle signal arrived in time: check the EMG receiver and its connection",
        lambda v, c, n: f"newest EMG sample {v:.3f} s old > emg_timeout_s {c.emg_timeout_s} s",
        "degraded while the newest EMG sample is older than emg_timeout_s / 2; fault when "
        "older than emg_timeout_s (NaN or no sample yet counts as stale)",
        emg_stale,
        "emg_timeout_s",
    ),
    Fault(
        FaultKind.EMG_CHANNEL,
        "EMG electrode problem",
        "one muscle signal was flat or saturated: check that electrode's skin contact",
        lambda v, c, n: f"EMG channel {int(v)} flat or saturated for >= {c.emg_timeout_s} s",
        "degraded while a channel is flagged flat or saturated (by :class:`ChannelMonitor`); "
        "fault when flagged continuously for emg_timeout_s",
        emg_channel,
        persist="emg_timeout_s",
    ),
    Fault(
        FaultKind.TELEMETRY_STALE,
        "Exoskeleton stopped reporting",
        "no status from the exoskeleton in time: check its cable and power",
        lambda v, c, n: (
            f"newest telemetry {v:.3f} s old > telemetry_timeout_s {c.telemetry_timeout_s} s"
        ),
        "degraded above telemetry_timeout_s / 2; fault above telemetry_timeout_s",
        telemetry_stale,
        "telemetry_timeout_s",
    ),
    Fault(
        FaultKind.TELEMETRY_INVALID,
        "Invalid joint sensor reading",
        "a joint angle or speed reading was not valid: check the joint sensors",
        lambda v, c, n: (
            f"telemetry angle/velocity not finite (joint {n[int(v)]}) "
            f"for >= {c.telemetry_timeout_s} s"
        ),
        "degraded while an angle or velocity is NaN or infinite; fault when that lasts "
        "telemetry_timeout_s",
        telemetry_invalid,
        persist="telemetry_timeout_s",
    ),
    Fault(
        FaultKind.MODEL_OUTPUT,
        "Implausible torque estimate",
        "the estimated torque was invalid or far too large: check the EMG electrodes and the "
        "calibration",
        lambda v, c, n: (
            f"torque estimate {v!r} N m is NaN, infinite or beyond max_plausible_torque_nm "
            f"{c.max_plausible_torque_nm} for >= {c.model_fault_s} s"
        ),
        "degraded while the estimate or the request is NaN, infinite or beyond "
        "max_plausible_torque_nm; fault when that lasts model_fault_s",
        model_output,
        "max_plausible_torque_nm",
        "model_fault_s",
    ),
    Fault(
        FaultKind.OVERRUN,
        "Controller fell behind",
        "the control computer missed its deadlines repeatedly (it was overloaded)",
        lambda v, c, n: (
            f"{int(v)} consecutive loop overruns >= max_overrun_streak {c.max_overrun_streak}"
        ),
        "degraded at max_overrun_streak / 2 consecutive late ticks; fault at max_overrun_streak",
        overrun,
        "max_overrun_streak",
    ),
    Fault(
        FaultKind.FIRMWARE_FAULT,
        "Exoskeleton reported a fault",
        "the exoskeleton's motor controller reported its own fault",
        _firmware_text,
        "fault as soon as the firmware reports fault bits",
        firmware_fault,
    ),
    Fault(
        FaultKind.LINK_DOWN,
        "Connection to the exoskeleton lost",
        "the computer lost contact with the exoskeleton: check its cable and power",
        lambda v, c, n: "host link unhealthy (no telemetry or handshake lost)",
        "fault as soon as the host link reports itself unhealthy",
        link_down,
    ),
    Fault(
        FaultKind.ESTOP,
        "Emergency stop",
        "the emergency stop was used",
        lambda v, c, n: "emergency stop",
    ),
    Fault(
        FaultKind.ACTUATORS_OFF,
        "Exoskeleton motors switched off",
        "the exoskeleton turned its motors off by itself (restart or its own protection)",
        lambda v, c, n: (
            "assistance requested while the device's actuators are off (reboot, device fault "
            f"or lost session) for >= {c.telemetry_timeout_s} s"
        ),
        "degraded while assistance is requested but the device reports its actuators off; "
        "fault when that lasts telemetry_timeout_s (a firmware reboot that re-handshakes "
        "between two ticks shows only here)",
        actuators_off,
        persist="telemetry_timeout_s",
    ),
    Fault(
        FaultKind.RECORDING_STALLED,
        "Recording failed",
        "the session's data could not be written to disk (disk full or failing), and no "
        "assistance runs unrecorded: free space on the data disk, or stop the session",
        lambda v, c, n: (
            f"no session data committed to disk for {v:.1f} s > recording_timeout_s "
            f"{c.recording_timeout_s} s"
        ),
        "fault when the session's recording has gone longer than recording_timeout_s without "
        "a clean commit to disk (a full or failing disk, a stuck writer): no assistance runs "
        "unrecorded. The recorder publishes the time (``RecordingHealth``), the loop compares "
        "it, lock-free",
        recording_stalled,
        "recording_timeout_s",
    ),
    Fault(
        FaultKind.EMG_SOURCE,
        "EMG signal refused",
        "after an interruption the muscle signal came back from another device or computer: it "
        "was not used. Check the EMG receiver, then restart the exoskeleton software",
        lambda v, c, n: (
            "EMG stream refused after a dropout: it came back from another host or as another "
            "stream (uid), or two streams answered (see the acquisition error)"
        ),
        "fault as soon as the acquisition refuses the EMG stream that answered after a dropout "
        "(another host, another uid, two at once; ``exoctl.acquisition.sources``). It stays a "
        "fault until exoctl restarts and checks the stream again",
        emg_source,
    ),
    Fault(
        FaultKind.ESTIMATE_STALE,
        "Torque estimate delayed",
        "the torque estimate was not updated in time (the estimation stage stopped or fell "
        "behind): restart the exoskeleton software if it happens again",
        lambda v, c, n: (
            f"torque estimate {v:.3f} s old > estimate_timeout_s {c.estimate_timeout_s} s"
        ),
        "degraded while the torque estimate the loop uses is older than estimate_timeout_s / "
        "2; fault when older than estimate_timeout_s (NaN counts as stale). The age is the "
        "tick's time minus the time the estimate was computed: a hung or crashed estimator "
        "trips it",
        estimate_stale,
        "estimate_timeout_s",
    ),
    Fault(
        FaultKind.JOINT_OVERSPEED,
        "Joint moving too fast",
        "a joint sensor reported a speed no person moves at: a faulty joint sensor or a "
        "runaway joint. Check the joint, its sensor and its drive before clearing",
        _overspeed_text,
        "degraded while a joint's telemetry velocity is beyond max_joint_speed_rad_s; fault "
        "when that lasts telemetry_timeout_s (one odd frame never trips it). The layer already "
        "withholds torque in the direction of motion above the joint's velocity limit; this "
        "ends the session's assistance until a person has looked",
        joint_overspeed,
        "max_joint_speed_rad_s",
        "telemetry_timeout_s",
    ),
)
"""The safety layer's kinds, in bit order (``LAYER_FAULTS[k].kind == k``)."""

OTHER_FAULTS: tuple[Fault, ...] = (
    Fault(
        "control_loop_died",
        "Controller stopped",
        "the control program stopped unexpectedly; the session was ended",
        lambda v, c, n: "the control loop stopped with an error",
    ),
)
"""Faults the daemon records itself, outside the layer (their detail comes with the event)."""

BY_EVENT: dict[str, Fault] = {f.event: f for f in LAYER_FAULTS + OTHER_FAULTS}
"""Every fault kind by its event name."""

for _k, _f in zip(FaultKind, LAYER_FAULTS, strict=True):
    if _f.kind is not _k:
        raise ImportError(f"LAYER_FAULTS is out of bit order at {_k.label}: {_f.event}")


def watchdog_rules() -> str:
    """The watchdogs' rules as the package docstring lists them (a reST bullet list)."""
    return "\n".join(
        textwrap.fill(
            f"``{f.event}``: {f.rule};",
            width=96,
            initial_indent="   * ",
            subsequent_indent="     ",
            break_on_hyphens=False,
        )
        for f in LAYER_FAULTS
        if f.check is not None
    )
