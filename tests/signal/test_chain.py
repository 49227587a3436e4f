"""The signal chain built in one place, and the check that a model gets the signal it learnt on.

A model's metadata says what its training EMG was (``emg_signal``: raw EMG conditioned by this
chain, or envelopes made elsewhere with a stated low-pass and normalisation); the estimator
refuses a model whose training signal its configured chain does not produce, saying which key
differs and what to do. The models here are real ONNX files run by onnxruntime.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import exoctl
from exoctl.config.schema import Config, ConfigError, load_config
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.signal.activation import ActivationDynamics
from exoctl.signal.calibration import load_calibration
from exoctl.signal.chain import ChainSettings, SignalChain, signal_differences
from exoctl.signal.dsp import EmgConditioner
from exoctl.training.evaluation import write_ridge_onnx
from exoctl.training.pipeline import DataSource, model_metadata

CAL = Path(exoctl.__file__).parent / "models" / "sim_calibration.yaml"


def _cfg(**estimator) -> Config:
    data = load_config().model_dump()
    data["estimator"].update(estimator)
    return Config.model_validate(data)


def _model(tmp_path: Path, emg_signal: dict | None, name: str = "m.onnx") -> TorqueModel:
    """A small lagged-ridge ONNX model for the default muscles/joints and calibration."""
    cfg, cal = load_config(), load_calibration(CAL)
    k, nj = cal.k, len(cfg.joint_names)
    lags = np.array([0, 5])
    coef = np.full((2 * k, nj), 0.1)
    meta = model_metadata(
        model_type="ridge", features=[f"h{i}" for i in range(k)], muscles=cal.muscles,
        joints=cfg.joint_names, cal=cal, window_ticks=10, tick_rate_hz=cfg.control.rate_hz,
        emg_rate_hz=100.0, windows_ms=None, sources=[DataSource("dataset", None, (), ())],
        metrics={}, emg_signal=emg_signal,
    )  # fmt: skip
    path = tmp_path / name
    write_ridge_onnx(path, lags, coef, np.zeros(nj), 10, meta)
    return TorqueModel(path)


ENVELOPES = ChainSettings(input="enveloped").describe(
    {"lowpass_hz": 7.5, "normalisation": "peak", "processing": "lab"}
)


def test_envelope_model_is_refused_by_a_chain_configured_for_raw_emg(tmp_path):
    model = _model(tmp_path, ENVELOPES)
    cal = load_calibration(CAL)
    with pytest.raises(ModelError) as e:
        Estimator(_cfg(input="raw"), cal, model)
    msg = str(e.value)
    assert str(model.path) in msg and "estimator.input = raw" in msg
    assert "low-pass 7.5 Hz" in msg and "estimator.input: enveloped" in msg
    # the same chain kind, another low-pass: refused, naming the key
    with pytest.raises(ModelError, match=r"estimator.envelope_hz = 6 .*7.5 Hz"):
        Estimator(_cfg(input="enveloped", envelope_hz=6.0), cal, model)
    # the chain it was trained for: runs
    est = Estimator(_cfg(input="enveloped", envelope_hz=7.5), cal, model)
    out = est.step(np.full((4, len(cal.muscles)), 0.2))
    assert np.all(np.isfinite(out))


def test_raw_model_refused_by_another_chain_and_older_models_unchecked(tmp_path):
    cal = load_calibration(CAL)
    raw = ChainSettings.from_config(load_config()).describe()
    model = _model(tmp_path, raw)
    Estimator(_cfg(), cal, model)  # the chain it was trained with
    with pytest.raises(ModelError, match="estimator.input = enveloped"):
        Estimator(_cfg(input="enveloped"), cal, model)
    with pytest.raises(ModelError, match=r"estimator.envelope_hz = 3, .*low-passed at 6 Hz"):
        Estimator(_cfg(envelope_hz=3.0), cal, model)
    act = load_config().estimator.activation.model_dump() | {"c1": -0.7}
    with pytest.raises(ModelError, match=r"estimator.activation.c1 = -0.7, .*-0.5"):
        Estimator(_cfg(activation=act), cal, model)
    # a model made before models said what they were trained on (the shipped ones) is not
    # checked: it was trained on raw EMG through this chain
    Estimator(_cfg(envelope_hz=3.0), cal, _model(tmp_path, None, "old.onnx"))
    assert signal_differences(None, ChainSettings(input="enveloped")) == []


def test_one_builder_gives_the_stages_the_estimator_used_to_assemble():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 50, (3000, 3))
    mvc = np.array([20.0, 30.0, 40.0])
    s = ChainSettings(notch_hz=50.0, envelope_hz=5.0, c1=-0.6, delay_s=0.01)
    chain = SignalChain(s, 2000.0, 3, mvc=mvc, max_chunk=512)
    cond = EmgConditioner(2000.0, 3, notch_hz=50.0, envelope_hz=5.0, mvc=mvc, max_chunk=512)
    act = ActivationDynamics(3, 2000.0, c1=-0.6, delay_s=0.01, max_chunk=512)
    by_hand = np.vstack(
        [act.process(cond.process(x[i : i + 512])).copy() for i in range(0, 3000, 512)]
    )
    np.testing.assert_allclose(chain.activations(x), by_hand, atol=1e-12)
    with pytest.raises(ValueError, match="chain input 'mV'"):
        ChainSettings(input="mV")


def test_config_overrides_refused_without_a_pydantic_dump():
    with pytest.raises(ConfigError) as e:
        load_config().with_overrides(control={"rate_hz": 5000})
    msg = str(e.value)
    assert "with overrides" in msg and "control.rate_hz = 5000" in msg
    assert "validation error for" not in msg and "pydantic" not in msg
