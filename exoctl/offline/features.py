"""Per-tick features from recordings, through the controller's own streaming chain (numpy only).

What the network learns from must be what the estimator computes online, tick by tick, or the
shipped model sees other numbers than it was trained on. So a recording's EMG goes through the
signal chain (``exoctl.signal.chain``: the estimator's conditioner and activation dynamics), is
sampled at the newest EMG sample of every control tick (every ``fs / rate`` samples, as the
estimator sees it), and the synergy activations are solved tick by tick with the same warm-
started NNLS (``synergy_activations``). Angles and velocities are those of the same sample, as
telemetry would give them. A window for tick i is the rows i-N+1..i of this table, the rows
before the first tick repeated from it (the estimator fills its window the same way).

Any EMG rate in, the control rate out (``signal_ticks``): a recording whose rate is not a whole
multiple of the tick rate (100 Hz lab envelopes, 2 kHz envelopes for 1 kHz ticks) has its
envelope carried onto the tick grid causally and the rest of the chain run at the tick rate.

Sources: ``Recording`` (the simulator) and ``Trial`` (a dataset description through
``exoctl.data``); both end as ``TickSet``. Calibration (MVC, W) comes from the training data
the way ``exoctl calibrate`` and ``exoctl.training.linear_model`` make it (``condition``: the
conditioning and activation dynamics over a whole recording).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from exoctl.config.schema import Config
from exoctl.estimation.torque_model import feature_names, kinematic_feature_names
from exoctl.signal.calibration import Calibration
from exoctl.signal.chain import ChainSettings, SignalChain, synergy_activations
from exoctl.signal.synergy import choose_k
from exoctl.signal.tick_grid import carry_columns, samples_per_tick, seen_time

__all__ = [
    "condition",
    "TickSet",
    "TickSpec",
    "signal_ticks",
    "calibrate_recordings",
    "feature_layout",
    "fingerprint",
    "tick_features",
    "windows",
]


def condition(cfg: Config, emg: np.ndarray, mvc: np.ndarray | None) -> np.ndarray:
    """Run the controller's own conditioning + activation dynamics over a whole recording.

    ``mvc`` None: the un-normalised envelope only (what calibration measures the MVC on).
    """
    chain = SignalChain(
        ChainSettings.from_config(cfg), cfg.emg.sampling_rate_hz, emg.shape[1], mvc=mvc
    )
    return chain.envelope(emg) if mvc is None else chain.activations(emg)


WARMUP_S = 2.0  # the envelope and activation filters start from zero: not learned from
WARMUP_ENVELOPE_S = 0.5  # envelopes made elsewhere: only the activation dynamics settle


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


@dataclass(frozen=True)
class TickSpec:
    """What a tick table is made for: the live chain's settings, the control rate, the
    muscles (calibration order) and joints. No Config: a dataset's EMG rate (100 Hz envelopes,
    2 kHz) need not be one a live configuration may run at."""

    chain: ChainSettings
    tick_rate_hz: float
    muscles: tuple[str, ...]
    joints: tuple[str, ...]

    @classmethod
    def from_config(cls, cfg: Config) -> TickSpec:
        return cls(
            ChainSettings.from_config(cfg),
            float(cfg.tick_rate_hz),
            tuple(cfg.emg.muscles),
            tuple(cfg.joint_names),
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
    """Features at every control tick of a recording at the configuration's EMG rate."""
    return signal_ticks(
        TickSpec.from_config(cfg), cal, emg, cfg.emg.sampling_rate_hz,
        angles=angles, torque=torque, kinematics=kinematics, name=name,
        body_mass_kg=body_mass_kg,
    )  # fmt: skip


