"""Messages as the JSON fields of the vectors file (docs/protocol.md section 4 layouts).

The vectors and the tests that read them (the C codec's, the emulator's) compare decoded
messages through this one mapping, so a field's name is spelled the same everywhere.
"""

from __future__ import annotations

import dataclasses

from firmware_bridge import protocol as P

_JOINT_COLS = ("angle", "velocity", "torque", "current", "temperature", "joint_faults")


def to_fields(m: P.Message) -> dict:
    """A message as the JSON fields of docs/protocol.md section 4 (names from the layouts)."""
    if isinstance(m, P.TorqueCommand):
        return {
            "seq": m.seq,
            "host_time_us": m.host_time_us,
            "n_joints": len(m.torque),
            "torque": list(m.torque),
        }
    if isinstance(m, P.DeviceInfo):
        return {
            "nonce": m.nonce,
            "command_timeout_ms": m.command_timeout_ms,
            "telemetry_period_us": m.telemetry_period_us,
            "device_id": m.device_id,
            "n_joints": m.n_joints,
            "joints": [
                {
                    "name": j.name,
                    "torque_limit": j.torque_limit,
                    "angle_min": j.angle_min,
                    "angle_max": j.angle_max,
                }
                for j in m.joints
            ],
        }
    if isinstance(m, P.Telemetry):
        n = len(m.angle)
        return {
            "telemetry_seq": m.telemetry_seq,
            "fw_time_us": m.fw_time_us,
            "last_seq_applied": m.last_seq_applied,
            "flags": m.flags,
            "fault_bits": m.fault_bits,
            "n_joints": n,
            "joints": [{c: getattr(m, c)[k] for c in _JOINT_COLS} for k in range(n)],
        }
    return {f.name: getattr(m, f.name) for f in dataclasses.fields(m)}
