"""``exoctl adapt --session ID``: the gain step on a recorded warm-up, numpy only (no PyTorch).

Input: two recordings of the same patient in the store, a *reference* (recorded with the
model's own calibration, e.g. the first session after training) and a *warm-up* (a minute of
walking at the start of today's session, before assistance). Both hold, per control tick,
the muscle activations the controller computed and the joint angles the firmware reported.

The activation is ``a = (exp(A u) - 1) / (exp(A) - 1)`` of the linearly filtered, MVC-normalised
envelope ``u`` (exoctl/signal/activation.py); inverting that static shape gives back ``u``,
which an electrode gain scales exactly. The gain is then estimated on matched joint states
(``matched_gain``) and judged (``adapt_guard``). Output: the calibration the warm-up ran with,
with the new per-channel gain (``Calibration.gain``), and a report of what was found.

The guard's agreement check (adapted estimate against a kinematics-only estimate) needs the
network's inputs rebuilt from the raw EMG; here it is not run, and the report says so.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.config.schema import Config
from exoctl.signal.calibration import Calibration, load_calibration
from exoctl.signal.chain import ChainSettings

from .adapt_guard import Verdict, judge, speed_change
from .matched_gain import GainEstimate, estimate_gain, joint_state

__all__ = ["SessionAdaptation", "adapt_session", "excitation"]


def excitation(a: np.ndarray, shape_a: float | np.ndarray) -> np.ndarray:
    """The filtered excitation ``u`` behind activations ``a`` (the static shape inverted)."""
    A = np.broadcast_to(np.asarray(shape_a, dtype=np.float64), (a.shape[1],))
    out = np.empty(a.shape, dtype=np.float64)
    for i, ai in enumerate(A):
        col = np.clip(a[:, i], 0.0, 1.0)
        out[:, i] = col if abs(ai) < 1e-9 else np.log1p(col * np.expm1(ai)) / ai
    return out


def _recording(data_dir: Path, session_id: str) -> dict[str, Any]:
    from exoctl.recordings import recorder as R

    db = R.find_session(data_dir, session_id)
    with R.open_session_db(db) as conn:
        info = R.session_info(conn, session_id)
        act = R.read_table(conn, "activation")
        tel = R.read_table(conn, "telemetry")
    a, muscles = act.matrix()
    angles, joints = tel.matrix("angle_")
    n = min(len(act.t), len(tel.t))
    if n < 100:
        raise ValueError(f"session {session_id}: {n} ticks recorded; too short to adapt on")
    if not np.allclose(act.t[:n], tel.t[:n]):
        raise ValueError(f"session {session_id}: activation and telemetry ticks do not line up")
    dt = float(np.median(np.diff(act.t[:n])))
    return {
        "info": info,
        "a": a[:n],
        "muscles": muscles,
        "angles": angles[:n],
        "joints": joints,
        "rate": 1.0 / dt,
        "seconds": n * dt,
    }


class SessionAdaptation:
    """What ``adapt_session`` found, the calibration it proposes and the guard's verdict."""

    def __init__(
        self,
        gain: GainEstimate,
        verdict: Verdict,
        calibration: Calibration | None,
        base: Path,
        report: dict[str, Any],
    ) -> None:
        self.gain, self.verdict, self.calibration = gain, verdict, calibration
        self.base, self.report = base, report


