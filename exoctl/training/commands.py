"""CLI: ``exoctl train``, ``exoctl evaluate``, ``exoctl adapt`` (the ``train`` extra).

This module is imported by the CLI on every start, the daemon's included, so it imports
neither torch nor the training code at module level: ``train`` and ``adapt`` import PyTorch
inside the command and, without it, say how to install it and exit 2. ``evaluate`` needs only
numpy and onnxruntime (it scores the ONNX file the controller would run).

Exit codes (exoctl/cli_policy.py): 0 fine, 1 the data, a model or a file is unusable (the
message, on stderr, says which), 2 bad usage or the training extra missing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from exoctl.cli_policy import EXIT_ERROR, EXIT_USAGE, fail

__all__ = ["register"]

_NO_TORCH = (
    "this command needs PyTorch, which is not installed. Install its CPU build from\n"
    "PyTorch's CPU wheel index, and onnx (together, the training extra):\n"
    "  pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu\n"
    "  pip install 'onnx>=1.16'\n"
    "(in a source checkout: pip install -e '.[train]' --extra-index-url "
    "https://download.pytorch.org/whl/cpu)"
)


def register(subparsers: Any) -> None:
    tr = subparsers.add_parser(
        "train",
        help="train a torque model on a dataset description (network or ridge baseline)",
        description="Train a torque model from a dataset's EMG (and angles) and joint moments; "
        "write M.onnx with its calibration, provenance and (network) weights beside it.",
    )
    tr.add_argument("--data", type=Path, required=True, help="dataset description (YAML)")
    tr.add_argument("--trials", nargs="+", metavar="NAME", help="task trials (default all)")
    tr.add_argument("--out", type=Path, required=True, help="model file to write (.onnx)")
    tr.add_argument("--model-type", choices=("network", "ridge"), default="network")
    tr.add_argument(
        "--calibration",
        type=Path,
        default=None,
        help="use this calibration (default: calibrate on the training trials)",
    )
    tr.add_argument("--epochs", type=int, default=20)
    tr.add_argument(
        "--windows-ms",
        type=float,
        nargs="+",
        default=None,
        help="window lengths of the branches (default 50 100 200 400)",
    )
    kin = tr.add_mutually_exclusive_group()
    kin.add_argument("--kinematics", dest="kinematics", action="store_const", const=True)
    kin.add_argument(
        "--no-kinematics",
        dest="kinematics",
        action="store_const",
        const=False,
        help="do not use joint angles/velocities (default: use them when every trial has them)",
    )
    tr.add_argument("--holdout", type=float, default=0.2, help="tail of each trial held out")
    tr.add_argument("--samples-per-epoch", type=int, default=40000, help="windows drawn per epoch")
    tr.add_argument("--seed", type=int, default=0)
    tr.set_defaults(func=cmd_train, kinematics=None)

    ev = subparsers.add_parser(
        "evaluate",
        help="score a torque model on a dataset: R^2, RMSE, NRMSE per joint",
        description="Run an exported model (through onnxruntime, as the controller does) over "
        "a dataset's trials and compare with the measured joint moments.",
    )
    ev.add_argument("--model", type=Path, required=True)
    ev.add_argument("--data", type=Path, required=True, help="dataset description (YAML)")
    ev.add_argument("--trials", nargs="+", metavar="NAME", help="task trials (default all)")
    ev.add_argument("--calibration", type=Path, default=None, help="default: the model's own")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--plot", type=Path, default=None, help="PNG: estimated vs true torque")
    ev.add_argument(
        "--compare",
        type=Path,
        nargs="+",
        metavar="MODEL",
        help="other models (e.g. the ridge baseline, the unadapted network) scored on the same "
        "ticks, each with its own calibration",
    )
    ev.set_defaults(func=cmd_evaluate)

    ad = subparsers.add_parser(
        "adapt",
        help="adversarial adaptation of a network to later, unlabelled sessions",
        description="Domain-adversarial adaptation: align the network's features on the named "
        "trials (their EMG and angles only; moments are ignored) with its labelled training "
        "data, and write the adapted model.",
    )
    ad.add_argument("--model", type=Path, required=True, help="a network made by exoctl train")
    ad.add_argument("--data", type=Path, required=True, help="dataset with the later sessions")
    ad.add_argument("--trials", nargs="+", metavar="NAME", help="task trials (default all)")
    ad.add_argument("--out", type=Path, required=True, help="adapted model file (.onnx)")
    ad.add_argument("--epochs", type=int, default=6)
    ad.add_argument(
        "--source-data",
        type=Path,
        default=None,
        help="the labelled training dataset (default: the one recorded in the model)",
    )
    ad.add_argument(
        "--renormalise",
        choices=("floor", "scale", "full", "none"),  # fit.RENORMALISE (fit imports torch)
        default="floor",
        help="before the adversarial step, re-estimate each EMG feature's amplitude factor on "
        "the later sessions from its floor (10th percentile; default) or its RMS (scale), its "
        "mean and sd (full), or nothing (none)",
    )
    ad.add_argument(
        "--mode",
        choices=("adapter", "dann"),
        default="adapter",
        help="adapter: frozen network, adversarially learned input scaling of the EMG features "
        "(default); dann: the whole feature extractor trained with gradient reversal",
    )
    ad.add_argument(
        "--adversarial",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="the adversarial step after the re-estimation (default on; measured to add "
        "nothing on the simulator's drift: docs/adaptation.md)",
    )
    ad.add_argument("--samples-per-epoch", type=int, default=20000, help="windows drawn per epoch")
    ad.add_argument("--seed", type=int, default=0)
    ad.set_defaults(func=cmd_adapt)


def _cfg(args: argparse.Namespace):
    from exoctl.config.lookup import load_for

    return load_for(args)


def _torch_or_none():
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return False
    return True


def _say(out: TextIO):
    def p(msg: str) -> None:
        print(msg, file=out, flush=True)

    return p


# ----------------------------------------------------------------------------- train


def cmd_train(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    say = _say(out)
    if args.model_type == "network" and not _torch_or_none():
        return fail(_NO_TORCH, EXIT_USAGE)
    if not 0.0 <= args.holdout < 0.9 or args.epochs < 1:
        return fail("--holdout must be in [0, 0.9) and --epochs >= 1", EXIT_USAGE)
    from exoctl.config.schema import ConfigError
    from exoctl.data.dataset import DatasetError

    try:
        return _train(args, say)
    except (DatasetError, ConfigError, ValueError, OSError) as e:
        return fail(str(e), EXIT_ERROR)


def _calibrate(args, cfg, ds, say):
    from exoctl.data.calibrate import ChainSettings, calibrate_dataset
    from exoctl.signal.calibration import load_calibration

    if args.calibration is not None:
        cal = load_calibration(args.calibration)
        say(f"calibration {args.calibration}: K={cal.k}, muscles {list(cal.muscles)}")
        return cal
    res = calibrate_dataset(ds, trials=args.trials, chain=ChainSettings.from_config(cfg))
    for w in res.warnings:
        say(f"WARNING: {w}")
    say(f"calibrated on {res.task_trials}: K={res.calibration.k} (VAF {res.calibration.vaf:.1%})")
    return res.calibration


def _train(args, say) -> int:
    import numpy as np

    from exoctl.data.dataset import load_dataset

    from .evaluation import fit_lagged_ridge, joint_metrics, predict, summarise, write_ridge_onnx
    from .pipeline import (
        DEFAULT_WINDOWS_MS,
        DataSource,
        dataset_tick_sets,
        model_metadata,
        scales_in_ticks,
        sidecar,
        split_tail,
        write_provenance,
    )

    t_start = time.monotonic()
    cfg = _cfg(args)
    ds = load_dataset(args.data)
    cal = _calibrate(args, cfg, ds, say)
    kin = args.kinematics if args.model_type == "network" else False
    sets, tcfg, kin = dataset_tick_sets(cfg, ds, args.trials, cal, kinematics=kin, need_torque=True)
    rate = tcfg.control.rate_hz
    windows_ms = tuple(args.windows_ms or DEFAULT_WINDOWS_MS)
    scales = scales_in_ticks(windows_ms, rate)
    window = max(scales)
    heads, tails = zip(*(split_tail(s, args.holdout) for s in sets), strict=True)
    if args.holdout == 0:
        tails = ()
    say(
        f"{len(sets)} trial(s), {sum(h.n - h.warm for h in heads)} training ticks at {rate:g} Hz; "
        f"features {list(sets[0].names)}"
    )
    mass = next((s.body_mass_kg for s in sets if s.body_mass_kg), None)
    joints, muscles = tcfg.joint_names, tuple(cal.muscles)
    source = DataSource(
        "dataset",
        str(Path(args.data).resolve()),
        tuple(s.name for s in sets),
        tuple(s.fingerprint for s in sets),
    )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cal_path = sidecar(args.out, "calibration")
    cal.save(cal_path)
    common = dict(
        muscles=muscles,
        joints=joints,
        cal=cal,
        window_ticks=window,
        tick_rate_hz=rate,
        emg_rate_hz=tcfg.emg.sampling_rate_hz,
        sources=[source],
    )
    extra = {
        "calibration_file": cal_path.name,
        "holdout_fraction": args.holdout,
        "kinematics": kin,
    }
    if args.model_type == "ridge":
        lags, coef, b = fit_lagged_ridge(list(heads), cal.k, rate)
        features = [f"h{i}" for i in range(cal.k)]
        meta = model_metadata(
            model_type="ridge", features=features, windows_ms=None, metrics={},
            extra={**extra, "lags_ticks": lags.tolist()}, **common,
        )  # fmt: skip
        write_ridge_onnx(args.out, lags, coef, b, window, meta)
    else:
        from .fit import emg_augmentation, export_onnx, set_threads, train_network

        set_threads(2)
        k, m = cal.k, len(cal.muscles)
        net = train_network(
            list(heads), scales, epochs=args.epochs, seed=args.seed, progress=say,
            samples_per_epoch=args.samples_per_epoch, **emg_augmentation(k + m),
        )  # fmt: skip
        norm = {
            "x_mean": net.x_mean.tolist(),
            "x_std": net.x_std.tolist(),
            "y_mean": net.y_mean.tolist(),
            "y_std": net.y_std.tolist(),
        }
        meta = model_metadata(
            model_type="network", features=sets[0].names, windows_ms=windows_ms, metrics={},
            normalisation=norm, extra={**extra, "architecture": net.config}, **common,
        )  # fmt: skip
        export_onnx(net, args.out, meta)
        _save_torch(net, sidecar(args.out, "pt"), meta)
    metrics: dict = {}
    if tails:
        y = np.vstack([t.y[t.warm :] for t in tails])
        yhat = np.vstack([predict(args.out, t, np.arange(t.warm, t.n)) for t in tails])
        per = joint_metrics(y, yhat, joints, mass)
        metrics = {"held_out": per, **summarise(per), "held_out_fraction": args.holdout}
        _print_metrics(per, say, f"held-out tail ({args.holdout:.0%} of each trial)")
        # the metrics go into the file's metadata too: rewrite it with them
        _set_metrics(args.out, metrics)
    elapsed = time.monotonic() - t_start
    write_provenance(
        args.out,
        {
            "command": "exoctl " + " ".join(sys.argv[1:]) if sys.argv else "exoctl train",
            "model_type": args.model_type,
            "calibration": cal_path.name,
            "data": source.__dict__,
            "metrics": metrics,
            "training_time_s": round(elapsed, 1),
        },
    )
    say(f"wrote {args.out} (+ {cal_path.name}) in {elapsed:.0f} s")
    return 0


def _save_torch(net, path: Path, meta: dict) -> None:
    import torch

    torch.save(
        {
            "state_dict": net.state_dict(),
            "n_features": net.n_features,
            "n_joints": net.n_joints,
            "scales": net.scales,
            "config": net.config,
            "features": meta["features"],
            "training_data": meta["training_data"],
            "calibration_fingerprint": meta["calibration_fingerprint"],
        },
        path,
    )


def _load_torch(path: Path):
    import torch

    from .network import MultiScaleNet

    doc = torch.load(path, map_location="cpu", weights_only=False)
    net = MultiScaleNet(doc["n_features"], doc["n_joints"], doc["scales"], **doc["config"])
    net.load_state_dict(doc["state_dict"])
    net.eval()
    return net, doc


def _set_metrics(path: Path, metrics: dict) -> None:
    import onnx

    from exoctl.estimation.torque_model import METADATA_KEY, save_model

    model = onnx.load(str(path))
    doc = json.loads(next(p.value for p in model.metadata_props if p.key == METADATA_KEY))
    doc["metrics"] = metrics
    save_model(model, path, model.producer_name, doc)


def _print_metrics(per: dict, say, title: str) -> None:
    say(f"\n{title}:")
    say(f"  {'joint':<8}{'R^2':>8}{'RMSE N m':>10}{'N m/kg':>9}{'NRMSE':>8}")
    for j, m in per.items():
        kg = f"{m['rmse_nm_per_kg']:9.3f}" if "rmse_nm_per_kg" in m else f"{'-':>9}"
        say(f"  {j:<8}{m['r2']:8.3f}{m['rmse_nm']:10.2f}{kg}{m['nrmse']:8.3f}")


# -------------------------------------------------------------------------- evaluate


def _calibration_path(model: Path, given: Path | None, cfg) -> Path:
    """The calibration to score ``model`` with: ``--calibration``, else the file the model
    names (its metadata, else the provenance .json made beside it), else the configuration's
    (what the daemon would run it with). A model tied to another calibration's fingerprint is
    still refused, when scored. Resolved before any scoring, so a missing file is said at once.
    """
    from exoctl.estimation.torque_model import TorqueModel

    if given is not None:
        return given
    candidates: list[Path] = []
    name = TorqueModel(model).info.extra.get("calibration_file")
    if name:
        candidates.append(model.with_name(name))
    provenance = model.with_suffix(".json")
    if provenance.is_file():
        try:
            named = json.loads(provenance.read_text()).get("calibration")
        except (OSError, ValueError, AttributeError):
            named = None
        if isinstance(named, str):
            candidates.append(model.with_name(named))
    candidates.append(Path(cfg.estimator.calibration))
    for c in candidates:
        if c.is_file():
            return c
    raise ValueError(
        f"{model}: no calibration found (looked for {', '.join(map(str, candidates))}); "
        "give --calibration"
    )


def cmd_evaluate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from exoctl.cli_policy import json_text

    out = out or sys.stdout
    say = _say(out)
    from exoctl.config.schema import ConfigError
    from exoctl.data.dataset import DatasetError
    from exoctl.estimation.torque_model import ModelError
    from exoctl.signal.calibration import CalibrationError

    try:
        return _evaluate(args, say, out)
    except (DatasetError, ConfigError, CalibrationError, ModelError, ValueError, OSError) as e:
        if args.json:  # stdout stays one JSON document (exoctl/cli_policy.py)
            out.write(json_text({"ok": False, "error": str(e), "exit_code": EXIT_ERROR}) + "\n")
        return fail(str(e), EXIT_ERROR)


def _score(cfg, path: Path, calibration: Path, ds, trials) -> dict:
    """One model over a dataset's trials, through onnxruntime: metrics and the series."""
    import numpy as np

    from exoctl.estimation.torque_model import TorqueModel, calibration_fingerprint
    from exoctl.signal.calibration import load_calibration

    from .evaluation import joint_metrics, predict, summarise
    from .pipeline import dataset_tick_sets

    model = TorqueModel(path)
    info = model.info
    cal = load_calibration(calibration)
    if set(ds.muscles) != set(info.muscles) or tuple(ds.joints) != info.joints:
        raise ValueError(
            f"{path} is for muscles {list(info.muscles)} and joints {list(info.joints)}; "
            f"the dataset has muscles {list(ds.muscles)} and joints {list(ds.joints)}"
        )
    model.check_layout(
        info.joints,
        cal.muscles,
        cal.k,
        "the calibration",
        calibration=calibration_fingerprint(cal.muscles, cal.mvc, cal.W),
    )
    kin = any(f.startswith(("angle:", "velocity:")) for f in info.features)
    sets, tcfg, _ = dataset_tick_sets(cfg, ds, trials, cal, kinematics=kin, need_torque=True)
    if (
        info.input_kind != "instant"
        and info.tick_rate_hz is not None
        and abs(tcfg.control.rate_hz - info.tick_rate_hz) > 1e-6
    ):
        raise ValueError(
            f"{path}: made for {info.tick_rate_hz:g} Hz ticks, the configuration's control "
            f"rate is {tcfg.control.rate_hz:g} Hz"
        )
    mass = next((s.body_mass_kg for s in sets if s.body_mass_kg), None)
    ys, yhats, per_trial = [], [], {}
    for ts in sets:
        ticks = np.arange(ts.warm, ts.n)
        yhat = predict(path, ts, ticks)
        ys.append(ts.torques[ticks])
        yhats.append(yhat)
        per_trial[ts.name] = joint_metrics(ts.torques[ticks], yhat, info.joints, mass)
    y, yhat = np.vstack(ys), np.vstack(yhats)
    per = joint_metrics(y, yhat, info.joints, mass)
    return {
        "model": str(path),
        "model_type": info.extra.get("model_type"),
        "trials": [s.name for s in sets],
        "scored_ticks": int(len(y)),
        "tick_rate_hz": tcfg.control.rate_hz,
        "body_mass_kg": mass,
        "joints": per,
        **summarise(per),
        "per_trial": per_trial,
        "_series": (y, yhat, info.joints),
    }


