"""A calibration's per-channel session gain: the file round trip, clear errors, the chain
dividing by MVC x gain, and a model's calibration fingerprint left alone."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from exoctl.config.schema import load_config
from exoctl.estimation.torque_model import calibration_fingerprint
from exoctl.signal.calibration import CalibrationError, load_calibration
from exoctl.signal.chain import SignalChain


def _shipped():
    cfg = load_config()
    return cfg, load_calibration(cfg.estimator.calibration)


def test_gain_round_trip_and_fingerprint(tmp_path):
    _, cal = _shipped()
    g = np.linspace(0.5, 2.0, len(cal.muscles))
    p = cal.with_gain(g, {"warm_up_session": "x"}).save(tmp_path / "g.yaml")
    raw = yaml.safe_load(p.read_text())
    assert raw["gain"][cal.muscles[-1]] == pytest.approx(2.0)
    got = load_calibration(p)
    np.testing.assert_allclose(got.gain, g)
    np.testing.assert_allclose(got.mvc_in_use, cal.mvc * g)
    assert got.source["gain_from"] == {"warm_up_session": "x"}
    # the model stays tied to the same calibration: muscles, MVC and W are unchanged
    assert calibration_fingerprint(got.muscles, got.mvc, got.W) == calibration_fingerprint(
        cal.muscles, cal.mvc, cal.W
    )


def test_bad_gain_names_the_file_and_the_muscles(tmp_path):
    _, cal = _shipped()
    raw = cal.to_dict()
    raw["gain"] = {m: 1.0 for m in cal.muscles[1:]}
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(CalibrationError, match=r"bad.yaml: gain: must map every muscle"):
        load_calibration(p)
    raw["gain"] = {m: 1.0 for m in cal.muscles}
    raw["gain"][cal.muscles[0]] = 40.0
    p.write_text(yaml.safe_dump(raw))
    with pytest.raises(
        CalibrationError, match=rf"gain must be within 0.1-10; bad for \['{cal.muscles[0]}'\]"
    ):
        load_calibration(p)


def test_the_chain_divides_by_mvc_times_gain():
    cfg, cal = _shipped()
    m = len(cal.muscles)
    g = np.full(m, 1.0)
    g[0] = 2.0
    rng = np.random.default_rng(1)
    fs = cfg.emg.sampling_rate_hz
    x = rng.standard_normal((int(fs), m)) * 50e-6
    x[:, 0] *= 2.0  # channel 0's electrode now gives twice the signal
    plain = SignalChain.from_config(cfg, cal).envelope(x[:, :] / np.r_[2.0, np.ones(m - 1)])
    adapted = SignalChain.from_config(cfg, cal.with_gain(g)).envelope(x)
    np.testing.assert_allclose(adapted, plain, rtol=1e-9, atol=1e-12)
