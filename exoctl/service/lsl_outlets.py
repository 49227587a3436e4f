"""The daemon's LSL outlets, for LabRecorder beside motion capture and the EMG amplifier.

Four streams while the daemon runs (``service.publish_lsl``), each with a stable source id
``<device.name>-<key>`` so that LabRecorder finds them again after a restart:

* ``exoctl-torque-estimated`` (type ``EstimatedTorque``): the model's estimate of the
  patient's own joint torque, one channel per joint, N m;
* ``exoctl-torque-command`` (type ``TorqueCommand``): the command after the safety layer, as
  sent to the firmware, N m;
* ``exoctl-joint-state`` (type ``JointState``): what the device reports, the joint angles (rad)
  then the applied torques (N m), one channel each per joint;
* ``exoctl-events`` (type ``Markers``, irregular rate, one string channel): session start and
  stop, assistance level changes, e-stops, faults and fault clears, one JSON object per marker
  (``{"event": ..., ...}``), time-stamped when the event happened.

Metadata follow the XDF conventions (``desc/channels/channel`` with ``label``, ``unit`` and
``type``), plus what a reader needs to interpret a sign: every joint angle and torque is
positive in flexion (hip flexion, knee flexion), stated per channel (``sign_convention``) and
for the stream, with the joint (``joint``) and the device (``acquisition``).

Scope: like every LSL use of exoctl, machine-local by default (``exoctl.acquisition.lsl_scope``):
the outlets' discovery responders answer on loopback only, so LabRecorder finds them on this
computer; the liblsl settings (``emg.lsl.host`` adds the amplifier's host as a peer) are the
process's, applied here too in case the outlets are its first LSL use.

Time stamps: the loop's ticks are on ``time.monotonic()``; LSL's clock is CLOCK_MONOTONIC on
Linux too, and the offset between them is measured once anyway in case a platform differs.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import numpy as np

from exoctl import __version__
from exoctl.config.schema import Config

SIGN_CONVENTION = "positive = flexion (hip flexion, knee flexion)"
EVENT_STREAM = ("exoctl-events", "Markers")


def _channel(chans: Any, label: str, unit: str, ctype: str, joint: str | None) -> None:
    c = chans.append_child("channel")
    c.append_child_value("label", label)
    c.append_child_value("unit", unit)
    c.append_child_value("type", ctype)
    if joint is not None:
        c.append_child_value("joint", joint)
        c.append_child_value("sign_convention", SIGN_CONVENTION)


class LslPublisher:
    """Estimated torque, commands, joint state and event markers as LSL outlets."""

    def __init__(self, cfg: Config) -> None:
        import pylsl

        from exoctl.acquisition.lsl_scope import apply_lsl_scope

        apply_lsl_scope(cfg.emg.lsl)
        self._pylsl = pylsl
        joints = list(cfg.joint_names)
        rate = cfg.tick_rate_hz
        per_joint = [
            ("estimate", "exoctl-torque-estimated", "EstimatedTorque",
             [(j, "N m", "Torque", j) for j in joints]),
            ("command", "exoctl-torque-command", "TorqueCommand",
             [(j, "N m", "Torque", j) for j in joints]),
            ("joint_state", "exoctl-joint-state", "JointState",
             [(f"angle_{j}", "rad", "Angle", j) for j in joints]
             + [(f"applied_torque_{j}", "N m", "Torque", j) for j in joints]),
        ]  # fmt: skip
        self.outlets: dict[str, Any] = {}
        for key, name, stype, channels in per_joint:
            info = pylsl.StreamInfo(
                name, stype, len(channels), rate, pylsl.cf_float32, f"{cfg.device.name}-{key}"
            )
            self._describe(info, cfg)
            chans = info.desc().append_child("channels")
            for label, unit, ctype, joint in channels:
                _channel(chans, label, unit, ctype, joint)
            self.outlets[key] = pylsl.StreamOutlet(info)
        name, stype = EVENT_STREAM
        info = pylsl.StreamInfo(
            name, stype, 1, pylsl.IRREGULAR_RATE, pylsl.cf_string, f"{cfg.device.name}-events"
        )
        self._describe(info, cfg)
        _channel(info.desc().append_child("channels"), "event", "JSON", "Marker", None)
        self.outlets["events"] = pylsl.StreamOutlet(info)
        self._event_lock = threading.Lock()  # markers come from the pump and the RPC threads
        self.offset = pylsl.local_clock() - time.monotonic()

    @staticmethod
    def _describe(info: Any, cfg: Config) -> None:
        desc = info.desc()
        acq = desc.append_child("acquisition")
        acq.append_child_value("manufacturer", "exoctl")
        acq.append_child_value("model", cfg.device.name)
        acq.append_child_value("software_version", __version__)
        desc.append_child_value("sign_convention", SIGN_CONVENTION)

    def push(self, key: str, t: np.ndarray, data: np.ndarray) -> None:
        """Rows of one per-joint stream, stamped with their ticks' monotonic times."""
        if len(t):
            self.outlets[key].push_chunk(
                np.ascontiguousarray(data, dtype=np.float32), (t + self.offset).tolist()
            )

    def marker(self, event: str, detail: Any = None, t: float | None = None) -> None:
        """One event marker; ``t`` on the monotonic clock (default: now)."""
        doc: dict[str, Any] = {"event": event}
        if isinstance(detail, dict):
            doc.update(detail)
        elif detail is not None:
            doc["detail"] = detail
        stamp = (time.monotonic() if t is None else float(t)) + self.offset
        # Strict JSON: NaN and infinity (a fault's t_zero not yet known, say) become null.
        text = json.dumps(json.loads(json.dumps(doc, default=str), parse_constant=lambda _: None))
        with self._event_lock:
            self.outlets["events"].push_sample([text], stamp)
