"""The guard: refuse an adaptation it cannot trust, without any measured torque.

An adaptation is accepted only when every check below holds; otherwise the unadapted model
stays and each failed check is one plain sentence for the clinician. The checks use what a
later session gives without a lab: the warm-up's EMG, the joint encoders, and a
kinematics-only estimate (a lagged ridge on joint angles and velocities fitted on the source
data, which no EMG gain can disturb).

- the warm-up must revisit the reference's joint states (``coverage``): otherwise it is
  another task or speed, and an amplitude difference is behaviour, not gain;
- the joint-velocity spread must match the reference's (``workflow.task_change``);
- every factor must be within ``FACTOR_BOUNDS``: beyond them an electrode is off or shorted;
- the adapted estimate must agree with the kinematics-only estimate at least as well as the
  unadapted one does (R^2 of one against the other, per joint, ``AGREEMENT_SLACK``): an
  adaptation that moves the estimate away from what the movement implies is not trusted.

Thresholds chosen on validation parts of the training data only (docs/adaptation.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from .matched_gain import FACTOR_BOUNDS, GainEstimate

__all__ = ["AGREEMENT_SLACK", "MIN_COVERAGE", "Verdict", "agreement", "judge", "speed_change"]

MIN_COVERAGE = 0.6
AGREEMENT_SLACK = 0.02


@dataclass
class Verdict:
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    agreement_before: dict[str, float] = field(default_factory=dict)
    agreement_after: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {
            "accepted": self.accepted,
            "reasons": list(self.reasons),
            "agreement_before": dict(self.agreement_before),
            "agreement_after": dict(self.agreement_after),
        }


def agreement(estimate: np.ndarray, reference: np.ndarray, joints) -> dict[str, float]:
    """R^2 of ``estimate`` against the kinematics-only ``reference``, per joint."""
    out = {}
    for j, name in enumerate(joints):
        ref = reference[:, j]
        ss = float(np.sum((ref - ref.mean()) ** 2))
        out[name] = round(1.0 - float(np.sum((estimate[:, j] - ref) ** 2)) / max(ss, 1e-12), 4)
    return out


def speed_change(ref_state: np.ndarray, tgt_state: np.ndarray, joints) -> dict[str, float]:
    """``workflow.task_change`` on joint states (``matched_gain.joint_state``: angles then
    velocities): the joints whose velocity spread differs by more than its ratio."""
    from .workflow import TASK_CHANGE_RATIO

    j = len(joints)
    ratio = tgt_state[:, j:].std(axis=0) / np.maximum(ref_state[:, j:].std(axis=0), 1e-12)
    return {
        f"velocity:{name}": round(float(r), 3)
        for name, r in zip(joints, ratio, strict=True)
        if not 1.0 / TASK_CHANGE_RATIO <= r <= TASK_CHANGE_RATIO
    }


def judge(
    gain: GainEstimate,
    before: Mapping[str, float],
    after: Mapping[str, float],
    task_change: Mapping[str, float] | None = None,
) -> Verdict:
    """Accept or refuse; ``before``/``after``: ``agreement`` of the unadapted and the adapted
    estimate with the kinematics-only one on the warm-up."""
    reasons = []
    if gain.coverage < MIN_COVERAGE:
        reasons.append(
            f"the warm-up moved the joints differently from the reference (only "
            f"{gain.coverage:.0%} of it in joint states the reference also visited, "
            f"{MIN_COVERAGE:.0%} needed): another task or speed, not an electrode change"
        )
    if task_change:
        reasons.append(
            "the joint speeds differ from the reference's (spread ratio "
            + ", ".join(f"{k} {v:g}" for k, v in task_change.items())
            + "): another task or speed"
        )
    lo, hi = FACTOR_BOUNDS
    bad = [
        f"{m} x{f:.2f}"
        for m, f in zip(gain.muscles, gain.raw_factors, strict=True)
        if not lo <= f <= hi
    ]
    if bad:
        reasons.append(
            f"channel gains out of the range {lo:g}-{hi:g} ({', '.join(bad)}): check those "
            "electrodes, or the patient's activity changed"
        )
    worse = [j for j in before if after.get(j, -np.inf) < before[j] - AGREEMENT_SLACK]
    if worse:
        reasons.append(
            "the adapted estimate agrees less with what the joint movement implies ("
            + ", ".join(f"{j}: R^2 {before[j]:.2f} -> {after[j]:.2f}" for j in worse)
            + ")"
        )
    return Verdict(not reasons, reasons, dict(before), dict(after))
