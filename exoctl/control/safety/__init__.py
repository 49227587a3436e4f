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
   down at the rate limit, nothing latches) and a fault level. Each is a record in ``faults``
   (its check, threshold, persistence, event and words for people); this list is generated from
   those records when the package is imported:

{watchdog_rules}

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

Modules: ``faults`` (every fault kind as one record), ``inputs`` (states, events, the inputs
record), ``watchdogs`` (evaluates the records' checks each tick), ``layer`` (limits, state machine, e-stop, events), ``channel_monitor``
(the EMG channel flags the ``emg_channel`` watchdog reads).

Speed: a tick works on a handful of joints, where numpy's per-call overhead (~0.5-1 us a call,
~45 calls) was the whole cost; the layer does its arithmetic on Python floats read one element
at a time (``ndarray.item``), which also allocates nothing that grows with the number of joints.
"""

from exoctl.control.safety.channel_monitor import ChannelMonitor
from exoctl.control.safety.faults import FaultKind, watchdog_rules
from exoctl.control.safety.inputs import FaultEvent, RecordingHealth, SafetyInputs, SafetyState
from exoctl.control.safety.layer import SafetyLayer

if __doc__:  # None under python -OO
    __doc__ = __doc__.replace("{watchdog_rules}", watchdog_rules())

__all__ = [
    "ChannelMonitor",
    "FaultEvent",
    "FaultKind",
    "RecordingHealth",
    "SafetyInputs",
    "SafetyLayer",
    "SafetyState",
]
