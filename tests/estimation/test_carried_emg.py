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


def _stream_with_late_telemetry(
    est: Estimator, trial, ts, latency_s: np.ndarray, ticks: np.ndarray, stamped: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """The controller's view on a loaded machine: calls at tick times ``ticks`` (some late,
    some missing); the device measures the kinematics at every tick instant i / 500 and its
    frame for instant i is sent ``latency_s[i]`` later, in order (a late frame holds back the
    ones behind it), stamped with the device's own clock
    (offset 7 s from the host's; the host learns it from the frame that waited least); EMG sample j stamped and arriving at j / 100.
    ``stamped`` False: the frames' device times are not given (the newest frame taken as
    measured now, as before pairing). Returns the instant each call's estimate is for, and the
    estimates."""
    k, m, rate = est.k, est.n_muscles, ts.tick_rate_hz
    nj = (ts.X.shape[1] - k - m) // 2
    stamps = np.arange(trial.emg.shape[0]) / trial.fs_hz
    arrives = np.maximum.accumulate(np.arange(ts.n) / rate + latency_s)  # in order, as on a wire
    paired, out = [], []
    sent = 0
    for now in ticks:
        upto = int(np.searchsorted(stamps, now, side="right"))
        got = np.flatnonzero(arrives <= now)  # the newest frame that has arrived
        if got.size:
            i = int(got[np.argmax(got)])
            ang, vel = ts.X[i, k + m : k + m + nj], ts.X[i, k + m + nj :]
            fw, rx = (i / rate - 7.0, float(arrives[i])) if stamped else (np.nan, np.nan)
        else:
            ang = vel = None
            fw = rx = float("nan")
        chunk = trial.emg[sent:upto].astype(np.float32)
        est.step(chunk, ang, vel, stamps[sent:upto], float(now), fw, rx)
        sent = upto
        paired.append(est.paired_at)
        out.append(est.estimate.copy())
    return np.array(paired), np.array(out)


def test_kinematics_are_paired_with_the_emg_by_time_not_by_arrival(ridge):
    """Telemetry frames arrive 0.2-9 ms late (pty, scheduling): each estimate is the offline
    one for the instant both inputs cover, whatever the latency of that tick's frame. Taking
    the newest frame as measured now (no pairing) is off by far more."""
    ds, trial, ts, path, cal_path = ridge
    offline = predict(path, ts)
    cal = load_calibration(cal_path)
    cfg = replay_config(ds.muscles, list(ds.joints))
    rng = np.random.default_rng(3)
    latency = rng.uniform(0.0002, 0.009, ts.n)
    latency[::50] = 0.0  # some frames wait no time: the device clock's offset is then exact
    ticks = np.arange(ts.n) / ts.tick_rate_hz + 0.0013
    est = Estimator(cfg, cal, TorqueModel(path))
    paired, live = _stream_with_late_telemetry(est, trial, ts, latency, ticks)
    idx = np.rint(paired * ts.tick_rate_hz).astype(int)
    np.testing.assert_allclose(paired, idx / ts.tick_rate_hz, atol=1e-9)  # on the tick grid
    assert (ticks - paired).max() < 0.012  # never more than the latency + one tick behind
    # not exact: the loop reads the newest frame per tick, so after a late frame holds back
    # the ones behind it, some frames are never seen and the kinematics are interpolated
    # across the gap (and the device clock's offset may rise 2e-5 s/s between frames that
    # waited no time)
    tol = 1e-2 * np.abs(offline).max()
    np.testing.assert_allclose(live, offline[idx], rtol=0, atol=tol)
    unpaired = Estimator(cfg, cal, TorqueModel(path))
    p2, old = _stream_with_late_telemetry(unpaired, trial, ts, latency, ticks, stamped=False)
    i2 = np.minimum(np.rint(p2 * ts.tick_rate_hz).astype(int), ts.n - 1)
    assert np.abs(old - offline[i2]).max() > 10 * tol


def test_a_stalled_loop_feeds_the_model_one_row_per_tick_of_time(ridge):
    """The loop misses 14 ms and 40 ms (no calls): the next estimate is the offline one for
    its instant, the window model having seen every tick-grid row in between (one row per
    call would leave the window 7 and 20 rows short for the next 200 ms). Not exact: the
    frames sent during a stall are not read (the loop reads the newest frame per tick), so
    the rows made up for it interpolate the kinematics across the stall."""
    ds, trial, ts, path, cal_path = ridge
    offline = predict(path, ts)
    est = Estimator(replay_config(ds.muscles, list(ds.joints)), load_calibration(cal_path),
                    TorqueModel(path))  # fmt: skip
    rate = ts.tick_rate_hz
    ticks = np.arange(ts.n) / rate + 0.0013
    keep = np.ones(ts.n, dtype=bool)
    keep[1000:1007] = False  # 14 ms without a tick
    keep[2000:2020] = False  # 40 ms
    latency = np.zeros(ts.n)  # frames on time: only the stalls differ from offline
    paired, live = _stream_with_late_telemetry(est, trial, ts, latency, ticks[keep])
    idx = np.rint(paired * rate).astype(int)
    assert len(np.flatnonzero(np.diff(ticks[keep]) > 1.5 / rate)) == 2
    np.testing.assert_allclose(live, offline[idx], rtol=0, atol=1e-2 * np.abs(offline).max())