def signal_ticks(
    spec: TickSpec,
    cal: Calibration,
    emg: np.ndarray,
    fs_hz: float,
    *,
    angles: np.ndarray | None,
    torque: np.ndarray | None,
    kinematics: bool,
    emg_kind: str | None = None,
    name: str = "",
    body_mass_kg: float | None = None,
) -> TickSet:
    """Features at every control tick of a recording whose EMG (and angles, torque) is at
    ``fs_hz``, any rate; ``emg_kind`` raw or enveloped (default: the chain's input).

    - ``fs_hz`` a whole multiple of the tick rate (2 kHz raw for 500 Hz ticks): the live chain
      exactly, sample by sample at ``fs_hz``, read at the newest sample of every tick.
    - any other rate (100 Hz or 2 kHz envelopes for 1 kHz ticks, raw at 1.5 kHz): the envelope
      at the source's own rate (raw EMG conditioned there), carried onto the tick grid
      causally (linear interpolation one source sample late: a tick never sees a sample that
      has not arrived), then MVC and activation dynamics at the tick rate, as a live chain fed
      that envelope at the tick rate runs them. Angles and velocities the same way; the
      torque (the label, not an input) at the tick instant.
    """
    fs, rate = float(fs_hz), float(spec.tick_rate_hz)
    kind = emg_kind or spec.chain.input
    chain = spec.chain.with_input(kind)
    m, nj = len(spec.muscles), len(spec.joints)
    emg = np.asarray(emg, dtype=np.float64)
    if emg.ndim != 2 or emg.shape[1] != m:
        raise ValueError(f"{name or 'recording'}: EMG of shape {emg.shape}, expected (n, {m})")
    n = emg.shape[0]
    if kinematics and angles is None:
        raise ValueError(
            f"{name or 'trial'}: the model uses joint angles and velocities, but the data "
            "has no angles; train with --no-kinematics or give angle files"
        )
    ang = None if angles is None else np.asarray(angles, dtype=np.float64).reshape(-1, nj)
    spt = samples_per_tick(fs, rate)
    if spt is not None:
        a_full = SignalChain(chain, fs, m, mvc=cal.mvc).activations(emg)
        idx = np.arange(spt - 1, n, spt)
        a = a_full[idx]
        kin = None
        if kinematics:
            assert ang is not None  # refused above without angles
            kin = np.hstack([ang[idx], np.gradient(ang, 1.0 / fs, axis=0)[idx]])
        y = None if torque is None else np.asarray(torque).reshape(-1, nj)[idx]
        mode = f"{spt} sample(s) per tick"
    else:
        env = emg if kind == "enveloped" else SignalChain(chain, fs, m).envelope(emg)
        t_src = np.arange(n) / fs
        t_tick = np.arange(int(np.floor((n - 1) / fs * rate + 1e-9)) + 1) / rate
        seen = seen_time(t_tick, fs)  # one source sample late: causal (as the live estimator)
        e = carry_columns(seen, t_src, env)
        a = SignalChain(chain.with_input("enveloped"), rate, m, mvc=cal.mvc).activations(e)
        kin = None
        if kinematics:
            assert ang is not None  # refused above without angles
            vel = np.asarray(np.gradient(ang, 1.0 / fs, axis=0)) if n > 1 else np.zeros_like(ang)
            kin = np.hstack([carry_columns(seen, t_src, ang), carry_columns(seen, t_src, vel)])
        y = None
        if torque is not None:
            y = carry_columns(t_tick, t_src, np.asarray(torque, dtype=np.float64).reshape(-1, nj))
        mode = f"resampled from {fs:g} Hz"
    h = synergy_activations(cal.W, a)
    parts = [h, a] + ([kin] if kin is not None else [])
    X = np.hstack(parts).astype(np.float32)
    warm_s = WARMUP_S if kind == "raw" else WARMUP_ENVELOPE_S
    return TickSet(
        name=name,
        X=X,
        y=None if y is None else np.asarray(y, dtype=np.float32),
        tick_rate_hz=rate,
        warm=min(int(round(warm_s * rate)), max(X.shape[0] - 1, 0)),
        names=feature_layout(spec.muscles, spec.joints, cal.k, kinematics),
        body_mass_kg=body_mass_kg,
        fingerprint=fingerprint(emg, angles, torque),
        info={"emg_rate_hz": fs, "emg_kind": kind, "ticks": mode},
    )


def windows(X: np.ndarray, ticks: np.ndarray, n: int) -> np.ndarray:
    """Windows (len(ticks), n, F) ending at the given ticks, padded with row 0 before the start."""
    offs = np.arange(-n + 1, 1)
    rows = np.clip(ticks[:, None] + offs[None, :], 0, None)
    return X[rows]