def _evaluate(args, say, out) -> int:
    import numpy as np

    from exoctl.cli_policy import json_text
    from exoctl.data.dataset import load_dataset

    cfg = _cfg(args)
    cal = _calibration_path(args.model, args.calibration, cfg)
    compare = {other: _calibration_path(other, None, cfg) for other in args.compare or ()}
    ds = load_dataset(args.data)
    result = _score(cfg, args.model, cal, ds, args.trials)
    y, yhat, joints = result.pop("_series")
    result["data"] = str(args.data)
    others = {}
    for other, other_cal in compare.items():
        r = _score(cfg, other, other_cal, ds, args.trials)
        r.pop("_series")
        others[str(other)] = r
    if others:
        result["compare"] = others
    rate = result["tick_rate_hz"]
    if args.plot is not None:
        from .plot import plot_torques

        t = np.arange(len(y)) / rate
        plot_torques(args.plot, t, y, yhat, joints, {j: result["joints"][j]["r2"] for j in joints})
        result["plot"] = str(args.plot)
    if args.json:
        out.write(json_text(result) + "\n")  # strict JSON: an R^2 that is NaN is null
        return 0
    say(f"model {args.model} ({result['model_type']}) on {args.data}: {result['trials']}")
    _print_metrics(result["joints"], say, f"{result['scored_ticks']} ticks at {rate:g} Hz")
    if others:
        say("\nR^2 side by side, same ticks:")
        models = {str(args.model): result, **others}
        say(f"  {'model':<40}{'type':<10}" + "".join(f"{j:>9}" for j in joints))
        for name, r in models.items():
            row = "".join(f"{r['joints'][j]['r2']:9.3f}" for j in joints)
            say(f"  {Path(name).name:<40}{str(r['model_type']):<10}{row}")
    if args.plot is not None:
        say(f"\nplot: {args.plot}")
    return 0


