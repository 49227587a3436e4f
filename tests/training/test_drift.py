"""Multi-session drift of the synthetic patient: session 0 is the patient, later ones drift."""

from __future__ import annotations

import numpy as np

from exoctl.data.patient import SyntheticPatient
from exoctl.estimation.metrics import r2 as r2_score
from exoctl.hil.drift import DriftedPatient, drift_for_session, session_recordings
from exoctl.training.features import calibrate_recordings, tick_features
from exoctl.training.linear_model import fit_ridge


def test_session_zero_is_the_undrifted_patient(cfg):
    m, j = cfg.emg.muscles, cfg.joint_names
    d0 = drift_for_session(m, seed=4, session_index=0)
    assert d0.severity == 0 and np.allclose(d0.mixing, np.eye(len(m))) and np.allclose(d0.gain, 1)
    a = DriftedPatient(m, j, drift=d0, seed=4, session=0).generate(1.0)
    b = SyntheticPatient(m, j, seed=4, session=0).generate(1.0)
    np.testing.assert_allclose(a.emg, b.emg, rtol=1e-6, atol=1e-4)
    np.testing.assert_array_equal(a.torque, b.torque)


def test_drift_grows_with_the_session_and_truth_stays_what_muscles_do(cfg):
    m, j = cfg.emg.muscles, cfg.joint_names
    drifts = [drift_for_session(m, seed=5, session_index=s) for s in range(5)]
    off = [np.abs(d.mixing - np.eye(len(m))).sum() for d in drifts]
    assert off == sorted(off) and off[0] == 0 < off[1]
    assert [d.spasticity for d in drifts] == sorted(d.spasticity for d in drifts)
    p = DriftedPatient(m, j, drift=drifts[4], seed=5, session=4)
    rec = p.generate(3.0)
    # the truth is exactly what the (spastic, weaker) activations produce
    np.testing.assert_allclose(rec.torque, rec.activation @ p.moment.T, atol=1e-9)
    # spasticity: quadriceps activation rises during fast knee flexion only
    plain = DriftedPatient(
        m, j, drift=drift_for_session(m, seed=5, session_index=0), seed=5, session=4
    )
    plain._act_table = p._act_table  # same weakness, no reflex: isolates the spasticity
    base = plain.generate(3.0)
    vl = m.index("vastus_lateralis_l")
    diff = rec.activation[:, vl] - base.activation[:, vl]
    assert diff.min() >= -1e-12 and diff.max() > 0.01
    assert np.count_nonzero(diff > 1e-6) < 0.5 * len(diff)


def test_a_session_zero_model_degrades_on_later_sessions(cfg):
    recs = session_recordings(
        cfg.emg.muscles, cfg.joint_names, seed=2, n_sessions=5, duration_s=14.0
    )
    cal = calibrate_recordings(cfg, [recs[0].emg], k=3)
    sets = [
        tick_features(cfg, cal, r.emg, angles=None, torque=r.torque, kinematics=False) for r in recs
    ]
    w = sets[0].warm
    coef, b = fit_ridge(sets[0].X[w:].astype(float), sets[0].y[w:].astype(float))
    r2 = [float(np.mean(r2_score(s.y[w:], s.X[w:] @ coef + b))) for s in sets]
    assert r2[0] > 0.95
    assert r2[4] < r2[1] - 0.02 and r2[4] < 0.93, r2
