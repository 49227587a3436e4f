"""The network: causal windows, ONNX export equal to PyTorch, and the controller runs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.torque_model import TorqueModel
from exoctl.signal.calibration import load_calibration
from exoctl.training.evaluation import predict
from exoctl.training.features import tick_features, windows
from exoctl.training.fit import export_onnx, torch_predict, train_network
from exoctl.training.network import MultiScaleNet, grad_reverse
from exoctl.training.pipeline import DataSource, model_metadata

SCALES = [10, 20, 40]  # 20, 40, 80 ms at 500 Hz: small for the test


@pytest.fixture(scope="module")
def trained(cfg, tmp_path_factory):
    cal = load_calibration(cfg.estimator.calibration)
    rec = patient_from_config(cfg, session=31).generate(8.0)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    net = train_network(
        [ts], SCALES, epochs=2, samples_per_epoch=4000, channels=8, dim=16, hidden=16, heads=2
    )
    path = tmp_path_factory.mktemp("net") / "net.onnx"
    meta = model_metadata(
        model_type="network",
        features=ts.names,
        muscles=cal.muscles,
        joints=cfg.joint_names,
        cal=cal,
        window_ticks=net.window,
        tick_rate_hz=cfg.control.rate_hz,
        emg_rate_hz=cfg.emg.sampling_rate_hz,
        windows_ms=[s * 2.0 for s in SCALES],
        sources=[DataSource("simulator", None, ("s31",), (ts.fingerprint,))],
        metrics={},
    )
    export_onnx(net, path, meta)
    return cal, net, path


def test_onnxruntime_equals_pytorch_on_held_out_data(cfg, trained):
    cal, net, path = trained
    rec = patient_from_config(cfg, session=32).generate(3.0)  # never seen in training
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    ticks = np.arange(ts.n)
    want = torch_predict(net, windows(ts.X, ticks, net.window))
    got = predict(path, ts, ticks)
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=0)
    assert np.std(want, axis=0).min() > 1.0  # a real output, not a constant


def test_output_depends_only_on_the_past(trained):
    _, net, _ = trained
    x = torch.randn(1, net.window + 30, net.n_features)
    # the estimate for tick t is the window ending at t: later rows cannot change it
    a = net(x[:, 0 : net.window])
    x2 = x.clone()
    x2[:, net.window :] += 5.0
    b = net(x2[:, 0 : net.window])
    assert torch.equal(a, b)
    # and every scale's branch sees only its own most recent rows
    x3 = x[:, 0 : net.window].clone()
    x3[:, : net.window - max(net.scales)] += 5.0  # nothing older than the longest window
    assert torch.equal(net(x3), a)
    x3[:, -1] += 1.0  # the newest tick does matter
    assert not torch.equal(net(x3), a)


def test_controller_runs_the_exported_network(cfg, trained):
    cal, net, path = trained
    est = Estimator(cfg, cal, TorqueModel(path))
    rec = patient_from_config(cfg, session=33).generate(1.0)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    vel = np.gradient(rec.angles, 1.0 / cfg.emg.sampling_rate_hz, axis=0)
    outs = []
    for i in range(ts.n):
        last = (i + 1) * 4 - 1
        outs.append(est.step(rec.emg[i * 4 : last + 1], rec.angles[last], vel[last]).copy())
    np.testing.assert_allclose(np.array(outs), predict(path, ts), atol=1e-3, rtol=1e-4)


def test_gradient_reversal_flips_and_scales_the_gradient():
    x = torch.ones(3, requires_grad=True)
    grad_reverse(x, 0.5).sum().backward()
    assert torch.equal(x.grad, torch.full((3,), -0.5))


def test_branch_windows_must_divide_into_steps():
    with pytest.raises(ValueError, match="not a multiple"):
        MultiScaleNet(4, 1, [12], steps=5)


def test_lagged_linear_path_with_validation_exports_equal_and_stays_causal(cfg, tmp_path):
    """The real-data recipe: the linear path over lags of the window, its penalty, the kept
    epoch and the correction chosen on the training sets' held-back tail."""
    cal = load_calibration(cfg.estimator.calibration)
    rec = patient_from_config(cfg, session=34).generate(6.0)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    net = train_network(
        [ts], SCALES, epochs=2, samples_per_epoch=2000, channels=8, dim=16, hidden=16, heads=2,
        skip_lags=[0, 5, 20, 39], skip_ridge="auto", validation=0.2,
    )  # fmt: skip
    rep = net.training_report
    assert rep["skip_lambda"] in (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 0.1, 1.0, 10.0)
    assert len(rep["validation_mse_by_epoch"]) == 2 and rep["kept_epoch"] in (0, 1, 2)
    assert net.skip_in == 4 * ts.X.shape[1]
    path = tmp_path / "lagged.onnx"
    meta = model_metadata(
        model_type="network", features=ts.names, muscles=cal.muscles, joints=cfg.joint_names,
        cal=cal, window_ticks=net.window, tick_rate_hz=cfg.control.rate_hz,
        emg_rate_hz=cfg.emg.sampling_rate_hz, windows_ms=[s * 2.0 for s in SCALES],
        sources=[DataSource("simulator", None, ("s34",), (ts.fingerprint,))], metrics={},
    )  # fmt: skip
    export_onnx(net, path, meta)
    ticks = np.arange(ts.n)
    np.testing.assert_allclose(
        predict(path, ts, ticks), torch_predict(net, windows(ts.X, ticks, net.window)), atol=1e-4
    )
    # the linear path reads exactly its lags: with the branches' correction off, a tick at
    # lag 10 changes nothing and one at lag 20 does
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.zero_()
    x = torch.randn(1, net.window, net.n_features)
    x2 = x.clone()
    x2[:, net.window - 1 - 10] += 5.0
    assert torch.equal(net(x), net(x2))
    x2[:, net.window - 1 - 20] += 1.0
    assert not torch.equal(net(x), net(x2))
    with pytest.raises(ValueError, match="within the window"):
        MultiScaleNet(4, 1, [40], skip_lags=[0, 40])
