"""The shipped network model, trained on simulator data; regenerate with one command::

    .venv/bin/python -m exoctl.training.default_model --out exoctl/models

Writes ``network.onnx`` (the paper's multi-scale attention network, window input at the
configured control rate), ``network.pt`` (its weights, for ``exoctl adapt``) and
``network.json`` (provenance: command, data, training time, metrics). It uses the calibration
the configuration names (``estimator.calibration``, the shipped ``sim_calibration.yaml``), so
switching a configuration from the linear model to the network is one line (``model.path``);
the model carries that calibration's fingerprint and refuses any other.

Data: sessions 100 and 101 of the configured synthetic patient (the linear model's session and
one more; the demo runs session 0, never seen here), 120 s each. Scored, through onnxruntime,
on session 102 (held out) and offline on the demo's session 0. Features: synergy and muscle
activations only. The network can also take joint angles and velocities; the default does not,
because the simulator's telemetry angles are the plant's (they move with the exoskeleton's own
torque), not the gait kinematics a recording holds, and because on drifted sessions a model
that leans on the gait's kinematics keeps predicting the old torque pattern.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from exoctl.config.paths import portable_path
from exoctl.config.schema import load_config
from exoctl.data.patient import patient_from_config
from exoctl.estimation.metrics import joint_metrics, summarise
from exoctl.signal.calibration import load_calibration
from exoctl.signal.chain import ChainSettings

from .evaluation import predict
from .features import tick_features
from .pipeline import DEFAULT_WINDOWS_MS, DataSource, model_metadata, scales_in_ticks, sidecar

TRAIN_SESSIONS = (100, 101)
HELD_OUT_SESSION = 102
DEMO_SESSION = 0


def make(out_dir: Path, *, config: Path | None, duration_s: float, epochs: int, log=print) -> dict:
    from .fit import emg_augmentation, export_onnx, set_threads, train_network
    from .pipeline import write_provenance
    from .workflow import save_torch

    set_threads(2)
    t0 = time.monotonic()
    cfg = load_config(config)
    cal_path = Path(cfg.estimator.calibration)
    cal = load_calibration(cal_path)
    sets = []
    for s in TRAIN_SESSIONS:
        rec = patient_from_config(cfg, session=s).generate(duration_s)
        sets.append(
            tick_features(
                cfg,
                cal,
                rec.emg,
                angles=None,
                torque=rec.torque,
                kinematics=False,
                name=f"session{s}",
            )  # fmt: skip
        )
    rate = cfg.tick_rate_hz
    scales = scales_in_ticks(DEFAULT_WINDOWS_MS, rate)
    k, m = cal.k, len(cal.muscles)
    log(f"data ready ({time.monotonic() - t0:.0f} s); training on {len(sets)} sessions")
    net = train_network(
        sets, scales, epochs=epochs, samples_per_epoch=40000, **emg_augmentation(k + m),
        progress=log,
    )  # fmt: skip
    train_s = time.monotonic() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "network.onnx"
    meta = model_metadata(
        model_type="network", features=sets[0].names, muscles=cal.muscles,
        joints=cfg.joint_names, cal=cal, window_ticks=max(scales), tick_rate_hz=rate,
        emg_rate_hz=cfg.emg.sampling_rate_hz, windows_ms=DEFAULT_WINDOWS_MS,
        sources=[DataSource("simulator", None, tuple(s.name for s in sets),
                            tuple(s.fingerprint for s in sets))],
        metrics={}, emg_signal=ChainSettings.from_config(cfg).describe(),
        normalisation={"x_mean": net.x_mean.tolist(), "x_std": net.x_std.tolist(),
                       "y_mean": net.y_mean.tolist(), "y_std": net.y_std.tolist()},
        extra={"calibration_file": cal_path.name, "kinematics": False,
               "architecture": net.config,
               "simulator": {"seed": cfg.simulator.seed, "sessions": list(TRAIN_SESSIONS),
                             "duration_s": duration_s}},
    )  # fmt: skip
    export_onnx(net, path, meta)
    metrics = {}
    for label, session, dur in (
        ("held_out_session", HELD_OUT_SESSION, 60.0),
        ("demo_session_offline", DEMO_SESSION, 30.0),
    ):
        rec = patient_from_config(cfg, session=session).generate(dur)
        ts = tick_features(cfg, cal, rec.emg, angles=None, torque=rec.torque, kinematics=False)
        ticks = np.arange(ts.warm, ts.n)
        per = joint_metrics(ts.torques[ticks], predict(path, ts, ticks), cfg.joint_names,
                            cfg.simulator.body_mass_kg)  # fmt: skip
        metrics[label] = {"session": session, "duration_s": dur, "joints": per, **summarise(per)}
        log(
            f"{label} (session {session}): "
            + ", ".join(f"{j} R^2 {v['r2']:.4f}" for j, v in per.items())
        )
    # metrics into the model's own metadata as well
    from .workflow import set_metrics

    set_metrics(path, metrics)
    save_torch(net, sidecar(path, "pt"), meta)
    total = time.monotonic() - t0
    prov = {
        "regenerate": "python -m exoctl.training.default_model --out exoctl/models",
        "command": "python -m exoctl.training.default_model " + " ".join(sys.argv[1:]),
        "config": portable_path(cfg.source),
        "calibration": cal_path.name,
        "model_type": "MultiScaleNet: branches over 50/100/200/400 ms windows of [h, a] at the "
        "control rate, self-attention across scales, bounded correction on a linear path",
        "training_data": meta["training_data"],
        "simulator": meta["simulator"],
        "epochs": epochs,
        "training_time_s": round(train_s, 1),
        "total_time_s": round(total, 1),
        "torch_threads": 2,
        "metrics": metrics,
    }
    write_provenance(path, prov)
    return prov


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exoctl.training.default_model", description=__doc__)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "models")
    p.add_argument("--duration", type=float, default=120.0, help="seconds per training session")
    p.add_argument("--epochs", type=int, default=12)
    a = p.parse_args(argv)
    prov = make(a.out, config=a.config, duration_s=a.duration, epochs=a.epochs,
                log=lambda s: print(s, flush=True))  # fmt: skip
    print(
        json.dumps({k: prov[k] for k in ("training_time_s", "total_time_s", "metrics")}, indent=2)
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
