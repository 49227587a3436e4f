"""Calibration from a dataset: per-muscle MVC normalisation and synergies by NMF.

Steps, with the estimator's own signal chain so that the numbers mean the same thing online:

1. Every selected trial's EMG goes through the signal chain (``exoctl.signal.chain``: the
   configuration's band-pass, notch and envelope; no normalisation) at the trial's rate. Enveloped input is taken as is.
   The first ``SETTLE_S`` seconds of each trial are left out (the envelope starts from zero).
2. MVC per muscle: the peak of the conditioned EMG over the MVC trials (``role: mvc``) when
   there are any; 1 when the task trials are enveloped EMG already normalised; otherwise a robust maximum of the task trials (the ``percentile`` of the
   envelope, default 99.5 %: one spike or artefact does not set the scale) and a warning,
   because activations are then relative to the task's peak, not to maximal contraction.
3. Excitation e = envelope / MVC -> activation dynamics (the configuration's parameters, at
   the trial's rate) -> activations, decimated to ~``NMF_RATE_HZ`` (the envelope holds nothing
   above ~10 Hz) and pooled over the task trials.
4. ``choose_k``: the smallest K whose VAF reaches the threshold (90 %), unless K is fixed; VAF
   per K and per muscle go into the report and into the file's ``source``.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from exoctl.signal.calibration import Calibration
from exoctl.signal.chain import CHUNK, ChainSettings, SignalChain
from exoctl.signal.synergy import OnlineNNLS, SynergyChoice, choose_k

from .dataset import Dataset, DatasetError, Trial

__all__ = ["CalibrationResult", "calibrate_dataset", "calibrate_trials", "condition_trial"]

SETTLE_S = 0.5
NMF_RATE_HZ = 100.0


@dataclass(frozen=True)
class CalibrationResult:
    calibration: Calibration
    choice: SynergyChoice
    mvc_method: str  # "mvc-trials", "pre-normalised" or "robust-max"
    warnings: list[str] = field(default_factory=list)
    task_trials: list[str] = field(default_factory=list)
    mvc_trials: list[str] = field(default_factory=list)
    n_samples_nmf: int = 0


def condition_trial(trial: Trial, chain: ChainSettings) -> np.ndarray:
    """Conditioned, un-normalised EMG envelope (n, m) of a trial (enveloped input: as is)."""
    bad = {m: int(c) for m, c in zip(trial.muscles, np.isnan(trial.emg).sum(0), strict=True) if c}
    if bad:
        raise DatasetError(
            f"trial {trial.name}: EMG has NaN samples {bad}; fix the file or leave the trial out"
        )
    if trial.emg_kind == "enveloped":
        return np.asarray(trial.emg, dtype=np.float64)
    sc = SignalChain(chain.with_input("raw"), trial.fs_hz, len(trial.muscles), max_chunk=CHUNK)
    return sc.envelope(trial.emg)


def calibrate_dataset(
    dataset: Dataset,
    *,
    trials: Sequence[str] | None = None,
    chain: ChainSettings | None = None,
    muscles: Sequence[str] | None = None,
    k: int | None = None,
    vaf_threshold: float = 0.9,
    k_max: int | None = None,
    percentile: float = 99.5,
    seed: int = 0,
) -> CalibrationResult:
    """Compute a calibration; ``muscles`` (e.g. the configuration's) fixes the order.

    A ``muscles`` list whose set differs from the dataset's is refused with both lists named.
    """
    names = list(trials) if trials else dataset.trial_names
    for n in names:
        dataset.trial_spec(n)  # clear error for an unknown trial name
    return calibrate_trials(
        [dataset.load_trial(n) for n in names], where=dataset.path, dataset_name=dataset.spec.name,
        chain=chain, muscles=muscles, k=k, vaf_threshold=vaf_threshold, k_max=k_max,
        percentile=percentile, seed=seed,
    )  # fmt: skip


def calibrate_trials(
    trials: Sequence[Trial],
    *,
    where: Path,
    dataset_name: str = "",
    chain: ChainSettings | None = None,
    muscles: Sequence[str] | None = None,
    k: int | None = None,
    vaf_threshold: float = 0.9,
    k_max: int | None = None,
    percentile: float = 99.5,
    seed: int = 0,
) -> CalibrationResult:
    """``calibrate_dataset`` on trials already loaded (or cut: the real-data protocol
    calibrates on a trial's training part only); ``where`` names the data in messages."""
    chain = chain or ChainSettings()
    ds_muscles = list(trials[0].muscles)
    order = list(muscles) if muscles is not None else ds_muscles
    if set(order) != set(ds_muscles) or len(order) != len(ds_muscles):
        raise DatasetError(
            f"{where}: the dataset's muscles do not match the configured ones.\n"
            f"  configured: {list(order)}\n  dataset:    {ds_muscles}\n"
            f"  missing from the dataset: {[m for m in order if m not in ds_muscles]}; "
            f"not configured: {[m for m in ds_muscles if m not in order]}"
        )
    perm = [ds_muscles.index(m) for m in order]
    warnings: list[str] = []

    task_env: list[tuple[Trial, np.ndarray]] = []
    mvc_peak = np.zeros(len(order))
    mvc_names, task_names = [], []
    for trial in trials:
        name = trial.name
        settle = int(round(SETTLE_S * trial.fs_hz)) if trial.emg_kind == "raw" else 0
        if trial.t.size - settle < max(10, int(0.5 * trial.fs_hz)):
            raise DatasetError(
                f"trial {name}: only {trial.duration_s:.2f} s of data; need at least "
                f"{SETTLE_S + 0.5:.1f} s"
            )
        env = condition_trial(trial, chain)[:, perm]
        if trial.role == "mvc":
            mvc_peak = np.maximum(mvc_peak, env[settle:].max(axis=0))
            mvc_names.append(name)
        else:
            task_env.append((trial, env))
            task_names.append(name)
    if not task_env:
        raise DatasetError(
            f"{where}: no task trial selected (only MVC trials {mvc_names}); synergies "
            "need task data"
        )
    if mvc_names:
        mvc, method = mvc_peak, "mvc-trials"
        # a muscle whose MVC trial shows less than the task is suspicious but not fatal
        task_max = np.max([e[int(SETTLE_S * t.fs_hz) :].max(0) for t, e in task_env], axis=0)
        low = [order[i] for i in range(len(order)) if task_max[i] > 1.5 * mvc[i]]
        if low:
            warnings.append(
                f"task EMG exceeds 1.5x the MVC trial peak for {low}: was the MVC maximal?"
            )
    elif all(t.emg_normalised for t, _ in task_env):
        mvc, method = np.ones(len(order)), "pre-normalised"
    else:
        if any(t.emg_normalised for t, _ in task_env):
            raise DatasetError(
                f"{where}: some selected trials are marked normalised and others not; "
                "they cannot share one normalisation"
            )
        pooled = np.vstack(
            [
                e[(int(round(SETTLE_S * t.fs_hz)) if t.emg_kind == "raw" else 0) :]
                for t, e in task_env
            ]
        )
        mvc, method = np.percentile(pooled, percentile, axis=0), "robust-max"
        warnings.append(
            f"no MVC trial: normalising each muscle to the {percentile:g}th percentile of its "
            "task envelope; activations are relative to this task's peak, not to maximal "
            "voluntary contraction"
        )
    dead = [order[i] for i in range(len(order)) if not (math.isfinite(mvc[i]) and mvc[i] > 0)]
    if dead:
        raise DatasetError(f"{where}: no EMG signal on {dead}: cannot normalise")

    acts = []
    for trial, env in task_env:
        # env is an envelope by now: the chain's remaining stages at the trial's rate
        a = SignalChain(chain.with_input("enveloped"), trial.fs_hz, len(order)).activate(env / mvc)
        settle = int(round(SETTLE_S * trial.fs_hz)) if trial.emg_kind == "raw" else 0
        step = max(1, int(round(trial.fs_hz / NMF_RATE_HZ)))
        acts.append(a[settle::step])
    A = np.vstack(acts)
    choice = choose_k(A, vaf_threshold, k_max, k=k, seed=seed)
    if not choice.reached_threshold:
        warnings.append(
            f"no K up to {max(choice.vaf_by_k)} reaches VAF {vaf_threshold:.0%}; using K={choice.k}"
            f" (VAF {choice.vaf:.1%})"
        )
    try:
        OnlineNNLS(choice.W)
    except ValueError as e:
        raise DatasetError(f"synergies unusable online: {e}") from None
    source = {
        "tool": "exoctl calibrate",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "dataset": str(Path(where).resolve()),
        "dataset_name": dataset_name,
        "task_trials": task_names,
        "mvc_trials": mvc_names,
        "mvc_method": method,
        "mvc_percentile": percentile if method == "robust-max" else None,
        "emg_kind": sorted({t.emg_kind for t, _ in task_env}),
        "chain": chain.as_dict(),
        "nmf": {"rate_hz": NMF_RATE_HZ, "samples": int(A.shape[0]), "seed": seed},
        "vaf_threshold": vaf_threshold,
        "k_fixed": k,
        "vaf_by_k": {int(kk): round(float(v), 6) for kk, v in choice.vaf_by_k.items()},
        "vaf_per_muscle": {
            m: round(float(v), 6)
            for m, v in zip(order, choice.vaf_muscle_by_k[choice.k], strict=True)
        },
        "warnings": warnings,
    }
    cal = Calibration(tuple(order), mvc, choice.W, choice.vaf, source)
    return CalibrationResult(cal, choice, method, warnings, task_names, mvc_names, int(A.shape[0]))