def adapt_session(
    cfg: Config, data_dir: Path, session_id: str, reference_id: str
) -> SessionAdaptation:
    """The gain of ``session_id``'s warm-up against ``reference_id``, judged."""
    t0 = time.monotonic()
    tgt = _recording(data_dir, session_id)
    ref = _recording(data_dir, reference_id)
    for key in ("muscles", "joints"):
        if tgt[key] != ref[key]:
            raise ValueError(
                f"sessions {reference_id} and {session_id} record other {key}: "
                f"{ref[key]} vs {tgt[key]}"
            )
    if tgt["info"]["patient"] != ref["info"]["patient"]:
        raise ValueError(
            f"session {session_id} is patient {tgt['info']['patient']}'s, the reference "
            f"{reference_id} is {ref['info']['patient']}'s: adapt on the same patient's sessions"
        )
    cal_path = tgt["info"].get("calibration_path")
    if not cal_path or not Path(cal_path).is_file():
        raise ValueError(
            f"session {session_id} ran with calibration {cal_path!r}, which is not there"
        )
    base = load_calibration(cal_path)
    shape_a = np.asarray(ChainSettings.from_config(cfg).shape_a, dtype=np.float64)
    u_ref = excitation(ref["a"], shape_a)
    u_tgt = excitation(tgt["a"], shape_a)
    # each recording's u is normalised by the MVC x gain it ran with: bring both to the MVC's
    ref_gain = _session_gain(ref["info"], base)
    tgt_gain = base.gain if base.gain is not None else np.ones(len(base.muscles))
    gain = estimate_gain(
        u_ref * ref_gain, joint_state(ref["angles"], ref["rate"]),
        u_tgt * tgt_gain, joint_state(tgt["angles"], tgt["rate"]), tgt["muscles"],
    )  # fmt: skip
    changed = speed_change(
        joint_state(ref["angles"], ref["rate"]), joint_state(tgt["angles"], tgt["rate"]),
        tgt["joints"],
    )  # fmt: skip
    verdict = judge(gain, {}, {}, changed)
    not_checked = ["agreement with the kinematics-only estimate (not run on recordings)"]
    note = {"reference_session": reference_id, "warm_up_session": session_id}
    # relative to the calibration's MVC: the reference's own gain times the change since
    total = gain.factors * ref_gain
    # a refused adaptation proposes nothing (its factors may be anything, e.g. x12)
    proposed = (
        base.with_gain(None if np.all(total == 1.0) else total, note) if verdict.accepted else None
    )
    report = {
        "patient": tgt["info"]["patient"],
        "session": session_id,
        "reference": reference_id,
        "warm_up_s": round(tgt["seconds"], 1),
        "reference_s": round(ref["seconds"], 1),
        "model": tgt["info"].get("model_path"),
        "calibration": cal_path,
        "gain": {m: round(float(f), 4) for m, f in zip(gain.muscles, total, strict=True)},
        "estimate": gain.to_dict(),
        "verdict": verdict.to_dict(),
        "not_checked": not_checked,
        "seconds": round(time.monotonic() - t0, 2),
    }
    return SessionAdaptation(gain, verdict, proposed, Path(cal_path), report)


def _session_gain(info: dict[str, Any], base: Calibration) -> np.ndarray:
    """The gain the reference session ran with (its calibration file, when still there)."""
    p = info.get("calibration_path")
    if p and Path(p).is_file():
        g = load_calibration(p).gain
        if g is not None:
            return g
    return np.ones(len(base.muscles))


def format_report(rep: dict[str, Any]) -> str:
    """Before/after for the clinician: factors per channel, what was checked, the verdict."""
    est = rep["estimate"]
    lines = [
        f"patient {rep['patient']}: warm-up {rep['session']} ({rep['warm_up_s']:.0f} s) "
        f"against reference {rep['reference']} ({rep['reference_s']:.0f} s)",
        f"matched joint states: {est['coverage']:.0%} of the warm-up ({est['cells']} cells)",
        "channel                 gain   (estimated, spread)",
    ]
    for m, f, r, s in zip(est["muscles"], est["factors"], est["raw_factors"], est["spread"],
                          strict=True):  # fmt: skip
        lines.append(f"  {m:<22}{f:>5.2f}   ({r:.2f}, {s:.2f})")
    v = rep["verdict"]
    if v["accepted"]:
        lines.append("guard: ACCEPTED (the gains above would be applied)")
    else:
        lines.append("guard: REFUSED; the current model and calibration stay:")
        lines += [f"  - {r}" for r in v["reasons"]]
    for n in rep.get("not_checked", []):
        lines.append(f"not checked: {n}")
    lines.append(f"({rep['seconds']:.1f} s)")
    return "\n".join(lines)


def write_outputs(result: SessionAdaptation, out: Path) -> Path:
    """The proposed calibration at ``out`` (when the guard accepted) and the report beside it
    (``.json``, always)."""
    if result.calibration is not None:
        result.calibration.save(out)
    rep = out.with_suffix(".json")
    rep.write_text(json.dumps(result.report, indent=2) + "\n")
    return rep
