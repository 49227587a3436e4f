"""Per-tick ONNX inference cost of the torque models through onnxruntime (one thread, no spin).

What a control tick pays for the model: ``TorqueModel.run()`` on the bound input (IOBinding,
preallocated), measured call by call, for the shipped linear model, the lagged-ridge window
baseline and the paper's network (the shipped ``exoctl/models/network.onnx`` when it exists,
else the same architecture with random weights, which costs the same). Also the whole
``Estimator.step`` (4 new EMG samples: conditioning, activation, NNLS, window ring, model) with
the network, since that is what the loop's budget has to hold.

    .venv/bin/python -m bench.bench_inference [--quick]

Figures: median, p99 and max in microseconds, from one run, side by side.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
NETWORK = REPO / "exoctl" / "models" / "network.onnx"


def _stats(ns: np.ndarray) -> dict:
    us = ns / 1e3
    return {
        "calls": int(len(us)),
        "p50_us": round(float(np.percentile(us, 50)), 1),
        "p99_us": round(float(np.percentile(us, 99)), 1),
        "max_us": round(float(us.max()), 1),
        "mean_us": round(float(us.mean()), 1),
    }


def _time_runs(model, n: int) -> np.ndarray:
    rng = np.random.default_rng(0)
    model.features[...] = rng.random(model.features.shape).astype(np.float32)
    for _ in range(200):  # warm-up: first runs allocate onnxruntime's arenas
        model.run()
    out = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    gc.disable()
    try:
        for i in range(n):
            t0 = clock()
            model.run()
            out[i] = clock() - t0
    finally:
        gc.enable()
    return out


def _network_path(cfg, cal, tmp: Path) -> tuple[Path, str, object]:
    """(model, what it is, calibration it needs)."""
    from exoctl.estimation.torque_model import TorqueModel
    from exoctl.signal.calibration import load_calibration

    if NETWORK.is_file():
        info = TorqueModel(NETWORK).info
        cal_file = NETWORK.with_name(info.extra.get("calibration_file", ""))
        if cal_file.is_file():
            return NETWORK, "shipped exoctl/models/network.onnx", load_calibration(cal_file)
    from exoctl.training.fit import export_onnx
    from exoctl.training.network import MultiScaleNet
    from exoctl.training.pipeline import (
        DEFAULT_WINDOWS_MS,
        DataSource,
        model_metadata,
        scales_in_ticks,
    )

    rate = cfg.tick_rate_hz
    scales = scales_in_ticks(DEFAULT_WINDOWS_MS, rate)
    from exoctl.training.features import feature_layout

    names = feature_layout(cal.muscles, cfg.joint_names, cal.k, True)
    net = MultiScaleNet(len(names), len(cfg.joint_names), scales)
    meta = model_metadata(
        model_type="network", features=names, muscles=cal.muscles, joints=cfg.joint_names,
        cal=cal, window_ticks=max(scales), tick_rate_hz=rate,
        emg_rate_hz=cfg.emg.sampling_rate_hz, windows_ms=DEFAULT_WINDOWS_MS,
        sources=[DataSource("none", None, (), ())], metrics={},
    )  # fmt: skip
    path = tmp / "network.onnx"
    export_onnx(net, path, meta)
    return path, "MultiScaleNet, random weights (no shipped network.onnx)", cal


def run(quick: bool = False, calls: int | None = None) -> dict:
    from exoctl.config.schema import load_config
    from exoctl.data.patient import patient_from_config
    from exoctl.estimation.estimator import Estimator
    from exoctl.estimation.torque_model import TorqueModel
    from exoctl.signal.calibration import load_calibration
    from exoctl.training.evaluation import fit_lagged_ridge, write_ridge_onnx
    from exoctl.training.features import tick_features
    from exoctl.training.linear_model import LINEAR_MODEL_PATH
    from exoctl.training.pipeline import DataSource, model_metadata

    n = calls or (500 if quick else 20000)
    cfg = load_config()
    out: dict = {"calls_per_model": n, "threads": "onnxruntime intra=1 inter=1, no spinning"}
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        base_cal = load_calibration(cfg.estimator.calibration)
        models = {"linear (shipped default.onnx)": (LINEAR_MODEL_PATH, base_cal)}
        rec = patient_from_config(cfg, session=41).generate(4.0)
        ts = tick_features(cfg, base_cal, rec.emg, angles=None, torque=rec.torque, kinematics=False)
        lags, coef, b = fit_lagged_ridge([ts], base_cal.k, cfg.tick_rate_hz)
        ridge = tmp / "ridge.onnx"
        write_ridge_onnx(
            ridge, lags, coef, b, 200,
            model_metadata(
                model_type="ridge", features=[f"h{i}" for i in range(base_cal.k)],
                muscles=base_cal.muscles, joints=cfg.joint_names, cal=base_cal, window_ticks=200,
                tick_rate_hz=cfg.tick_rate_hz, emg_rate_hz=cfg.emg.sampling_rate_hz,
                windows_ms=None, sources=[DataSource("none", None, (), ())], metrics={},
            ),
        )  # fmt: skip
        models["lagged ridge (window 200 ticks)"] = (ridge, base_cal)
        try:
            net_path, what, net_cal = _network_path(cfg, base_cal, tmp)
            models[f"network: {what}"] = (net_path, net_cal)
        except ModuleNotFoundError as e:
            out["network_skipped"] = f"{e}; install the train extra"
            net_path = None
        res = {}
        for name, (path, _) in models.items():
            m = TorqueModel(path)
            res[name] = {"input": list(m.features.shape), **_stats(_time_runs(m, n))}
        out["model_run"] = res
        if net_path is not None:
            net_cal = models[f"network: {what}"][1]
            est = Estimator(cfg, net_cal, TorqueModel(net_path))
            spt = int(cfg.emg.sampling_rate_hz / cfg.tick_rate_hz)
            emg = patient_from_config(cfg, session=42).generate(2.0 + n * spt / 2000.0).emg
            ang = np.zeros(len(cfg.joint_names))
            for i in range(200):
                est.step(emg[i * spt : (i + 1) * spt], ang, ang)
            ticks = np.empty(n, dtype=np.int64)
            clock = time.perf_counter_ns
            gc.disable()
            try:
                for i in range(n):
                    chunk = emg[(200 + i) * spt : (201 + i) * spt]
                    t0 = clock()
                    est.step(chunk, ang, ang)
                    ticks[i] = clock() - t0
            finally:
                gc.enable()
            out["estimator_step_network"] = {"emg_samples_per_tick": spt, **_stats(ticks)}
    return out


def format_table(res: dict) -> str:
    lines = [f"per call, {res['calls_per_model']} calls each ({res['threads']})", ""]
    lines.append(f"{'':<62}{'p50 us':>9}{'p99 us':>9}{'max us':>9}")
    for name, s in res.get("model_run", {}).items():
        lines.append(f"{'model.run  ' + name:<62}{s['p50_us']:>9}{s['p99_us']:>9}{s['max_us']:>9}")
    s = res.get("estimator_step_network")
    if s:
        lines.append(
            f"{'Estimator.step (network, 4 EMG samples)':<62}{s['p50_us']:>9}{s['p99_us']:>9}{s['max_us']:>9}"
        )
    if "network_skipped" in res:
        lines.append(f"network skipped: {res['network_skipped']}")
    return "\n".join(lines)


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m bench.bench_inference")
    p.add_argument("--quick", action="store_true")
    p.add_argument("--calls", type=int, default=None)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    r = run(quick=a.quick, calls=a.calls)
    print(json.dumps(r, indent=2) if a.json else format_table(r))
