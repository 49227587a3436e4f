"""The streaming estimator, tick by tick, against the same chain run offline in one go."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import exoctl
from exoctl.config.schema import Config, load_config
from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator, build_estimator
from exoctl.estimation.metrics import r2 as r2_score
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.signal.calibration import load_calibration
from exoctl.training.linear_model import condition, synergy_activations

LINEAR = Path(exoctl.__file__).parent / "models" / "default.onnx"


@pytest.fixture(scope="module")
def cfg():
    """The default configuration with the linear model, whose arithmetic these tests check."""
    return load_config().with_overrides(model={"path": str(LINEAR)})


def test_streaming_ticks_equal_offline_chain(cfg):
    est = build_estimator(cfg)
    rec = patient_from_config(cfg, session=3).generate(4.0)
    per_tick = int(cfg.emg.sampling_rate_hz / cfg.control.rate_hz)
    cal = est.calibration
    a = condition(cfg, rec.emg, cal.mvc)
    h = synergy_activations(cal.W, a)
    coef_model = TorqueModel(cfg.model.path)
    for i in range(0, rec.emg.shape[0], per_tick):
        out = est.step(rec.emg[i : i + per_tick])
        last = min(i + per_tick, rec.emg.shape[0]) - 1
        coef_model.features[0, : cal.k] = h[last]
        coef_model.features[0, cal.k :] = a[last]
        np.testing.assert_allclose(out, coef_model.run(), rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(est.activation, a[last], atol=1e-9)


def test_estimates_a_session_it_never_saw(cfg):
    est = build_estimator(cfg)
    rec = patient_from_config(cfg, session=11).generate(12.0)
    per_tick = 4
    idx, outs = [], []
    for i in range(0, rec.emg.shape[0], per_tick):
        outs.append(est.step(rec.emg[i : i + per_tick]).copy())
        idx.append(i + per_tick - 1)
    outs = np.array(outs)[500:]  # 2 s warm-up
    r2 = r2_score(rec.torque[np.array(idx)[500:]], outs)
    assert np.all(r2 > 0.9), r2


def test_empty_chunk_keeps_the_last_estimate(cfg):
    est = build_estimator(cfg)
    rec = patient_from_config(cfg).generate(0.5)
    first = est.step(rec.emg).copy()
    assert np.array_equal(est.step(rec.emg[:0]), first)


def test_calibration_for_other_muscles_is_refused(cfg):
    other = cfg.with_overrides(
        emg={"muscles": [m.replace("gluteus_maximus", "gluteus_medius") for m in cfg.emg.muscles]}
    )
    cal = load_calibration(cfg.estimator.calibration)
    with pytest.raises(Exception, match="gluteus_medius"):
        Estimator(other, cal, TorqueModel(cfg.model.path))


def test_model_for_other_joints_is_refused(cfg):
    data = cfg.model_dump()
    data["device"]["joints"] = data["device"]["joints"][:2]
    data["control"]["assist_gain"] = {"hip_l": 0.3, "hip_r": 0.3}
    two = Config.model_validate(data)
    with pytest.raises(ModelError, match="joints"):
        build_estimator(two)
