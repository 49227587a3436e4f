"""A model of the decimated-window input kind, trained, exported and run as the controller runs it.

A tiny torch network is trained on the kind's batch form (the last 200 ms at 500 Hz as 10 means
of 5 ticks) from a synthetic patient's session, exported to ONNX with the kind's metadata entry,
loaded through onnxruntime by ``TorqueModel``, then streamed tick by tick through the
controller's ``Estimator`` on another synthetic session and compared with the same file run
offline on the batch form (``evaluation.predict``) at the same ticks.
"""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest
import torch

from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator
from exoctl.estimation.input_kinds import Decimated
from exoctl.estimation.torque_model import TorqueModel, save_model
from exoctl.training.evaluation import predict
from exoctl.training.features import tick_features
from exoctl.training.linear_model import OPSET
from exoctl.training.pipeline import DataSource, model_metadata


class _Tiny(torch.nn.Module):
    """Standardised (batch, rows, F) in, torque out, its scaling inside (raw in, N m out)."""

    def __init__(self, rows: int, n_f: int, n_j: int, xm, xs, ym, ys) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Flatten(), torch.nn.Linear(rows * n_f, 32), torch.nn.Tanh(),
            torch.nn.Linear(32, n_j),
        )  # fmt: skip
        for name, v in (("xm", xm), ("xs", xs), ("ym", ym), ("ys", ys)):
            self.register_buffer(name, torch.as_tensor(v, dtype=torch.float32))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.xm) / self.xs) * self.ys + self.ym


@pytest.fixture(scope="module")
def trained(cfg, cal, tmp_path_factory):
    """(path, kind, training R^2 per joint) of a tiny decimated-window network."""
    rate = cfg.control.rate_hz
    kind = Decimated(ticks=10, every=5, rate_hz=rate)
    rec = patient_from_config(cfg, session=41).generate(10.0)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=False)
    ticks = np.arange(ts.warm, ts.n)
    x = kind.batch(ts.X, ticks)
    y = ts.torques[ticks].astype(np.float32)
    torch.manual_seed(0)
    net = _Tiny(kind.ticks, ts.X.shape[1], y.shape[1], x.mean((0, 1)), x.std((0, 1)) + 1e-6,
                y.mean(0), y.std(0) + 1e-6)  # fmt: skip
    opt = torch.optim.Adam(net.net.parameters(), lr=1e-2)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    for _ in range(300):
        opt.zero_grad()
        loss = (((net(xt) - yt) / net.ys) ** 2).mean()
        loss.backward()
        opt.step()
    net.eval()
    with torch.no_grad():
        pred = net(xt).numpy()
    r2 = 1.0 - ((pred - y) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)
    d = tmp_path_factory.mktemp("decimated")
    tmp, path = d / "export.onnx", d / "decimated.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(
            net, (xt[:1],), str(tmp), input_names=["features"], output_names=["torque"],
            opset_version=OPSET, dynamo=False,
            dynamic_axes={"features": {0: "batch"}, "torque": {0: "batch"}},
        )  # fmt: skip
    meta = model_metadata(
        model_type="network", features=ts.names, muscles=cal.muscles, joints=cfg.joint_names,
        cal=cal, window_ticks=kind.span_ticks, tick_rate_hz=rate,
        emg_rate_hz=cfg.emg.sampling_rate_hz, windows_ms=None,
        sources=[DataSource("simulator", None, ("s41",), (ts.fingerprint,))], metrics={},
    )  # fmt: skip
    meta["input"] = kind.entry()
    save_model(onnx.load(str(tmp)), path, "exoctl.training", meta)
    return path, kind, r2


def test_the_tiny_network_learned_from_the_batch_form(trained):
    _path, _kind, r2 = trained
    assert r2.min() > 0.9, f"in-sample R^2 per joint {r2} (synthetic session 41)"


def test_streamed_through_the_estimator_equals_the_batch_form(cfg, cal, trained):
    path, kind, _ = trained
    model = TorqueModel(path)
    assert model.info.input == kind and model.features.shape == (
        1,
        kind.ticks,
        len(cal.muscles) + cal.k,
    )
    est = Estimator(cfg, cal, model)
    rec = patient_from_config(cfg, session=42).generate(1.5)
    ts = tick_features(cfg, cal, rec.emg, angles=rec.angles, torque=rec.torque, kinematics=False)
    spt = int(cfg.emg.sampling_rate_hz / cfg.control.rate_hz)
    streamed = []
    for i in range(ts.n):
        streamed.append(est.step(rec.emg[i * spt : (i + 1) * spt]).copy())
        if i in (3, kind.span_ticks + 7):  # the bound input is the batch form's, at that tick
            want = kind.batch(ts.X, np.array([i]))[0]
            np.testing.assert_allclose(model.features[0], want, rtol=1e-5, atol=1e-6)
    offline = predict(path, ts)
    assert np.abs(offline).max() > 1.0  # a real torque, not a flat output
    np.testing.assert_allclose(np.array(streamed), offline, rtol=1e-4, atol=1e-3)


def test_at_twice_the_model_rate_it_steps_every_second_tick(cfg, cal, trained):
    path, _kind, _ = trained
    fast = cfg.with_overrides(control={"rate_hz": 2 * cfg.control.rate_hz})
    est_fast = Estimator(fast, cal, TorqueModel(path))
    assert est_fast.ticks_per_step == 2
    est = Estimator(cfg, cal, TorqueModel(path))
    rec = patient_from_config(cfg, session=43).generate(0.6)
    spt = int(cfg.emg.sampling_rate_hz / cfg.control.rate_hz)
    n = rec.emg.shape[0] // spt
    ref = np.array([est.step(rec.emg[i * spt : (i + 1) * spt]).copy() for i in range(n)])
    # the fast loop: one model tick's samples first, then half of them per tick, so that its
    # even ticks (the model's steps) end on the samples the model-rate ticks end on
    sizes, got, i = [spt] + [spt // 2] * (2 * n - 2), [], 0
    for size in sizes:
        got.append(est_fast.step(rec.emg[i : i + size]).copy())
        i += size
    np.testing.assert_array_equal(np.array(got)[0::2], ref)
    np.testing.assert_array_equal(np.array(got)[1::2], np.array(got)[0::2][: n - 1])
