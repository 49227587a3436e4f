"""The estimator's model feeders and model steps at a lower rate than the loop, through onnxruntime.

The streaming network's running sums against its window form: through a non-finite row (NaN
for exactly as long as that row is in the window, then equal again), through a rebase of the
running sum, and at a control rate twice the model's (evaluated on every second tick, equal to
the model run at its own rate).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.input_kinds import SumsFeeder
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.training.features import feature_layout
from exoctl.training.fit import export_onnx
from exoctl.training.network import MultiScaleNet
from exoctl.training.pipeline import DataSource, model_metadata

SCALES = [10, 20, 40]


@pytest.fixture(scope="module")
def models(cfg, cal, tmp_path_factory):
    """(window path, stream path, y_std) of one small random network with kinematic inputs."""
    names = feature_layout(cal.muscles, cfg.joint_names, cal.k, True)
    torch.manual_seed(3)
    net = MultiScaleNet(len(names), len(cfg.joint_names), SCALES, channels=8, dim=16, hidden=16,
                        heads=2).eval()  # fmt: skip
    with torch.no_grad():
        net.set_normalisation(torch.zeros(len(names)), torch.full((len(names),), 0.5),
                              torch.zeros(4), torch.full((4,), 10.0))  # fmt: skip
    meta = model_metadata(
        model_type="network", features=names, muscles=cal.muscles, joints=cfg.joint_names,
        cal=cal, window_ticks=net.window, tick_rate_hz=cfg.control.rate_hz,
        emg_rate_hz=cfg.emg.sampling_rate_hz, windows_ms=None,
        sources=[DataSource("none", None, (), ())], metrics={},
    )  # fmt: skip
    d = tmp_path_factory.mktemp("feeders")
    export_onnx(net, d / "w.onnx", meta, form="window")
    export_onnx(net, d / "s.onnx", meta)
    return d / "w.onnx", d / "s.onnx", net.y_std.numpy()


def _run(est, emg, angles, sizes):
    out, i = [], 0
    for n in sizes:
        out.append(est.step(emg[i : i + n], angles[i + n - 1], angles[i + n - 1] * 0.0).copy())
        i += n
    return np.array(out)


def test_a_non_finite_row_is_nan_while_in_the_window_then_equal_again(cfg, cal, models):
    win, stream, y_std = models
    rec = patient_from_config(cfg, session=24).generate(1.6)
    ang = rec.angles.copy()
    ang[400:404, 1] = np.nan  # one tick (4 samples at 2 kHz / 500 Hz) of invalid telemetry
    sizes = [4] * (ang.shape[0] // 4)
    a = _run(Estimator(cfg, cal, TorqueModel(win)), rec.emg, ang, sizes)
    b = _run(Estimator(cfg, cal, TorqueModel(stream)), rec.emg, ang, sizes)
    nan_a, nan_b = np.isnan(a).any(axis=1), np.isnan(b).any(axis=1)
    assert nan_a.sum() == max(SCALES) and np.array_equal(nan_a, nan_b)
    ok = ~nan_a
    assert np.abs((a[ok] - b[ok]) / y_std).max() <= 1e-5


def test_the_running_sum_rebase_changes_nothing(cfg, cal, models, monkeypatch):
    win, stream, y_std = models
    monkeypatch.setattr(SumsFeeder, "REBASE_STEPS", 64)
    rec = patient_from_config(cfg, session=25).generate(1.0)
    sizes = [4] * (rec.emg.shape[0] // 4)
    a = _run(Estimator(cfg, cal, TorqueModel(win)), rec.emg, rec.angles, sizes)
    b = _run(Estimator(cfg, cal, TorqueModel(stream)), rec.emg, rec.angles, sizes)
    assert np.abs((a - b) / y_std).max() <= 1e-5


@pytest.mark.parametrize("which", [0, 1])
def test_a_model_at_half_the_control_rate_steps_every_second_tick(cfg, cal, models, which):
    path = models[which]
    fast = cfg.with_overrides(control={"rate_hz": 2 * cfg.control.rate_hz})
    est_fast = Estimator(fast, cal, TorqueModel(path))
    assert est_fast.ticks_per_step == 2
    rec = patient_from_config(cfg, session=26).generate(1.0)
    n = rec.emg.shape[0] // 4 - 1
    ref = _run(Estimator(cfg, cal, TorqueModel(path)), rec.emg, rec.angles, [4] * n)
    # at 1 kHz: 4 samples first, then 2 per tick, so that every even tick ends on the sample
    # a 500 Hz tick ends on; odd ticks hold the estimate of the tick before
    got = _run(est_fast, rec.emg, rec.angles, [4] + [2] * (2 * n - 2))
    np.testing.assert_array_equal(got[0::2], ref)
    np.testing.assert_array_equal(got[1::2], got[0::2][: len(got[1::2])])


def test_a_control_rate_not_a_whole_multiple_is_refused(cfg, cal, models):
    odd = cfg.with_overrides(control={"rate_hz": 1.5 * cfg.control.rate_hz})
    with pytest.raises(ModelError, match="750 Hz.*whole multiple"):
        Estimator(odd, cal, TorqueModel(models[1]))
    slow = cfg.with_overrides(control={"rate_hz": cfg.control.rate_hz / 2})
    with pytest.raises(ModelError, match="250 Hz"):
        Estimator(slow, cal, TorqueModel(models[1]))


def test_sums_metadata_is_checked(tmp_path, models):
    import json

    import onnx

    proto = onnx.load(str(models[1]))
    for bad in ([5, 5, 10], [0, 5], []):
        doc = json.loads(proto.metadata_props[0].value)
        doc["input"]["lags"] = bad
        p2 = onnx.ModelProto()
        p2.CopyFrom(proto)
        p2.metadata_props[0].value = json.dumps(doc)
        path = tmp_path / "bad.onnx"
        path.write_bytes(p2.SerializeToString())
        with pytest.raises(ModelError, match="strictly increasing lags"):
            TorqueModel(path)
    doc = json.loads(proto.metadata_props[0].value)
    doc["input"]["lags"] = doc["input"]["lags"][1:]  # one row fewer than the graph takes
    proto.metadata_props[0].value = json.dumps(doc)
    path = tmp_path / "short.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match="segment sums"):
        TorqueModel(path)
