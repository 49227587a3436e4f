"""The default (linear) torque model, made from simulator data and written as ONNX.

Regenerate the shipped model and calibration with::

    .venv/bin/python -m exoctl.training.linear_model --out exoctl/models

It records a training session of the configured synthetic patient (a different session from
the one the demo runs, so the demo is scored on data the model never saw), runs it through the
same streaming chain the controller uses (conditioning, activation dynamics, NNLS synergy
activations), fits ridge regression from [synergy activations, muscle activations] to the
true joint torques, checks it on a held-out tail, and writes the ONNX graph (MatMul + Add),
the calibration and a provenance file beside it. Needs the ``onnx`` package (dev/train extra);
the controller itself only needs onnxruntime.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

from exoctl import __version__
from exoctl.config.paths import portable_path
from exoctl.config.schema import Config, load_config
from exoctl.data.patient import patient_from_config
from exoctl.estimation.metrics import r2
from exoctl.estimation.torque_model import MODEL_FORMAT, feature_names, save_model
from exoctl.offline.features import condition
from exoctl.signal.calibration import Calibration
from exoctl.signal.chain import synergy_activations
from exoctl.signal.synergy import choose_k

OPSET = 17
LINEAR_MODEL_PATH = Path(__file__).resolve().parents[1] / "models" / "default.onnx"
"""The shipped linear baseline (``configs/default.yaml`` uses the network beside it)."""
WARMUP_S = 2.0  # filter transients at the start of a recording are not fitted

__all__ = ["condition", "fit_ridge", "make_default_model", "synergy_activations", "write_onnx"]


def fit_ridge(X: np.ndarray, y: np.ndarray, lam: float = 1e-3) -> tuple[np.ndarray, np.ndarray]:
    """Ridge with an unpenalised intercept; returns (coef (f, j), intercept (j,))."""
    xm, ym = X.mean(0), y.mean(0)
    Xc, yc = X - xm, y - ym
    f = X.shape[1]
    coef = np.linalg.solve(Xc.T @ Xc + lam * len(X) * np.eye(f), Xc.T @ yc)
    return coef, ym - xm @ coef


def write_onnx(path: Path, coef: np.ndarray, intercept: np.ndarray, metadata: dict) -> None:
    from onnx import TensorProto, helper, numpy_helper

    f, j = coef.shape
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["features", "coef"], ["mm"]),
            helper.make_node("Add", ["mm", "intercept"], ["torque"]),
        ],
        "exoctl_linear_torque",
        [helper.make_tensor_value_info("features", TensorProto.FLOAT, [1, f])],
        [helper.make_tensor_value_info("torque", TensorProto.FLOAT, [1, j])],
        [
            numpy_helper.from_array(coef.astype(np.float32), "coef"),
            numpy_helper.from_array(intercept.astype(np.float32).reshape(1, j), "intercept"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)])
    model.ir_version = 8
    save_model(model, path, "exoctl.training.linear_model", metadata)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True, timeout=5
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def make_default_model(
    cfg: Config, out_dir: Path, duration_s: float = 120.0, session: int = 100
) -> dict:
    """Record, calibrate, fit, export. Returns the provenance document it writes."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fs = cfg.emg.sampling_rate_hz
    rec = patient_from_config(cfg, session=session).generate(duration_s)
    warm = int(WARMUP_S * fs)

    env = condition(cfg, rec.emg, None)
    mvc = np.percentile(env[warm:], 99.5, axis=0)
    a = condition(cfg, rec.emg, mvc)
    choice = choose_k(a[warm::10], vaf_threshold=0.9)
    muscles = tuple(cfg.emg.muscles)
    cal = Calibration(
        muscles=muscles,
        mvc=mvc,
        W=choice.W,
        vaf=choice.vaf,
        source={
            "made_by": "python -m exoctl.training.linear_model",
            "simulator": {"seed": cfg.simulator.seed, "session": session, "duration_s": duration_s},
            "mvc": "99.5th percentile of the conditioned envelope (no MVC trial in simulation)",
            "vaf_by_k": {int(k): round(v, 4) for k, v in choice.vaf_by_k.items()},
        },
    )
    h = synergy_activations(cal.W, a)
    X = np.hstack([h, a])[warm:]
    y = rec.torque[warm:]
    split = int(0.75 * len(X))
    coef, intercept = fit_ridge(X[:split], y[:split])
    r2_held = r2(y[split:], X[split:] @ coef + intercept)
    coef, intercept = fit_ridge(X, y)  # final model on all of it

    joints = cfg.joint_names
    metrics = {
        "r2_held_out": {jn: round(float(v), 4) for jn, v in zip(joints, r2_held, strict=True)},
        "held_out_s": round((len(X) - split) / fs, 1),
    }
    metadata = {
        "format": MODEL_FORMAT,
        "features": list(feature_names(muscles, cal.k)),
        "joints": list(joints),
        "muscles": list(muscles),
        "n_synergies": cal.k,
        "model_type": "linear",
        "metrics": metrics,
    }
    cal_path = cal.save(out_dir / "sim_calibration.yaml")
    model_path = out_dir / "default.onnx"
    write_onnx(model_path, coef, intercept, metadata)
    provenance = {
        "model": model_path.name,
        "sha256": hashlib.sha256(model_path.read_bytes()).hexdigest(),
        "calibration": cal_path.name,
        "regenerate": "python -m exoctl.training.linear_model --out exoctl/models",
        "config": portable_path(cfg.source),
        "made_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
        "exoctl_version": __version__,
        "training_data": {
            "simulator_seed": cfg.simulator.seed,
            "simulator_session": session,
            "duration_s": duration_s,
            "warmup_discarded_s": WARMUP_S,
        },
        "model_type": "ridge regression (lambda 1e-3) on [synergy activations, muscle activations]",
        "n_synergies": cal.k,
        "synergy_vaf": round(cal.vaf, 4),
        "metrics": metrics,
    }
    (out_dir / "default.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return provenance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exoctl.training.linear_model", description=__doc__)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--out", type=Path, default=LINEAR_MODEL_PATH.parent)
    p.add_argument("--duration", type=float, default=120.0)
    p.add_argument("--session", type=int, default=100)
    args = p.parse_args(argv)
    prov = make_default_model(load_config(args.config), args.out, args.duration, args.session)
    json.dump(prov, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
