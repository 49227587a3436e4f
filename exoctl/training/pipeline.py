"""From data to a model file: tick sets from datasets, metadata, sidecar files (no torch here).

A trained model is one ONNX file plus sidecars beside it, all named from the model's stem:

- ``M.onnx``: what the controller loads (metadata: features, joints, muscles, K, input window
  and tick rate, normalisation, training data fingerprints, metrics, calibration fingerprint);
- ``M.calibration.yaml``: the calibration whose MVC and W made the training inputs (the
  controller's ``estimator.calibration`` must be this one, or a model refuses it);
- ``M.pt``: the PyTorch weights and architecture, for ``exoctl adapt`` (not needed to run);
- ``M.json``: provenance for people (command, data, metrics, times).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exoctl import __version__
from exoctl.config.schema import Config
from exoctl.estimation.input_kinds import Window
from exoctl.estimation.torque_model import MODEL_FORMAT, calibration_fingerprint
from exoctl.signal.calibration import Calibration
from exoctl.signal.chain import ChainSettings

from .features import TickSet, TickSpec, signal_ticks

__all__ = [
    "DEFAULT_WINDOWS_MS",
    "DataSource",
    "TickData",
    "dataset_tick_sets",
    "trial_tick_sets",
    "emg_signal_of",
    "model_metadata",
    "sidecar",
    "split_tail",
    "write_provenance",
]

DEFAULT_WINDOWS_MS = (50.0, 100.0, 200.0, 400.0)


def sidecar(model_path: Path, kind: str) -> Path:
    """``M.onnx`` -> ``M.calibration.yaml`` / ``M.pt`` / ``M.json``."""
    p = Path(model_path)
    return p.with_name(
        p.stem + {"calibration": ".calibration.yaml", "pt": ".pt", "json": ".json"}[kind]
    )


def scales_in_ticks(windows_ms: Sequence[float], tick_rate_hz: float) -> list[int]:
    out = []
    for ms in windows_ms:
        n = ms * tick_rate_hz / 1000.0
        if abs(n - round(n)) > 1e-6 or round(n) < 5:
            raise ValueError(
                f"window {ms:g} ms is not a whole number (>= 5) of ticks at {tick_rate_hz:g} Hz"
            )
        out.append(int(round(n)))
    return out


@dataclass(frozen=True)
class DataSource:
    """Where a tick set came from, for the metadata (a dataset's trial or a simulator session)."""

    kind: str  # dataset | simulator
    path: str | None
    trials: tuple[str, ...]
    fingerprints: tuple[str, ...]


@dataclass
class TickData:
    """A dataset's trials as tick sets, and what they were made for and from."""

    sets: list[TickSet]
    spec: TickSpec
    kinematics: bool
    emg_signal: dict  # the model metadata's ``emg_signal``: what the training EMG was
    emg_rates_hz: list[float]

    @property
    def body_mass_kg(self) -> float | None:
        return next((s.body_mass_kg for s in self.sets if s.body_mass_kg), None)


def emg_signal_of(chain: ChainSettings, trials: Sequence) -> dict:
    """The ``emg_signal`` metadata entry for trials of one kind (raw, or one stated envelope)."""
    from exoctl.data.dataset import DatasetError

    kinds = sorted({t.emg_kind for t in trials})
    if len(kinds) != 1:
        raise DatasetError(
            f"trials {[t.name for t in trials]} mix raw and enveloped EMG {kinds}: a model "
            "learns from one kind of signal; choose the trials of one kind with --trials"
        )
    envs = {
        json.dumps(t.envelope.model_dump() if t.envelope is not None else None, sort_keys=True)
        for t in trials
    }
    if len(envs) != 1:
        raise DatasetError(
            f"trials {[t.name for t in trials]} state different envelopes ({sorted(envs)}): a "
            "model learns from one kind of signal"
        )
    env = json.loads(envs.pop())
    doc = chain.with_input(kinds[0]).describe(env)
    doc["normalised_by_source"] = bool(all(t.emg_normalised for t in trials))
    return doc


def dataset_tick_sets(
    cfg: Config,
    dataset,
    trial_names: Sequence[str] | None,
    cal: Calibration,
    *,
    kinematics: bool | None,
    need_torque: bool,
    tick_rate_hz: float | None = None,
) -> TickData:
    """Tick sets of a dataset's task trials (all by default) at the control rate.

    Any EMG rate: each trial is read at its own rate and carried to ``tick_rate_hz`` (default
    the configuration's control rate) by ``signal_ticks``; the configuration gives the chain's
    filter and activation settings and the joints' order, never the dataset's rate.
    ``kinematics=None``: use angles and velocities when every selected trial has angles.
    """
    from exoctl.data.dataset import DatasetError

    names = (
        list(trial_names)
        if trial_names
        else [t.name for t in dataset.spec.trials if t.role == "task"]
    )
    if not names:
        raise DatasetError(f"{dataset.path}: no task trial to use")
    trials = [dataset.load_trial(n) for n in names]
    return trial_tick_sets(
        cfg, trials, cal, dataset.joints, where=dataset.path, kinematics=kinematics,
        need_torque=need_torque, tick_rate_hz=tick_rate_hz,
    )  # fmt: skip


def trial_tick_sets(
    cfg: Config,
    trials: Sequence,
    cal: Calibration,
    joints: Sequence[str],
    *,
    where,
    kinematics: bool | None,
    need_torque: bool,
    tick_rate_hz: float | None = None,
) -> TickData:
    """``dataset_tick_sets`` on trials already loaded (or cut, or joined: the real-data
    protocol's splits); ``where`` names the data in messages."""
    from exoctl.data.dataset import DatasetError

    for t in trials:
        bad = {m: int(c) for m, c in zip(t.muscles, np.isnan(t.emg).sum(0), strict=True) if c}
        if bad:
            raise DatasetError(
                f"{where}: trial {t.name}: EMG has NaN samples {bad}; leave the trial "
                "out (--trials) or fix the file"
            )
        if need_torque and t.torque is not None and not np.isfinite(t.torque).all():
            raise DatasetError(
                f"{where}: trial {t.name}: the joint moments have NaN samples; leave the "
                "trial out (--trials) or fix the file"
            )
    if need_torque:
        missing = [t.name for t in trials if t.torque is None]
        if missing:
            raise DatasetError(
                f"{where}: trials {missing} have no joint moments; training needs them"
            )
    have_angles = all(t.angles is not None for t in trials)
    if kinematics is None:
        kinematics = have_angles
    elif kinematics and not have_angles:
        raise DatasetError(
            f"{where}: the model uses joint angles and velocities, but trials "
            f"{[t.name for t in trials if t.angles is None]} have none"
        )
    missing_joints = [j for j in joints if j not in cfg.joint_names]
    if missing_joints:
        raise DatasetError(
            f"{where}: joints {missing_joints} are not in the configuration's "
            f"device.joints ({list(cfg.joint_names)}); use a configuration with them"
        )
    chain = ChainSettings.from_config(cfg)
    spec = TickSpec(
        chain,
        float(tick_rate_hz or cfg.tick_rate_hz),
        tuple(cal.muscles),
        tuple(joints),
    )
    perm = [list(trials[0].muscles).index(m) for m in cal.muscles]
    sets = [
        signal_ticks(
            spec,
            cal,
            t.emg[:, perm],
            t.fs_hz,
            angles=t.angles if kinematics else None,
            torque=t.torque,
            kinematics=kinematics,
            emg_kind=t.emg_kind,
            name=t.name,
            body_mass_kg=t.body_mass_kg,
        )  # fmt: skip
        for t in trials
    ]
    return TickData(
        sets, spec, kinematics, emg_signal_of(chain, trials), sorted({t.fs_hz for t in trials})
    )


def split_tail(ts: TickSet, frac: float) -> tuple[TickSet, TickSet]:
    """(head, tail): the last ``frac`` of a tick set held out; the tail keeps its past as warm-up."""
    cut = ts.warm + int((ts.n - ts.warm) * (1.0 - frac))
    head = TickSet(ts.name, ts.X[:cut], None if ts.y is None else ts.y[:cut], ts.tick_rate_hz,
                   ts.warm, ts.names, ts.body_mass_kg, ts.fingerprint)  # fmt: skip
    # the tail is scored from `cut` on, with the rows before it as its (unscored) past
    tail = TickSet(ts.name, ts.X, ts.y, ts.tick_rate_hz, cut, ts.names, ts.body_mass_kg,
                   ts.fingerprint)  # fmt: skip
    return head, tail


def model_metadata(
    *,
    model_type: str,
    features: Sequence[str],
    muscles: Sequence[str],
    joints: Sequence[str],
    cal: Calibration,
    window_ticks: int,
    tick_rate_hz: float,
    emg_rate_hz: float | list[float],
    windows_ms: Sequence[float] | None,
    sources: Sequence[DataSource],
    metrics: dict,
    normalisation: dict | None = None,
    extra: dict | None = None,
    emg_signal: dict | None = None,
) -> dict:
    """The exoctl metadata of a trained model; ``emg_signal`` says what the training EMG was
    (``ChainSettings.describe``; the estimator refuses a model its chain cannot match)."""
    doc = {
        "format": MODEL_FORMAT,
        "model_type": model_type,
        "features": list(features),
        "joints": list(joints),
        "muscles": list(muscles),
        "n_synergies": cal.k,
        "input": Window(int(window_ticks), float(tick_rate_hz)).entry(),
        "window_ms": window_ticks * 1000.0 / tick_rate_hz,
        "scales_ms": list(windows_ms) if windows_ms else None,
        "emg_rate_hz": emg_rate_hz,
        "calibration_fingerprint": calibration_fingerprint(muscles, cal.mvc, cal.W),
        "training_data": [
            {
                "kind": s.kind,
                "path": s.path,
                "trials": list(s.trials),
                "fingerprints": list(s.fingerprints),
            }
            for s in sources
        ],
        "metrics": metrics,
        "exoctl_version": __version__,
    }
    if emg_signal is not None:
        doc["emg_signal"] = emg_signal
    if normalisation is not None:
        doc["normalisation"] = normalisation
    if extra:
        doc.update(extra)
    return doc


def write_provenance(model_path: Path, doc: dict) -> Path:
    p = sidecar(model_path, "json")
    out = {
        "model": Path(model_path).name,
        "sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
        "made_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **doc,
    }
    p.write_text(json.dumps(out, indent=2, default=_plain) + "\n")
    return p


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))
