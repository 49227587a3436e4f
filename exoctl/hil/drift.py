"""Long-term drift of a synthetic patient: later sessions that a session-0 model no longer fits.

Why: adversarial adaptation (``exoctl adapt``) exists because a patient's later sessions are
not like the calibration session, and accuracy must hold over weeks of use. To have something
real to fix, session ``s`` of a patient drifts from session 0 the way real recordings do, more
with every session (severity ``s / (n_sessions - 1)``, 1.0 for the last one):

- **electrode shift**: an electrode re-placed a little off its muscle picks up its neighbour,
  i.e. changed crosstalk, a mixing matrix ``emg' = emg @ M.T`` with M = I plus a fraction of a
  neighbouring channel of the same leg;
- **gain change**: skin impedance, fat, electrode gel: a per-channel amplitude factor;
- **fatigue**: for the same force the EMG amplitude rises and its spectrum moves to lower
  frequencies (median frequency falls), growing through the session;
- **spasticity**: a velocity-dependent stretch reflex of the knee extensors during fast knee
  flexion (early swing): involuntary activation that *does* produce torque;
- **weakness**: part of the gait torque pattern is lost (a weaker hip flexor push-off and a
  weaker knee extension in loading), so the muscles' activations change with it.

The first three change only the EMG (the torque is what it was: the model should not change its
answer); the last two change the activations and therefore the true torque, which is always
recomputed from the activations (``torque = activation @ moment.T``), so the truth stays what
the muscles do. The direction of each drift is fixed per patient (seeded), its size grows with
the session index.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import signal

from exoctl.data.patient import (
    _PHASE_POINTS,
    _TORQUE_BUMPS,
    Recording,
    SyntheticPatient,
    _periodic_bumps,
    split_side,
)

__all__ = ["Drift", "DriftedPatient", "drift_for_session", "session_recordings"]

_QUADRICEPS = ("rectus_femoris", "vastus_lateralis", "vastus_medialis")


@dataclass(frozen=True)
class Drift:
    """The drift of one session relative to session 0 (all zero/identity: no drift)."""

    severity: float
    mixing: np.ndarray  # (m, m) electrode crosstalk, emg' = emg @ mixing.T
    gain: np.ndarray  # (m,) amplitude factor per channel
    fatigue: float  # amplitude rise at the end of the fatigue ramp (0.2 = +20 %)
    fatigue_ramp_s: float  # time over which fatigue builds within the session
    spectral_shift: float  # 0..1 blend towards a low-passed EMG (median frequency falls)
    spasticity: float  # stretch-reflex activation per unit of normalised knee flexion velocity
    weakness: dict[str, float]  # joint base ('hip', 'knee') -> fraction of push lost

    def as_dict(self) -> dict:
        return {
            "severity": self.severity,
            "crosstalk_max": float(np.max(self.mixing - np.diag(np.diag(self.mixing)))),
            "gain": [round(float(g), 4) for g in self.gain],
            "fatigue": self.fatigue,
            "spectral_shift": self.spectral_shift,
            "spasticity": self.spasticity,
            "weakness": dict(self.weakness),
        }


def drift_for_session(
    muscles: Sequence[str],
    seed: int,
    session_index: int,
    n_sessions: int = 5,
    *,
    scale: float = 1.0,
) -> Drift:
    """Drift of session ``session_index`` (0 = the calibration session, no drift)."""
    if n_sessions < 1 or not 0 <= session_index < max(n_sessions, 1):
        raise ValueError(f"session_index {session_index} outside 0..{n_sessions - 1}")
    sev = scale * (session_index / (n_sessions - 1) if n_sessions > 1 else 0.0)
    m = len(muscles)
    rng = np.random.default_rng([seed, 7919])  # the patient's drift directions
    sides = [split_side(mu)[1] for mu in muscles]
    mixing = np.eye(m)
    for i in range(m):
        same = [j for j in range(m) if j != i and sides[j] == sides[i]]
        if not same:
            continue
        j = int(rng.choice(same))
        c = sev * rng.uniform(0.05, 0.20)
        mixing[i, i] -= c
        mixing[i, j] += c
    gain = np.exp(sev * rng.normal(0.0, 0.30, size=m))
    return Drift(
        severity=sev,
        mixing=mixing,
        gain=gain,
        fatigue=sev * rng.uniform(0.15, 0.30),
        fatigue_ramp_s=60.0,
        spectral_shift=sev * 0.6,
        spasticity=sev * rng.uniform(0.03, 0.08),
        weakness={"hip": sev * rng.uniform(0.10, 0.25), "knee": sev * rng.uniform(0.10, 0.25)},
    )


class DriftedPatient(SyntheticPatient):
    """A ``SyntheticPatient`` whose session carries a ``Drift`` (see the module docstring)."""

    def __init__(
        self,
        muscles: Sequence[str],
        joints: Sequence[str],
        fs_hz: float = 2000.0,
        *,
        drift: Drift,
        body_mass_kg: float = 70.0,
        weakness: float = 0.6,
        **kw,
    ) -> None:
        super().__init__(muscles, joints, fs_hz, body_mass_kg=body_mass_kg, weakness=weakness, **kw)
        self.drift = drift
        m = len(self.muscles)
        # Weakness: the torque pattern loses part of its push; activations follow it.
        if any(drift.weakness.values()):
            phase = np.arange(_PHASE_POINTS) / _PHASE_POINTS
            target = np.zeros((_PHASE_POINTS, len(self.joints)))
            for ji, jname in enumerate(self.joints):
                jbase, side = split_side(jname)
                p = (phase - (0.0 if side == "l" else 0.5)) % 1.0
                lost = drift.weakness.get(jbase, 0.0)
                bumps = [
                    # hip flexor push-off (positive bump) and knee loading extension (first)
                    (c, w, a * (1.0 - lost) if (jbase == "hip" and a > 0) or k == 0 else a)
                    for k, (c, w, a) in enumerate(_TORQUE_BUMPS[jbase])
                ]
                target[:, ji] = weakness * body_mass_kg * _periodic_bumps(p, bumps)
            self._act_table = self._static_optimisation(target)
        # Spasticity: which muscles are quadriceps of which knee.
        self._spastic: list[tuple[int, int]] = []  # (muscle index, knee joint index)
        for mi, mu in enumerate(self.muscles):
            base, side = split_side(mu)
            if base in _QUADRICEPS and f"knee_{side}" in self.joints:
                self._spastic.append((mi, self.joints.index(f"knee_{side}")))
        self._last_angle: np.ndarray | None = None
        self._shift_b, self._shift_a = signal.butter(1, 120.0, fs=self.fs_hz)
        self._shift_zi = np.zeros((1, m))
        self._t_emg = 0

    def _activations(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        act, ang = super()._activations(n)
        if self.drift.spasticity <= 0 or n == 0 or not self._spastic:
            return act, ang
        prev = ang[:1] if self._last_angle is None else self._last_angle[None, :]
        vel = np.diff(np.vstack([prev, ang]), axis=0) * self.fs_hz
        self._last_angle = ang[-1].copy()
        for mi, ji in self._spastic:
            # a stretch reflex above ~2 rad/s of knee flexion, saturating at ~4 rad/s
            reflex = np.clip((vel[:, ji] - 2.0) / 2.0, 0.0, 1.0)
            act[:, mi] = np.clip(act[:, mi] + self.drift.spasticity * reflex, 0.0, 1.0)
        return act, ang

    def next_block(self, n: int) -> Recording:
        rec = super().next_block(n)
        d = self.drift
        emg = rec.emg.astype(np.float64) @ d.mixing.T
        if d.spectral_shift > 0:
            low, self._shift_zi = signal.lfilter(
                self._shift_b, self._shift_a, emg, axis=0, zi=self._shift_zi
            )
            # keep the power of the band the conditioner sees roughly the same: the loss of
            # high frequencies alone would lower the envelope; fatigue below raises it
            emg = (1.0 - d.spectral_shift) * emg + d.spectral_shift * 1.6 * low
        t = (self._t_emg + np.arange(n)) / self.fs_hz
        self._t_emg += n
        fatigue = 1.0 + d.fatigue * (0.5 + 0.5 * np.minimum(t / d.fatigue_ramp_s, 1.0))
        emg *= d.gain * fatigue[:, None]
        return dataclasses.replace(rec, emg=emg.astype(np.float32))


def session_recordings(
    muscles: Sequence[str],
    joints: Sequence[str],
    *,
    seed: int,
    n_sessions: int,
    duration_s: float,
    fs_hz: float = 2000.0,
    scale: float = 1.0,
    session_offset: int = 0,
    **patient_kw,
) -> list[Recording]:
    """One recording per session of patient ``seed``; session 0 undrifted, the last the most."""
    out = []
    for s in range(n_sessions):
        drift = drift_for_session(muscles, seed, s, n_sessions, scale=scale)
        p = DriftedPatient(
            muscles,
            joints,
            fs_hz,
            drift=drift,
            seed=seed,
            session=session_offset + s,
            **patient_kw,
        )
        out.append(p.generate(duration_s))
    return out
