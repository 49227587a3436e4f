"""The model's rate (``estimator.model_every_ticks``): the ONNX model runs on every k-th tick only,
its estimate held in between with the instant and the time it was computed, and offline scoring
holds it the same way.

ONNX runs are counted by onnxruntime's own profiler (one ``model_run`` event per run of the real
session), not by the estimator's counter. The live side is the control loop in-process
(``LocalEstimates``) against the fake firmware, on a clock the test moves: deterministic.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

import exoctl
import exoctl.estimation.torque_model as torque_model
from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.config.schema import Config, load_config
from exoctl.control.loop import ControlLoop
from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator, build_estimator
from exoctl.estimation.torque_model import TorqueModel
from exoctl.signal.calibration import load_calibration
from exoctl.training.evaluation import predict
from exoctl.training.features import tick_features
from firmware_bridge.fake_link import FakeLink

MODELS = Path(exoctl.__file__).parent / "models"
NETWORK = MODELS / "network.onnx"  # the shipped streaming network (sums input: a past)
LINEAR = MODELS / "default.onnx"  # instantaneous


def _cfg(every: int, model: Path = NETWORK) -> Config:
    return load_config().with_overrides(
        estimator={"model_every_ticks": every}, model={"path": str(model)}
    )


@pytest.fixture(scope="module")
def rec():
    return patient_from_config(load_config(), session=31).generate(1.2)


def _per_tick(cfg: Config) -> int:
    return round(cfg.emg.sampling_rate_hz / cfg.tick_rate_hz)


def _profiled(monkeypatch, tmp_path: Path) -> None:
    """Every TorqueModel made from now on profiles its onnxruntime session."""
    plain = torque_model.session_options

    def options() -> ort.SessionOptions:
        so = plain()
        so.enable_profiling = True
        so.profile_file_prefix = str(tmp_path / "ort")
        return so

    monkeypatch.setattr(torque_model, "session_options", options)


def _onnx_runs(model: TorqueModel) -> int:
    events = json.loads(Path(model._session.end_profiling()).read_text())  # noqa: SLF001
    return sum(1 for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")


@pytest.mark.parametrize("every", [1, 2, 4, 5])
@pytest.mark.parametrize("model", [NETWORK, LINEAR])
def test_the_model_runs_on_every_kth_tick_only_and_holds_its_estimate(
    monkeypatch, tmp_path, rec, every, model
):
    _profiled(monkeypatch, tmp_path)
    cfg = _cfg(every, model)
    est = build_estimator(cfg)
    n = _per_tick(cfg)
    ticks = 203
    outs, ran, paired, held = [], [], [], []
    for i in range(ticks):
        stamps = 10.0 + (i * n + np.arange(n)) / cfg.emg.sampling_rate_hz
        outs.append(est.step(rec.emg[i * n : (i + 1) * n], stamps=stamps).copy())
        ran.append(est.ran)
        paired.append(est.paired_at)
        held.append(est.held)
    runs = np.flatnonzero(ran)
    np.testing.assert_array_equal(runs, np.arange(0, ticks, every))
    assert _onnx_runs(est.model) == len(runs) == est.model_runs
    outs_a = np.array(outs)
    for i in range(ticks):  # held: the estimate and its instant are those of the last run
        r = i - i % every
        np.testing.assert_array_equal(outs_a[i], outs_a[r])
        assert paired[i] == 10.0 + ((r + 1) * n - 1) / cfg.emg.sampling_rate_hz
        assert held[i] == (i != r)  # rows wait for the next run: the estimate ages
    if every > 1:  # and the runs do change it (a held value that never moves proves nothing)
        assert np.abs(np.diff(outs_a[runs], axis=0)).max() > 1e-3


def test_rows_go_into_the_models_input_every_tick(rec):
    """The model's lags count control ticks whatever the setting: run on every 4th tick, the
    streaming network gives at tick 4j exactly what it gives running every tick."""
    n = _per_tick(_cfg(1))
    every = build_estimator(_cfg(1))
    fourth = build_estimator(_cfg(4))
    a = np.array([every.step(rec.emg[i * n : (i + 1) * n]).copy() for i in range(240)])
    b = np.array([fourth.step(rec.emg[i * n : (i + 1) * n]).copy() for i in range(240)])
    np.testing.assert_array_equal(b[::4], a[::4])
    assert not np.array_equal(b[1::4], a[1::4])


class _Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += max(seconds, 2e-5)


def _live(cfg: Config, emg: np.ndarray, ticks: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The control loop in-process over ``emg``, one tick's samples per tick: per tick the
    estimate commanded from, the estimate's age the safety layer saw, and the samples behind
    the estimate (n)."""
    clock = _Clock()
    link = FakeLink(cfg.joint_names, clock=clock)
    ring = RingBuffer(int(cfg.emg.ring_buffer_s * cfg.emg.sampling_rate_hz), emg.shape[1])
    loop = ControlLoop.from_config(cfg, ring, build_estimator(cfg), link, ticks, clock, clock.sleep)
    link.open()
    link.handshake()
    loop.timer.start(clock())
    n = _per_tick(cfg)
    est, age, new = [], [], []
    for i in range(ticks):
        ring.write(emg[i * n : (i + 1) * n], clock() + np.arange(n) / 2000.0, clock())
        loop.tick()
        est.append(loop.log.estimate[i].copy())
        age.append(loop.inputs.estimate_age_s)
        new.append(loop.estimates.n)
    return np.array(est), np.array(age), np.array(new)


