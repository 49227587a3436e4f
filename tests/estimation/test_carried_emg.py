"""EMG at a rate that is not a whole multiple of the tick rate, live as offline.

On the committed real excerpt (``tests/fixtures/ceinms-s06-walk36``: 8 s of 100 Hz envelopes,
Apache-2.0) the live estimator, fed the samples as they arrive by their stamps, gives the
model the inputs the offline tick features give it (``exoctl.training.features``), tick by
tick; a right-leg model on the four-joint device leaves the left joints at zero.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exoctl.config.schema import Config, load_config
from exoctl.data.calibrate import calibrate_trials
from exoctl.data.dataset import load_dataset
from exoctl.errors import NonFiniteEmg
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.signal.calibration import load_calibration
from exoctl.signal.tick_grid import TickCarrier, carry_columns, seen_time
from exoctl.training.evaluation import predict
from exoctl.training.pipeline import DataSource, trial_tick_sets
from exoctl.training.workflow import fit_ridge_model

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ceinms-s06-walk36" / "dataset.yaml"


def replay_config(muscles, joints: list[str] | None = None, fs: float = 100.0) -> Config:
    """The default device (four joints, or ``joints``), this data's muscles, 100 Hz envelopes."""
    data = load_config().model_dump()
    if joints is not None:
        by_name = {j["name"]: j for j in data["device"]["joints"]}
        data["device"]["joints"] = [by_name[j] for j in joints]
        data["control"]["assist_gain"] = {j: 0.0 for j in joints}
    data["emg"]["muscles"] = list(muscles)
    data["emg"]["sampling_rate_hz"] = fs
    data["estimator"]["input"] = "enveloped"
    data["simulator"]["emg_chunk_samples"] = 1
    return Config.model_validate(data)


@pytest.fixture(scope="module")
def ridge(tmp_path_factory):
    """A lagged-ridge model on the excerpt (right leg: hip_r, knee_r, with kinematics)."""
    tmp = tmp_path_factory.mktemp("carried")
    ds = load_dataset(FIXTURE)
    trial = ds.load_trial("walk36")
    cfg = replay_config(ds.muscles, list(ds.joints))
    cal = calibrate_trials([trial], where=FIXTURE).calibration
    cal_path = cal.save(tmp / "ridge.calibration.yaml")
    data = trial_tick_sets(cfg, [trial], cal, ds.joints, where=FIXTURE, kinematics=True,
                           need_torque=True)  # fmt: skip
    path = tmp / "ridge.onnx"
    fit_ridge_model(path, data.sets, data, cal, [DataSource("dataset", None, (), ())])
    return ds, trial, data.sets[0], path, cal_path


def _stream(est: Estimator, trial, ts, phase_s: float) -> np.ndarray:
    """Tick i at i / 500 + phase; sample j stamped and arriving at j / 100."""
    k, m = est.k, est.n_muscles
    stamps = np.arange(trial.emg.shape[0]) / trial.fs_hz
    nj = (ts.X.shape[1] - k - m) // 2
    ang = np.zeros(nj)
    vel = np.zeros(nj)
    out = []
    sent = 0
    for i in range(ts.n):
        now = i / ts.tick_rate_hz + phase_s
        upto = int(np.searchsorted(stamps, now, side="right"))
        ang[:] = ts.X[i, k + m : k + m + nj]
        vel[:] = ts.X[i, k + m + nj :]
        chunk = trial.emg[sent:upto].astype(np.float32)
        out.append(est.step(chunk, ang, vel, stamps[sent:upto], now).copy())
        sent = upto
    return np.array(out)


def test_tick_carrier_is_the_offline_carry(ridge):
    _, trial, _, _, _ = ridge
    fs = trial.fs_hz
    t_src = np.arange(trial.emg.shape[0]) / fs
    ticks = np.arange(3000) / 500.0 + 0.0007
    want = carry_columns(seen_time(ticks, fs), t_src, trial.emg)
    carrier = TickCarrier(fs, trial.emg.shape[1])
    got = np.empty_like(want)
    sent = 0
    for i, t in enumerate(ticks):
        upto = int(np.searchsorted(t_src, t, side="right"))
        carrier.push(trial.emg[sent:upto], t_src[sent:upto])
        sent = upto
        got[i] = carrier.at(t)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def test_live_estimator_on_100_hz_envelopes_matches_the_offline_features(ridge):
    ds, trial, ts, path, cal_path = ridge
    offline = predict(path, ts)
    cfg = replay_config(ds.muscles, list(ds.joints))
    est = Estimator(cfg, load_calibration(cal_path), TorqueModel(path))
    assert est.needs_time
    live = _stream(est, trial, ts, phase_s=0.0)
    np.testing.assert_allclose(live, offline, rtol=1e-4, atol=1e-4 * np.abs(offline).max())


def test_a_right_leg_model_on_the_four_joint_device_leaves_the_left_joints_unassisted(ridge):
    ds, trial, ts, path, cal_path = ridge
    offline = predict(path, ts)
    cfg = replay_config(ds.muscles)  # hip_l, hip_r, knee_l, knee_r
    est = Estimator(cfg, load_calibration(cal_path), TorqueModel(path))
    assert est.assisted == ("hip_r", "knee_r") and est.unassisted == ("hip_l", "knee_l")
    # the kinematic features come from the device's joints of the same names
    k, m = est.k, est.n_muscles
    n = ts.n
    live = np.zeros((n, 4))
    ang = np.zeros(4)
    vel = np.zeros(4)
    stamps = np.arange(trial.emg.shape[0]) / trial.fs_hz
    sent = 0
    for i in range(n):
        now = i / ts.tick_rate_hz
        upto = int(np.searchsorted(stamps, now, side="right"))
        ang[[1, 3]] = ts.X[i, k + m : k + m + 2]
        vel[[1, 3]] = ts.X[i, k + m + 2 :]
        live[i] = est.step(trial.emg[sent:upto], ang, vel, stamps[sent:upto], now)
        sent = upto
    assert not live[:, [0, 2]].any()
    np.testing.assert_allclose(live[:, [1, 3]], offline, rtol=1e-4,
                               atol=1e-4 * np.abs(offline).max())  # fmt: skip


def test_a_model_with_a_joint_the_device_lacks_is_refused(ridge):
    ds, _, _, path, cal_path = ridge
    cfg = replay_config(ds.muscles, ["hip_l", "hip_r", "knee_l"])
    with pytest.raises(ModelError, match=r"\['knee_r'\] not among the configured"):
        Estimator(cfg, load_calibration(cal_path), TorqueModel(path))


def test_non_finite_carried_emg_is_refused_before_it_reaches_the_state(ridge):
    ds, trial, _, path, cal_path = ridge
    est = Estimator(replay_config(ds.muscles, list(ds.joints)), load_calibration(cal_path),
                    TorqueModel(path))  # fmt: skip
    est.step(trial.emg[:5], None, None, np.arange(5) / 100.0, 0.045)
    bad = trial.emg[5:6].copy()
    bad[0, 3] = np.nan
    with pytest.raises(NonFiniteEmg):
        est.step(bad, None, None, np.array([0.05]), 0.052)
    good = est.step(trial.emg[6:7], None, None, np.array([0.06]), 0.062)
    assert np.isfinite(good).all()