# ----------------------------------------------------------------------------- adapt


def cmd_adapt(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    say = _say(out)
    if not _torch_or_none():
        return fail(_NO_TORCH, EXIT_USAGE)
    from exoctl.config.schema import ConfigError
    from exoctl.data.dataset import DatasetError
    from exoctl.estimation.torque_model import ModelError
    from exoctl.signal.calibration import CalibrationError

    try:
        return _adapt(args, say)
    except (DatasetError, ConfigError, CalibrationError, ModelError, ValueError, OSError) as e:
        return fail(str(e), EXIT_ERROR)


def _adapt(args, say) -> int:
    import onnx

    from exoctl.data.dataset import load_dataset
    from exoctl.estimation.torque_model import METADATA_KEY, TorqueModel

    from .fit import adapt_network, export_onnx, set_threads
    from .pipeline import DataSource, dataset_tick_sets, sidecar, write_provenance

    t_start = time.monotonic()
    cfg = _cfg(args)
    info = TorqueModel(args.model).info
    if info.extra.get("model_type") != "network":
        raise ValueError(
            f"{args.model}: only a network can be adapted (this is {info.extra.get('model_type')})"
        )
    pt = sidecar(args.model, "pt")
    if not pt.is_file():
        raise ValueError(f"{args.model}: its weights {pt.name} are not beside it; retrain")
    from exoctl.signal.calibration import load_calibration

    cal = load_calibration(_calibration_path(args.model, None, cfg))
    set_threads(2)
    net, doc = _load_torch(pt)
    src_info = info.extra["training_data"][0]
    src_path = args.source_data or Path(src_info["path"] or "")
    if not Path(src_path).is_file():
        raise ValueError(
            f"the model's labelled training data {src_path} is not there; give --source-data"
        )
    kin = bool(info.extra.get("kinematics"))
    src_ds = load_dataset(src_path)
    source, _, _ = dataset_tick_sets(
        cfg, src_ds, src_info["trials"], cal, kinematics=kin, need_torque=True
    )
    if args.source_data is None:
        now = [s.fingerprint for s in source]
        if now != list(src_info["fingerprints"]):
            say("WARNING: the training data on disk differs from what the model was trained on")
    ds = load_dataset(args.data)
    target, _, _ = dataset_tick_sets(cfg, ds, args.trials, cal, kinematics=kin, need_torque=False)
    for t in target:
        t.y = None  # the later sessions' moments, if any, are never used
    say(f"adapting to {[t.name for t in target]} (EMG{' and angles' if kin else ''} only)")
    n_emg = info.n_synergies + len(info.muscles)
    adapted, report = adapt_network(
        net, source, target, n_emg_features=n_emg, epochs=args.epochs,
        renormalise=args.renormalise,
        seed=args.seed, progress=say,
        samples_per_epoch=args.samples_per_epoch, mode=args.mode, adversarial=args.adversarial,
    )  # fmt: skip
    meta = json.loads(
        next(p.value for p in onnx.load(str(args.model)).metadata_props if p.key == METADATA_KEY)
    )
    meta["normalisation"] = {
        "x_mean": adapted.x_mean.tolist(),
        "x_std": adapted.x_std.tolist(),
        "y_mean": adapted.y_mean.tolist(),
        "y_std": adapted.y_std.tolist(),
    }
    meta["adaptation"] = {
        "from_model": str(args.model),
        "target": DataSource(
            "dataset", str(Path(args.data).resolve()), tuple(t.name for t in target),
            tuple(t.fingerprint for t in target),
        ).__dict__,
        **report,
    }  # fmt: skip
    meta["metrics"] = {}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cal.save(sidecar(args.out, "calibration"))
    meta["calibration_file"] = sidecar(args.out, "calibration").name
    export_onnx(adapted, args.out, meta)
    _save_torch(adapted, sidecar(args.out, "pt"), meta)
    elapsed = time.monotonic() - t_start
    write_provenance(
        args.out, {"adaptation": meta["adaptation"], "adapt_time_s": round(elapsed, 1)}
    )
    say(f"wrote {args.out} in {elapsed:.0f} s")
    return 0