@pytest.mark.parametrize("every", [1, 2, 4])
def test_offline_scoring_with_k_equals_the_live_loop_with_k(rec, every):
    cfg = _cfg(every)
    ticks = rec.emg.shape[0] // _per_tick(cfg)
    live, age, new = _live(cfg, rec.emg, ticks)
    cal = load_calibration(cfg.estimator.calibration)
    ts = tick_features(cfg, cal, rec.emg, angles=None, torque=None, kinematics=False)
    assert ts.n == ticks
    offline = predict(cfg.model.path, ts, every=every)
    scale = np.abs(offline).max()
    np.testing.assert_allclose(live, offline, rtol=1e-4, atol=1e-4 * scale)
    # held ticks: the estimate ages from its run, and no new samples reach the command
    period = 1.0 / cfg.tick_rate_hz
    lag = np.arange(ticks) % every
    np.testing.assert_allclose(age, lag * period, atol=period * 0.05)
    np.testing.assert_array_equal(new[lag > 0], 0)
    n = _per_tick(cfg)
    np.testing.assert_array_equal(new[every::every], every * n)  # every sample since the last run
    if every > 1:
        plain = predict(cfg.model.path, ts)
        assert not np.allclose(offline, plain, rtol=1e-4, atol=1e-4 * scale)


def test_held_estimate_keeps_its_time_in_carried_emg(rec):
    """EMG carried onto the tick grid (100 Hz envelopes): the rows follow the grid, the model
    still runs on every k-th row, and the instant is the row's it ran on."""
    cfg = load_config().with_overrides(
        emg={"sampling_rate_hz": 100.0},
        estimator={"input": "enveloped", "model_every_ticks": 3},
        simulator={"emg_chunk_samples": 1},
    )
    est = Estimator(cfg, load_calibration(cfg.estimator.calibration), TorqueModel(NETWORK))
    assert est.needs_time
    env = np.abs(rec.emg[::20]).astype(np.float32)  # 100 Hz stand-in for an envelope
    stamps = np.arange(env.shape[0]) / 100.0
    period = 1.0 / cfg.tick_rate_hz
    sent, runs, rows = 0, 0, 0
    for i in range(300):
        now = i * period
        upto = int(np.searchsorted(stamps, now, side="right"))
        est.step(env[sent:upto], stamps=stamps[sent:upto], now=now)
        sent = upto
        if est.ran:
            runs += 1
            # the instant of the row run on is a grid instant whose row count is a multiple of 3
            k = round((est.paired_at - est._grid0) / period)  # noqa: SLF001
            assert k % 3 == 0
        rows = est._grid_k  # noqa: SLF001
    assert runs and abs(runs - rows / 3) <= 1
