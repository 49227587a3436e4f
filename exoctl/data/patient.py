"""A synthetic patient: gait-cycle joint torques, muscles that produce them, and their EMG.

Why this shape: the controller must be tested against a patient whose EMG and joint torque are
*consistent* (the torque is what the muscles' activations produce through their moment arms)
and whose EMG *leads* the torque by an electromechanical delay, as real EMG does. So:

1. target human joint torques over the gait cycle (sums of periodic bumps, shaped on the
   normal-walking moments of Winter's data, scaled down for a patient with weakness);
2. muscle activations by static optimisation (non-negative, bounded, least effort) against a
   muscle x joint moment matrix (moment arm x maximal force), plus a small tonic co-contraction;
3. the *true* human torque is recomputed from those activations (so it is exactly what the
   muscles make), and is what the HIL bench scores against;
4. neural excitation leads activation by the electromechanical delay; raw EMG is a
   band-limited Gaussian carrier modulated by excitation x the channel's MVC amplitude, plus
   electrode noise, in microvolts.

Stride-to-stride variability (period and amplitude) makes every stride different. The patient
(``seed``: anatomy, EMG gains) is separate from the session (``session``: noise, variability),
so that a calibration made on one session is tested on another session of the same patient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy import optimize, signal

if TYPE_CHECKING:
    from exoctl.config.schema import Config

# Joint torque at full activation (N m) of each muscle about each joint, flexion positive.
# Moment arm x maximal isometric force, rounded; values of the order found in lower-limb models.
MUSCLE_MOMENTS: dict[str, dict[str, float]] = {
    "rectus_femoris": {"hip": 40.0, "knee": -50.0},
    "vastus_lateralis": {"knee": -90.0},
    "vastus_medialis": {"knee": -70.0},
    "biceps_femoris": {"hip": -60.0, "knee": 50.0},
    "semitendinosus": {"hip": -40.0, "knee": 40.0},
    "gluteus_maximus": {"hip": -90.0},
    "tensor_fasciae_latae": {"hip": 45.0},
    "gastrocnemius_medialis": {"knee": 40.0},
}

# Gait-cycle moments in N m/kg as (phase centre, width, amplitude) bumps, flexion positive.
# Hip: extensor in loading response, flexor in pre-swing; knee: extensor in loading, flexor in
# mid-stance, extensor in pre-swing, flexor in terminal swing (deceleration).
_TORQUE_BUMPS: dict[str, list[tuple[float, float, float]]] = {
    "hip": [(0.06, 0.07, -0.55), (0.30, 0.10, -0.12), (0.52, 0.09, 0.55), (0.92, 0.05, -0.25)],
    "knee": [(0.13, 0.06, -0.45), (0.38, 0.08, 0.25), (0.55, 0.05, -0.15), (0.93, 0.05, 0.22)],
}
# Joint angles (rad), flexion positive, same representation.
_ANGLE_BASE = {"hip": 0.1, "knee": 0.25}
_ANGLE_BUMPS: dict[str, list[tuple[float, float, float]]] = {
    "hip": [(0.0, 0.16, 0.28), (0.5, 0.12, -0.40), (0.95, 0.14, 0.25)],
    "knee": [(0.15, 0.06, 0.25), (0.72, 0.10, 0.85)],
}
_TONIC = 0.03  # co-contraction floor of every muscle's activation
_PHASE_POINTS = 1000


def _periodic_bumps(phase: np.ndarray, bumps: Sequence[tuple[float, float, float]]) -> np.ndarray:
    out = np.zeros_like(phase)
    for centre, width, amp in bumps:
        d = (phase - centre + 0.5) % 1.0 - 0.5
        out += amp * np.exp(-0.5 * (d / width) ** 2)
    return out


def split_side(name: str) -> tuple[str, str]:
    """'rectus_femoris_l' -> ('rectus_femoris', 'l')."""
    base, _, side = name.rpartition("_")
    if side not in ("l", "r") or not base:
        raise ValueError(f"muscle or joint name {name!r} must end in _l or _r")
    return base, side


@dataclass(frozen=True)
class Recording:
    """An offline stretch of the synthetic patient, sample-aligned."""

    fs_hz: float
    t: np.ndarray  # (n,) s
    emg: np.ndarray  # (n, m) microvolts
    activation: np.ndarray  # (n, m) true muscle activation
    torque: np.ndarray  # (n, j) true human joint torque, N m
    angles: np.ndarray  # (n, j) joint angles, rad
    muscles: tuple[str, ...]
    joints: tuple[str, ...]


class SyntheticPatient:
    """Generates EMG, activations, torques and angles block by block with carried state."""

    def __init__(
        self,
        muscles: Sequence[str],
        joints: Sequence[str],
        fs_hz: float = 2000.0,
        *,
        seed: int = 1,
        session: int = 0,
        stride_s: float = 1.1,
        body_mass_kg: float = 70.0,
        emg_noise_uv: float = 5.0,
        electromechanical_delay_s: float = 0.05,
        weakness: float = 0.6,
    ) -> None:
        self.muscles = tuple(muscles)
        self.joints = tuple(joints)
        self.fs_hz = float(fs_hz)
        self.stride_s = stride_s
        self.emg_noise_uv = emg_noise_uv
        anat = np.random.default_rng(seed)
        # Separate streams so that the result does not depend on how it is cut into blocks.
        self._stride_rng = np.random.default_rng([seed, session, 1])
        self._carrier_rng = np.random.default_rng([seed, session, 2])
        self._noise_rng = np.random.default_rng([seed, session, 3])
        m, j = len(self.muscles), len(self.joints)

        # Moment matrix (joints x muscles); a muscle acts only on joints of its own side.
        self.moment = np.zeros((j, m))
        for mi, mname in enumerate(self.muscles):
            base, side = split_side(mname)
            if base not in MUSCLE_MOMENTS:
                raise ValueError(
                    f"the simulator has no model of muscle {base!r}; known: {sorted(MUSCLE_MOMENTS)}"
                )
            scale = anat.uniform(0.85, 1.15)
            for ji, jname in enumerate(self.joints):
                jbase, jside = split_side(jname)
                if jside == side:
                    self.moment[ji, mi] = MUSCLE_MOMENTS[base].get(jbase, 0.0) * scale
        # EMG amplitude at full activation (microvolts), per channel: electrode placement,
        # skin and subcutaneous fat make this vary several-fold between channels.
        self.mvc_uv = anat.uniform(120.0, 450.0, size=m)

        # One stride's activations by static optimisation, tabulated over the phase.
        phase = np.arange(_PHASE_POINTS) / _PHASE_POINTS
        target = np.zeros((_PHASE_POINTS, j))
        angles = np.zeros((_PHASE_POINTS, j))
        for ji, jname in enumerate(self.joints):
            jbase, side = split_side(jname)
            shift = 0.0 if side == "l" else 0.5  # right leg half a cycle later
            p = (phase - shift) % 1.0
            target[:, ji] = weakness * body_mass_kg * _periodic_bumps(p, _TORQUE_BUMPS[jbase])
            angles[:, ji] = _ANGLE_BASE[jbase] + _periodic_bumps(p, _ANGLE_BUMPS[jbase])
        self._act_table = self._static_optimisation(target)
        self._angle_table = angles

        # Carried state.
        self._phase = 0.0
        self._period = stride_s
        self._gain = 1.0
        self._n = 0
        self._delay = int(round(electromechanical_delay_s * self.fs_hz))
        self._carrier_sos = signal.butter(4, [30.0, 300.0], "bandpass", fs=self.fs_hz, output="sos")
        self._carrier_zi = np.zeros((self._carrier_sos.shape[0], 2, m))
        self._carrier_rms = self._measure_carrier_rms()
        self._pending_act = np.zeros((0, m))
        self._pending_ang = np.zeros((0, j))

    def _static_optimisation(self, target: np.ndarray) -> np.ndarray:
        """min ||M a - tau||^2 + lam ||a||^2, 0 <= a, per phase point (NNLS on an augmented system)."""
        m = len(self.muscles)
        lam = 2.0
        aug = np.vstack([self.moment, np.sqrt(lam) * np.eye(m)])
        acts = np.empty((target.shape[0], m))
        for i, tau in enumerate(target):
            acts[i], _ = optimize.nnls(aug, np.concatenate([tau, np.zeros(m)]))
        return np.clip(acts + _TONIC, 0.0, 1.0)

    def _measure_carrier_rms(self) -> float:
        x = np.random.default_rng(0).standard_normal((20000, 1))
        y = signal.sosfilt(self._carrier_sos, x, axis=0)
        return float(np.sqrt(np.mean(y[2000:] ** 2)))

    def _activations(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Advance the gait phase by n samples; return activations and angles."""
        dt = 1.0 / self.fs_hz
        phases = np.empty(n)
        gains = np.empty(n)
        ph, period, gain = self._phase, self._period, self._gain
        for i in range(n):
            phases[i] = ph
            gains[i] = gain
            ph += dt / period
            if ph >= 1.0:  # new stride: its own period and effort
                ph -= 1.0
                period = self.stride_s * (1.0 + 0.03 * self._stride_rng.standard_normal())
                gain = float(np.clip(1.0 + 0.08 * self._stride_rng.standard_normal(), 0.75, 1.25))
        self._phase, self._period, self._gain = ph, period, gain
        idx = phases * _PHASE_POINTS
        lo = np.floor(idx).astype(int) % _PHASE_POINTS
        hi = (lo + 1) % _PHASE_POINTS
        w = (idx - np.floor(idx))[:, None]
        act = (1 - w) * self._act_table[lo] + w * self._act_table[hi]
        act = np.clip(_TONIC + (act - _TONIC) * gains[:, None], 0.0, 1.0)
        ang = (1 - w) * self._angle_table[lo] + w * self._angle_table[hi]
        return act, ang

    def next_block(self, n: int) -> Recording:
        """The next n samples. EMG leads activation by the electromechanical delay."""
        # Activations are generated `delay` samples ahead: the excitation of sample k is the
        # activation of sample k + delay.
        need = n + self._delay - self._pending_act.shape[0]
        act_ahead, ang_ahead = self._activations(max(need, 0))
        act_all = np.vstack([self._pending_act, act_ahead])
        ang_all = np.vstack([self._pending_ang, ang_ahead])
        # The true (current) activation lags the excitation; excitation of these n samples
        # is activation at k + delay.
        if self._n == 0 and self._delay:
            # Start-up: the first `delay` samples have activation equal to the first excitation.
            act_all = np.vstack([np.repeat(act_all[:1], self._delay, axis=0), act_all])
            ang_all = np.vstack([np.repeat(ang_all[:1], self._delay, axis=0), ang_all])
        activation = act_all[:n]
        angles = ang_all[:n]
        excitation = act_all[self._delay : self._delay + n]
        self._pending_act = act_all[n:]
        self._pending_ang = ang_all[n:]

        noise = self._carrier_rng.standard_normal((n, len(self.muscles)))
        carrier, self._carrier_zi = signal.sosfilt(
            self._carrier_sos, noise, axis=0, zi=self._carrier_zi
        )
        carrier /= self._carrier_rms
        emg = excitation * self.mvc_uv * carrier
        emg += self.emg_noise_uv * self._noise_rng.standard_normal(emg.shape)
        torque = activation @ self.moment.T
        t = (self._n + np.arange(n)) / self.fs_hz
        self._n += n
        return Recording(
            fs_hz=self.fs_hz,
            t=t,
            emg=emg.astype(np.float32),
            activation=activation,
            torque=torque,
            angles=angles,
            muscles=self.muscles,
            joints=self.joints,
        )

    def generate(self, duration_s: float) -> Recording:
        """An offline recording of the given duration (continues from the current state)."""
        return self.next_block(int(round(duration_s * self.fs_hz)))


def patient_from_config(
    cfg: Config,
    session: int | None = None,
    *,
    muscles: Sequence[str] | None = None,
    joints: Sequence[str] | None = None,
) -> SyntheticPatient:
    """The synthetic patient described by a configuration's simulator section; ``muscles`` and
    ``joints`` pick a subset of its own (a lab that records one leg, a few muscles)."""
    s = cfg.simulator
    session = s.session if session is None else session
    return SyntheticPatient(
        cfg.emg.muscles if muscles is None else muscles,
        cfg.joint_names if joints is None else joints,
        cfg.emg.sampling_rate_hz,
        seed=s.seed,
        session=session,
        stride_s=s.stride_s,
        body_mass_kg=s.body_mass_kg,
        emg_noise_uv=s.emg_noise_uv,
        electromechanical_delay_s=s.electromechanical_delay_s,
    )
