"""Per-tick features from recordings, through the controller's own streaming chain (numpy only).

What the network learns from must be what the estimator computes online, tick by tick, or the
shipped model sees other numbers than it was trained on. So a recording's EMG goes through
``exoctl.training.linear_model.condition`` (the estimator's conditioner and activation dynamics), is
sampled at the newest EMG sample of every control tick (every ``fs / rate`` samples, as the
estimator sees it), and the synergy activations are solved tick by tick with the same warm-
started NNLS (``synergy_activations``). Angles and velocities are those of the same sample, as
telemetry would give them. A window for tick i is the rows i-N+1..i of this table, the rows
before the first tick repeated from it (the estimator fills its window the same way).

Sources: ``Recording`` (the simulator) and ``Trial`` (a dataset description through
``exoctl.data``); both end as ``TickSet``. Calibration (MVC, W) comes from the training data
the way ``exoctl calibrate`` and ``exoctl.training.linear_model`` make it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from exoctl.config.schema import Config
from exoctl.estimation.torque_model import feature_names, kinematic_feature_names
from exoctl.signal.calibration import Calibration
from exoctl.signal.synergy import choose_k
from exoctl.training.linear_model import condition, synergy_activations

__all__ = [
    "TickSet",
    "calibrate_recordings",
    "config_for",
    "feature_layout",
    "fingerprint",
    "tick_features",
    "windows",
]

WARMUP_S = 2.0  # the envelope and activation filters start from zero: not learned from


@dataclass
class TickSet:
    """One trial's per-tick features (T, F), torques (T, J) or None, and where they came from."""

    name: str
    X: np.ndarray
    y: np.ndarray | None
    tick_rate_hz: float
    warm: int  # ticks at the start not to learn from or score
    names: tuple[str, ...] = ()  # per-tick feature names (columns of X)
    body_mass_kg: float | None = None
    fingerprint: str = ""
    info: dict = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    @property
    def torques(self) -> np.ndarray:
        """``y`` for a set known to be labelled (fitting, scoring); says which set if it is not."""
        if self.y is None:
            raise ValueError(
                f"trial {self.name!r} has no joint torques: it cannot be fitted or scored"
            )
        return self.y


def feature_layout(
    muscles: Sequence[str], joints: Sequence[str], k: int, kinematics: bool
) -> tuple[str, ...]:
    """Per-tick feature names: h, a, then (if used) angles and velocities."""
    names = feature_names(muscles, k)
    return names + (kinematic_feature_names(joints) if kinematics else ())


def config_for(
    cfg: Config, muscles: Sequence[str], joints: Sequence[str], fs_hz: float, **over
) -> Config:
    """The configuration with a dataset's muscles, joints and EMG rate (filters kept).

    Joints keep their device limits from ``cfg``; ``over`` replaces whole sections' keys.
    """
    data = cfg.model_dump()
    byname = {j["name"]: j for j in data["device"]["joints"]}
    missing = [j for j in joints if j not in byname]
    if missing:
        raise ValueError(f"joints {missing} are not in the configuration's device.joints")
    data["device"]["joints"] = [byname[j] for j in joints]
    gains = data["control"]["assist_gain"]
    data["control"]["assist_gain"] = {j: gains.get(j, 0.0) for j in joints}
    data["emg"]["muscles"] = list(muscles)
    data["emg"]["sampling_rate_hz"] = float(fs_hz)
    for section, values in over.items():
        data[section].update(values)
    return Config.model_validate(data)


def fingerprint(*arrays: np.ndarray | None) -> str:
    """sha256 of the raw data a model was trained on (provenance, not security)."""
    h = hashlib.sha256()
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return "sha256:" + h.hexdigest()[:32]


def calibrate_recordings(
    cfg: Config, emgs: Sequence[np.ndarray], *, k: int | None = None, source: dict | None = None
) -> Calibration:
    """MVC (99.5th percentile of the envelope) and W (NMF, K by VAF 90 %), as linear_model does."""
    fs = cfg.emg.sampling_rate_hz
    warm = int(WARMUP_S * fs)
    env = np.vstack([condition(cfg, e, None)[warm:] for e in emgs])
    mvc = np.percentile(env, 99.5, axis=0)
    # ~100 Hz is enough for NMF (the envelope holds nothing above ~10 Hz); VAF curve to K=5
    step = max(1, int(round(fs / 100.0)))
    a = np.vstack([condition(cfg, e, mvc)[warm::step] for e in emgs])
    choice = choose_k(a, vaf_threshold=0.9, k_max=None if k else min(5, a.shape[1]), k=k)
    return Calibration(
        muscles=tuple(cfg.emg.muscles),
        mvc=mvc,
        W=choice.W,
        vaf=choice.vaf,
        source={
            "made_by": "exoctl.training",
            "mvc": "99.5th percentile of the conditioned envelope (no MVC trial)",
            "vaf_by_k": {int(kk): round(v, 4) for kk, v in choice.vaf_by_k.items()},
            **(source or {}),
        },
    )


def tick_features(
    cfg: Config,
    cal: Calibration,
    emg: np.ndarray,
    *,
    angles: np.ndarray | None,
    torque: np.ndarray | None,
    kinematics: bool,
    name: str = "",
    body_mass_kg: float | None = None,
) -> TickSet:
    """Features at every control tick of a recording (EMG at ``cfg.emg.sampling_rate_hz``)."""
    fs, rate = cfg.emg.sampling_rate_hz, cfg.control.rate_hz
    spt = fs / rate
    if abs(spt - round(spt)) > 1e-9 or spt < 1:
        raise ValueError(
            f"the EMG rate {fs:g} Hz is not a whole multiple of the control rate {rate:g} Hz"
        )
    spt = int(round(spt))
    a_full = condition(cfg, emg, cal.mvc)
    idx = np.arange(spt - 1, emg.shape[0], spt)
    a = a_full[idx]
    h = synergy_activations(cal.W, a)
    parts = [h, a]
    nj = len(cfg.joint_names)
    if kinematics:
        if angles is None:
            raise ValueError(
                f"{name or 'trial'}: the model uses joint angles and velocities, but the data "
                "has no angles; train with --no-kinematics or give angle files"
            )
        ang = np.asarray(angles, dtype=np.float64).reshape(-1, nj)
        vel = np.gradient(ang, 1.0 / fs, axis=0)
        parts += [ang[idx], vel[idx]]
    X = np.hstack(parts).astype(np.float32)
    y = None if torque is None else np.asarray(torque, dtype=np.float32).reshape(-1, nj)[idx]
    return TickSet(
        name=name,
        X=X,
        y=y,
        tick_rate_hz=rate,
        warm=int(WARMUP_S * rate),
        names=feature_layout(cfg.emg.muscles, cfg.joint_names, cal.k, kinematics),
        body_mass_kg=body_mass_kg,
        fingerprint=fingerprint(emg, angles, torque),
    )


def windows(X: np.ndarray, ticks: np.ndarray, n: int) -> np.ndarray:
    """Windows (len(ticks), n, F) ending at the given ticks, padded with row 0 before the start."""
    offs = np.arange(-n + 1, 1)
    rows = np.clip(ticks[:, None] + offs[None, :], 0, None)
    return X[rows]
