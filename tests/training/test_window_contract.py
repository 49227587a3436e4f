"""The window input contract: the estimator's ring gives the model exactly the offline windows.

A lagged-ridge model (a real ONNX graph with a window input, made by the training package
without torch) is streamed tick by tick through the controller's ``Estimator`` and compared with
the same model run offline on windows cut from the offline chain; then the refusals.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.signal.calibration import Calibration
from exoctl.training.evaluation import fit_lagged_ridge, predict, write_ridge_onnx
from exoctl.training.features import tick_features
from exoctl.training.pipeline import DataSource, model_metadata


def _window_model(path, cfg, cal, *, kinematic_names=(), rate=None, window=40):
    rec = patient_from_config(cfg, session=21).generate(6.0)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    lags, coef, b = fit_lagged_ridge([ts], cal.k, cfg.control.rate_hz)
    lags = lags[lags < window]
    coef = coef[: len(lags) * cal.k]
    meta = model_metadata(
        model_type="ridge",
        features=[f"h{i}" for i in range(cal.k)],
        muscles=cal.muscles,
        joints=cfg.joint_names,
        cal=cal,
        window_ticks=window,
        tick_rate_hz=rate or cfg.control.rate_hz,
        emg_rate_hz=cfg.emg.sampling_rate_hz,
        windows_ms=None,
        sources=[DataSource("simulator", None, ("s21",), (ts.fingerprint,))],
        metrics={},
    )
    meta["features"] = meta["features"] + list(kinematic_names)
    if kinematic_names:  # widen the graph's input to the extra (unused) feature columns
        k = cal.k + len(kinematic_names)
        full = np.zeros((len(lags) * k, coef.shape[1]))
        for i in range(len(lags)):
            full[i * k : i * k + cal.k] = coef[i * cal.k : (i + 1) * cal.k]
        coef = full
    write_ridge_onnx(path, lags, coef, b, window, meta)
    return path


def test_streamed_windows_equal_offline_windows(tmp_path, cfg, cal):
    path = _window_model(
        tmp_path / "w.onnx", cfg, cal, kinematic_names=("angle:knee_l", "velocity:hip_r")
    )
    est = Estimator(cfg, cal, TorqueModel(path))
    rec = patient_from_config(cfg, session=22).generate(1.5)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    spt = int(cfg.emg.sampling_rate_hz / cfg.control.rate_hz)
    vel = np.gradient(rec.angles, 1.0 / cfg.emg.sampling_rate_hz, axis=0)
    streamed = []
    for i in range(ts.n):
        last = (i + 1) * spt - 1
        streamed.append(est.step(rec.emg[i * spt : last + 1], rec.angles[last], vel[last]).copy())
        # the bound input holds the window: its newest row is this tick's features
        row = est.model.features[0, -1]
        np.testing.assert_allclose(row[: cal.k], ts.X[i, : cal.k], rtol=1e-5, atol=1e-6)
        j_knee_l = cfg.joint_names.index("knee_l")
        j_hip_r = cfg.joint_names.index("hip_r")
        assert row[cal.k] == pytest.approx(rec.angles[last, j_knee_l], rel=1e-6)
        assert row[cal.k + 1] == pytest.approx(vel[last, j_hip_r], rel=1e-5)
    offline = predict(path, ts)
    np.testing.assert_allclose(np.array(streamed), offline, rtol=1e-4, atol=1e-3)
    # a window that reaches before the first tick repeats the first tick (both sides agree)
    assert est._ticks == ts.n


def test_window_model_refused_at_another_tick_rate(tmp_path, cfg, cal):
    # 300 Hz: 500 Hz is no whole multiple of it (a 250 Hz model would step every 2nd tick)
    path = _window_model(tmp_path / "w.onnx", cfg, cal, rate=300.0)
    with pytest.raises(ModelError) as e:
        Estimator(cfg, cal, TorqueModel(path))
    msg = str(e.value)
    assert "300 Hz" in msg and "500 Hz" in msg


def test_feature_the_configuration_cannot_give_is_refused(tmp_path, cfg, cal):
    path = _window_model(tmp_path / "w.onnx", cfg, cal, kinematic_names=("angle:ankle_l",))
    with pytest.raises(ModelError) as e:
        Estimator(cfg, cal, TorqueModel(path))
    assert "angle:ankle_l" in str(e.value) and "angle:hip_l" in str(e.value)


def test_other_calibration_with_the_same_k_is_refused(tmp_path, cfg, cal):
    path = _window_model(tmp_path / "w.onnx", cfg, cal)
    other = Calibration(cal.muscles, cal.mvc * 1.5, cal.W, cal.vaf)
    with pytest.raises(ModelError, match="trained with calibration sha256:"):
        Estimator(cfg, other, TorqueModel(path))
    Estimator(cfg, dataclasses.replace(cal), TorqueModel(path))  # the same numbers: accepted


def test_window_shape_disagreeing_with_metadata_is_refused(tmp_path, cfg, cal):
    import json

    import onnx

    path = _window_model(tmp_path / "w.onnx", cfg, cal)
    proto = onnx.load(str(path))
    doc = json.loads(proto.metadata_props[0].value)
    doc["input"]["ticks"] = 41
    proto.metadata_props[0].value = json.dumps(doc)
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match=r"window of 41 ticks at 500 Hz: \(1, 41, 2\)"):
        TorqueModel(bad)
