"""Later-session cases of the real-data protocol: a model trained on one session, used on a
later one with the electrodes' gains changed, before and after ``exoctl adapt``'s gain step.

:class:`LaterCase` holds a case's source and target parts and the models trained on the
source; :func:`drift_factors` injects a known per-channel gain change and :func:`guard_rates`
counts the adaptation guard's false accepts and false refusals over the cases.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from exoctl.data.calibrate import condition_trial
from exoctl.data.dataset import Trial
from exoctl.estimation.metrics import joint_metrics, summarise

from .adapt_guard import agreement, judge
from .evaluation import predict
from .features import TickSet
from .matched_gain import estimate_gain, joint_state
from .trial_slices import cut_trial, labelled
from .workflow import score_sets, task_change

if TYPE_CHECKING:
    from .real_protocol import _Protocol

DRIFT_RANGE = (0.5, 2.0)  # injected per-channel gain factors (log-uniform)
WORSE = 0.01  # R^2 loss that makes an accepted adaptation a false accept
GAIN = 0.02  # R^2 gain that makes a refused adaptation a false refusal


def drift_factors(seed: int, m: int) -> np.ndarray:
    """Per-channel gain factors, log-uniform in ``DRIFT_RANGE`` (a known electrode change)."""
    lo, hi = DRIFT_RANGE
    return np.exp(np.random.default_rng(seed).uniform(np.log(lo), np.log(hi), m))


def guard_rates(cases: Sequence[dict]) -> dict:
    """False accepts (accepted, and worse than unadapted by more than ``WORSE`` on a joint)
    and false refusals (refused, where adapting would have gained more than ``GAIN`` on a
    joint and lost no more than ``WORSE`` on the other), over all cases."""
    fa = fr = acc = 0
    for c in cases:
        d = [c["adapted"][f"r2_{k}"] - c["network"][f"r2_{k}"] for k in ("hip", "knee")]
        accepted = c["adaptation"]["verdict"]["accepted"]
        acc += accepted
        if accepted and min(d) < -WORSE:
            fa += 1
            c["false_accept"] = True
        if not accepted and max(d) > GAIN and min(d) >= -WORSE:
            fr += 1
            c["false_refuse"] = True
    n = len(cases)
    return {
        "n": n,
        "accepted": acc,
        "false_accepts": fa,
        "false_refusals": fr,
        "false_accept_rate": fa / max(n, 1),
        "false_refuse_rate": fr / max(n, 1),
    }


class LaterCase:
    """A later-session case: a source part (the reference session, labelled), a target part
    (the later session; its moments are read by the scoring only) and the models trained on
    the source. ``n_cut`` without ``target``: the trial's first samples -> the rest;
    ``target`` without ``n_cut``: all of one trial -> all of the other; both: the first
    ``n_cut`` samples -> all of ``target`` (with ``share``'s models)."""

    def __init__(self, p: _Protocol, ds, trial: Trial, n_cut, target, share=None) -> None:
        self.p, self.ds, self.trial, self.n_cut, self.target = p, ds, trial, n_cut, target
        src = trial if n_cut is None else cut_trial(trial, 0, n_cut)
        chain = p.chain
        if share is not None:
            self.cal, self.models, self.source = share.cal, share.models, share.source
        else:
            self.cal = p._calibrate([src], ds.path)
        self.rate = p.cfg.tick_rate_hz
        self.ref_env = condition_trial(src, chain)
        self.ref_state = joint_state(labelled(src.angles, src), src.fs_hz)
        tt = cut_trial(trial, n_cut, None) if target is None else target
        self.tgt_env = condition_trial(tt, chain)
        self.tgt_state = joint_state(labelled(tt.angles, tt), tt.fs_hz)
        base = self._target_set(None)
        if share is None:
            if target is None:
                data = p._ticks([trial], self.cal, ds.joints, ds.path)
                full = data.sets[0]
                head = dataclasses.replace(
                    full, X=full.X[: self.tick_cut], y=labelled(full.y, trial)[: self.tick_cut]
                )
            else:
                data = p._ticks([trial], self.cal, ds.joints, ds.path)
                head = data.sets[0]
            self.source = [head]
            tag = f"later_{trial.name}_{'half' if target is None else target.name}"
            self.models = p._models(tag, self.source, data, self.cal)
        self.base = base
        self.ticks = np.arange(base.warm, base.n)
        self.y = base.torques[self.ticks]
        self.kin = predict(self.models["kinematics"], base, self.ticks)
        self.scored = {
            k: score_sets(self.models[k], [base], ds.joints)[0] for k in ("ridge", "kinematics")
        }
        self.changed = task_change(self.source, [base])

    def _target_set(self, scale: np.ndarray | None) -> TickSet:
        """The target's tick set, its EMG multiplied by ``scale`` (per channel)."""
        ds, p = self.ds, self.p
        if self.target is None:
            emg = self.trial.emg.copy()
            if scale is not None:
                emg[self.n_cut :] *= scale
            ts = p._ticks([dataclasses.replace(self.trial, emg=emg)], self.cal, ds.joints,
                          ds.path).sets[0]  # fmt: skip
            fs = self.trial.fs_hz
            self.tick_cut = int(round(self.n_cut * ts.tick_rate_hz / fs))
            return dataclasses.replace(ts, warm=max(ts.warm, self.tick_cut))
        emg = self.target.emg if scale is None else self.target.emg * scale
        tr = dataclasses.replace(self.target, emg=emg)
        return p._ticks([tr], self.cal, ds.joints, ds.path).sets[0]

    def _score(self, yhat: np.ndarray) -> dict:
        per = joint_metrics(self.y, yhat, self.ds.joints)
        return {"joints": per, **summarise(per)}

    def adapt_and_score(self, i: int, drift: np.ndarray | None) -> dict:
        """Network ``i`` on the target (with ``drift`` injected), unadapted and after the gain
        step, the guard's verdict, and the model in use after ``adapt``."""
        joints = self.ds.joints
        net = self.models["networks"][i]
        one = np.ones(self.tgt_env.shape[1])
        d = one if drift is None else drift
        t0 = time.monotonic()
        gain = estimate_gain(
            self.ref_env, self.ref_state, self.tgt_env * d, self.tgt_state, self.trial.muscles
        )
        drifted = self.base if drift is None else self._target_set(d)
        un = predict(net, drifted, self.ticks)
        if np.all(gain.factors == 1.0):
            ad = un
        else:
            ad = predict(net, self._target_set(d / gain.factors), self.ticks)
        verdict = judge(
            gain, agreement(un, self.kin, joints), agreement(ad, self.kin, joints), self.changed
        )
        s_un, s_ad = self._score(un), self._score(ad)
        adaptation = {
            "gain": gain.to_dict(),
            "verdict": verdict.to_dict(),
            "seconds": round(time.monotonic() - t0, 2),
        }
        if drift is not None:
            # the estimate against the injected factors, and against them times what the
            # same step finds without injection (the later part's own change)
            own = estimate_gain(
                self.ref_env, self.ref_state, self.tgt_env, self.tgt_state, self.trial.muscles
            ).raw_factors
            adaptation["injected"] = [round(float(f), 4) for f in drift]
            adaptation["factor_error"] = [
                round(float(e), 4) for e in gain.raw_factors / drift - 1.0
            ]
            adaptation["factor_error_own_change_removed"] = [
                round(float(e), 4) for e in gain.raw_factors / (drift * own) - 1.0
            ]
        out = {
            "network": s_un,
            "adapted": s_ad,
            "in_use": s_ad if verdict.accepted else s_un,
            "adaptation": adaptation,
        }
        if drift is not None:  # the lagged ridge sees the drift too
            out["ridge"] = self._score(predict(self.models["ridge"], drifted, self.ticks))
        return out
