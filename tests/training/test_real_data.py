"""Training and running models on the shared real recordings (``../shared/data``).

Small budgets (a short excerpt, one epoch): these check that real files go all the way through
(100 Hz envelopes to 500 Hz ticks, 2 kHz envelopes to 1 kHz ticks, the live estimator fed the
same stream) and that a model learns something real, not how accurate it gets: that is the
protocol's job (``exoctl evaluate --protocol real``, docs/adaptation.md).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from exoctl.cli import main
from exoctl.config.schema import Config, load_config
from exoctl.data.calibrate import calibrate_trials
from exoctl.data.dataset import load_dataset
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.signal.calibration import load_calibration
from exoctl.signal.chain import ChainSettings
from exoctl.training.evaluation import predict
from exoctl.training.pipeline import DataSource, split_tail, trial_tick_sets
from exoctl.training.workflow import NetworkRecipe, fit_network_model, score_sets

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
CEINMS = REPO / "datasets" / "ceinms-lowerlimb-s06.yaml"
MOCO = REPO / "datasets" / "moco-3dwalking.yaml"

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared real data is not beside the repository ({SHARED})"
)


def test_network_on_real_envelopes_beats_the_mean_torque_on_held_out_ticks(tmp_path):
    ds = load_dataset(CEINMS)
    walk = ds.load_trial("walk36")
    n = int(24.0 * walk.fs_hz)  # 24 s of 100 Hz envelopes
    excerpt = dataclasses.replace(
        walk, t=walk.t[:n], emg=walk.emg[:n], torque=walk.torque[:n], angles=walk.angles[:n]
    )
    head_trial = dataclasses.replace(excerpt, t=excerpt.t[: int(0.8 * n)],
                                     emg=excerpt.emg[: int(0.8 * n)])  # fmt: skip
    cal = calibrate_trials([head_trial], where=CEINMS).calibration
    data = trial_tick_sets(load_config(), [excerpt], cal, ds.joints, where=CEINMS,
                           kinematics=True, need_torque=True)  # fmt: skip
    # 2400 samples span 23.99 s: 11,996 ticks at 500 Hz, none past the last sample
    assert data.spec.tick_rate_hz == 500.0 and data.sets[0].n == 11996
    assert data.emg_signal["input"] == "enveloped"
    head, tail = split_tail(data.sets[0], 0.2)
    path = tmp_path / "net.onnx"
    recipe = NetworkRecipe(epochs=1, samples_per_epoch=3000)
    fit_network_model(path, [head], data, cal, [DataSource("dataset", None, (), ())], recipe)
    scored, y, yhat = score_sets(path, [tail], ds.joints)
    mean_torque = head.y[head.warm :].mean(axis=0)  # the trivial predictor, from training data
    mse_model = ((y - yhat) ** 2).mean(axis=0)
    mse_mean = ((y - mean_torque) ** 2).mean(axis=0)
    assert np.all(mse_model < 0.7 * mse_mean), (mse_model, mse_mean, scored)
    # what it learnt from is in its metadata, and a raw-EMG chain refuses it
    info = TorqueModel(path).info
    assert info.extra["emg_signal"]["input"] == "enveloped"
    assert info.extra["emg_rate_hz"] == 100.0 and info.tick_rate_hz == 500.0


def test_train_cli_on_100_hz_envelopes_and_the_configured_chain_refuses_it(tmp_path, capsys):
    out = tmp_path / "ridge.onnx"
    code = main(["train", "--data", str(CEINMS), "--trials", "run81", "--model-type", "ridge",
                 "--out", str(out)])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    assert "validation error" not in text and "held-out tail" in text
    info = TorqueModel(out).info
    assert info.extra["metrics"]["held_out"]["knee_r"]["r2"] > 0.5
    assert "angle:knee_r" in info.features and "velocity:hip_r" in info.features
    # the default configuration (raw EMG at 2 kHz, its own muscles) would refuse it anyway;
    # with this data set's muscles and joints, the chain kind is what is refused
    cfg = _config(load_dataset(CEINMS), input="raw", rate=2000.0)
    with pytest.raises(ModelError, match="envelopes made elsewhere"):
        Estimator(cfg, load_calibration(tmp_path / "ridge.calibration.yaml"), TorqueModel(out))


def _config(ds, *, input: str, rate: float, tick_hz: float = 500.0, envelope_hz=6.0) -> Config:
    data = load_config().model_dump()
    joints = {j["name"]: j for j in data["device"]["joints"]}
    data["device"]["joints"] = [joints[j] for j in ds.joints]
    data["control"]["assist_gain"] = {j: 0.0 for j in ds.joints}
    data["control"]["rate_hz"] = tick_hz
    data["emg"]["muscles"] = list(ds.muscles)
    data["emg"]["sampling_rate_hz"] = rate
    data["estimator"].update(input=input, envelope_hz=envelope_hz)
    return Config.model_validate(data)


def test_2khz_envelopes_give_a_1khz_model_the_live_estimator_reproduces(tmp_path):
    """moco's 2 kHz envelopes, 1 kHz ticks: the estimator fed the same envelope stream (two
    samples per tick) gives what the offline tick features give the model, tick by tick."""
    ds = load_dataset(MOCO)
    trial = ds.load_trial("walk")
    cfg = _config(ds, input="enveloped", rate=2000.0, tick_hz=1000.0, envelope_hz=7.5)
    cal = calibrate_trials([trial], where=MOCO, chain=ChainSettings.from_config(cfg)).calibration
    cal_path = cal.save(tmp_path / "cal.yaml")
    data = trial_tick_sets(cfg, [trial], cal, ds.joints, where=MOCO, kinematics=True,
                           need_torque=True)  # fmt: skip
    ts = data.sets[0]
    assert ts.n == 1349 and data.spec.tick_rate_hz == 1000.0
    from exoctl.training.workflow import fit_ridge_model

    path = tmp_path / "moco.onnx"
    fit_ridge_model(path, [ts], data, cal, [DataSource("dataset", None, (), ())])
    offline = predict(path, ts)
    est = Estimator(cfg, load_calibration(cal_path), TorqueModel(path))
    k, m = cal.k, len(cal.muscles)
    live = np.array([
        est.step(trial.emg[2 * i : 2 * i + 2], ts.X[i, k + m : k + m + 2], ts.X[i, k + m + 2 :])
        .copy() for i in range(ts.n)
    ])  # fmt: skip
    np.testing.assert_allclose(live, offline, rtol=1e-4, atol=1e-3 * np.abs(offline).max())
    # the chain configured for raw EMG at 2 kHz refuses the same model
    with pytest.raises(ModelError, match="estimator.input = raw"):
        Estimator(_config(ds, input="raw", rate=2000.0, tick_hz=1000.0), cal, TorqueModel(path))


def test_adapting_across_a_change_of_task_is_flagged_and_same_task_halves_are_not():
    """walk36 vs run81 (one person walking, then running): the joint velocities' spread says
    the task changed, which the amplitude step of ``exoctl adapt`` cannot tell from a gain
    change; two halves of one walk are the same task."""
    from exoctl.training.workflow import task_change

    ds = load_dataset(CEINMS)
    n = int(20.0 * 100.0)  # 20 s of each 100 Hz trial
    walk, run = (ds.load_trial(name) for name in ("walk36", "run81"))
    walk, run = (
        dataclasses.replace(t, t=t.t[:n], emg=t.emg[:n], torque=t.torque[:n], angles=t.angles[:n])
        for t in (walk, run)
    )
    cal = calibrate_trials([walk], where=CEINMS).calibration
    data = trial_tick_sets(load_config(), [walk, run], cal, ds.joints, where=CEINMS,
                           kinematics=True, need_torque=False)  # fmt: skip
    w, r = data.sets
    changed = task_change([w], [r])
    assert set(changed) == {"velocity:hip_r", "velocity:knee_r"}, changed
    assert all(v > 1.5 for v in changed.values()), changed  # running swings faster
    first, second = split_tail(w, 0.5)
    assert task_change([first], [second]) == {}
