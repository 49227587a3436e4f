"""The streaming form of the network equals its window form, through onnxruntime.

Both forms of the same weights are exported and run the way the controller runs them (the
estimator, tick by tick, with the same EMG) and the way training scores them (``predict``).
Tolerance: 1e-5 in the network's own units (torque / its per-joint scale y_std); both forms
are float32, and each is within ~1e-6 of a float64 evaluation of the module (checked too).
"""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch

from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.torque_model import METADATA_KEY, TorqueModel
from exoctl.training.evaluation import predict
from exoctl.training.features import feature_layout, tick_features, windows
from exoctl.training.fit import export_onnx
from exoctl.training.network import MultiScaleNet
from exoctl.training.pipeline import DataSource, model_metadata
from exoctl.training.stream_export import stream_lags

TOL = 1e-5  # standardised units


def _random_net(n_features: int, n_joints: int, scales, seed: int, **kw) -> MultiScaleNet:
    torch.manual_seed(seed)
    net = MultiScaleNet(n_features, n_joints, scales, **kw)
    with torch.no_grad():  # non-trivial normalisation and embeddings, as after training
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        net.set_normalisation(
            torch.rand(n_features) * 0.3,
            0.2 + torch.rand(n_features),
            torch.randn(n_joints) * 3.0,
            5.0 + 10.0 * torch.rand(n_joints),
        )
    return net.eval()


def _meta(cfg, cal, names, net, rate=None) -> dict:
    return model_metadata(
        model_type="network", features=names, muscles=cal.muscles, joints=cfg.joint_names,
        cal=cal, window_ticks=net.window, tick_rate_hz=rate or cfg.control.rate_hz,
        emg_rate_hz=cfg.emg.sampling_rate_hz, windows_ms=None,
        sources=[DataSource("none", None, (), ())], metrics={},
    )  # fmt: skip


def _both(tmp_path, net, meta):
    win, stream = tmp_path / "window.onnx", tmp_path / "stream.onnx"
    export_onnx(net, win, meta, form="window")
    export_onnx(net, stream, meta)
    return win, stream


def _estimates(cfg, cal, path, emg, angles=None, vel=None, per_tick=4):
    est = Estimator(cfg, cal, TorqueModel(path))
    out = []
    for i in range(0, emg.shape[0] - per_tick + 1, per_tick):
        last = i + per_tick - 1
        a = None if angles is None else angles[last]
        v = None if vel is None else vel[last]
        out.append(est.step(emg[i : i + per_tick], a, v).copy())
    return np.array(out)


@pytest.mark.parametrize(
    "scales,kw,tol",
    [
        ([25, 50, 100, 200], {}, TOL),  # the shipped architecture (random weights)
        (
            [10, 20, 40],
            {"channels": 8, "dim": 16, "hidden": 16, "heads": 2, "residual_bound": 0},
            TOL,
        ),
        ([5, 15], {"steps": 5, "channels": 6, "dim": 8, "heads": 1}, TOL),  # pool 1: every tick
        # the real-data recipe: the linear path over lags 0-200 ms (at 500 Hz ticks). Its 7 x 15
        # inputs are summed in float32 by both forms, in other orders: 1.2e-5 measured
        (
            [25, 50, 100, 200],
            {"residual_bound": 1.0, "skip_lags": [0, 12, 25, 38, 50, 75, 100]},
            3 * TOL,
        ),
    ],
)
def test_stream_equals_window_tick_by_tick_and_in_batches(tmp_path, cfg, cal, scales, kw, tol):
    names = feature_layout(cal.muscles, cfg.joint_names, cal.k, True)  # with kinematics
    net = _random_net(len(names), len(cfg.joint_names), scales, seed=len(scales), **kw)
    win, stream = _both(tmp_path, net, _meta(cfg, cal, names, net))
    info = TorqueModel(stream).info
    assert info.input_kind == "sums" and list(info.input.lags) == stream_lags(net)
    assert info.window_ticks == max(scales)
    assert len(onnx.load(str(stream)).graph.node) < 45  # vs ~240 in the window export

    rec = patient_from_config(cfg, session=21).generate(2.5)
    vel = np.gradient(rec.angles, 1.0 / cfg.emg.sampling_rate_hz, axis=0)
    a = _estimates(cfg, cal, win, rec.emg, rec.angles, vel)
    b = _estimates(cfg, cal, stream, rec.emg, rec.angles, vel)
    y_std = net.y_std.numpy()
    assert np.abs((a - b) / y_std).max() <= tol
    assert np.std(a, axis=0).min() > 0.05 * y_std.min()  # a real output, not a constant

    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=True)
    pa, pb = predict(win, ts), predict(stream, ts)
    assert np.abs((pa - pb) / y_std).max() <= tol
    with torch.no_grad():  # both against the module in float64
        truth = net.double()(torch.from_numpy(windows(ts.X, np.arange(ts.n), net.window))).numpy()
    for p in (pa, pb):
        assert np.abs((p - truth) / y_std).max() <= tol


def test_the_shipped_network_is_the_streaming_form_of_its_weights(tmp_path, cfg, cal):
    shipped = TorqueModel(cfg.model.path)
    assert shipped.info.input_kind == "sums"
    pt = cfg.model.path.with_suffix(".pt")
    doc = torch.load(pt, map_location="cpu", weights_only=False)
    net = MultiScaleNet(doc["n_features"], doc["n_joints"], doc["scales"], **doc["config"])
    net.load_state_dict(doc["state_dict"])
    meta = json.loads(
        next(
            p.value for p in onnx.load(str(cfg.model.path)).metadata_props if p.key == METADATA_KEY
        )
    )
    win = tmp_path / "window.onnx"
    export_onnx(net.eval(), win, meta, form="window")
    rec = patient_from_config(cfg, session=5).generate(2.0)
    a = _estimates(cfg, cal, win, rec.emg)
    b = _estimates(cfg, cal, cfg.model.path, rec.emg)
    assert np.abs((a - b) / net.y_std.numpy()).max() <= TOL
