"""CLI: ``exoctl train``, ``exoctl evaluate``, ``exoctl adapt`` (the ``train`` extra).

This module holds the three commands' parsers and ``train``; ``evaluate`` and ``adapt`` are
in ``evaluate_command`` and ``adapt_command``, and what the three share in ``command_common``.

This module is imported by the CLI on every start, the daemon's included, so it imports
neither torch nor the training code at module level: ``train`` and ``adapt`` import PyTorch
inside the command and, without it, say how to install it and exit 2. ``evaluate`` needs only
numpy and onnxruntime (it scores the ONNX file the controller would run).

Exit codes (exoctl/cli_policy.py): 0 fine, 1 the data, a model or a file is unusable (the
message, on stderr, says which), 2 bad usage or the training extra missing.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from exoctl.cli_policy import EXIT_ERROR, EXIT_USAGE, fail

from .command_common import _NO_TORCH, _cfg, _print_metrics, _say, _torch_or_none

__all__ = ["register"]


def register(subparsers: Any) -> None:
    from .adapt_command import cmd_adapt
    from .evaluate_command import cmd_evaluate

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
        help="score a torque model on a dataset (R^2, RMSE, NRMSE per joint), or run the "
        "real-data protocol (--protocol real)",
        description="Run an exported model (through onnxruntime, as the controller does) over "
        "a dataset's trials and compare with the measured joint moments. With --protocol real: "
        "train and score the network and the lagged-ridge baseline on the shared real data "
        "(exoctl.training.real_protocol) and print the table.",
    )
    ev.add_argument("--model", type=Path, help="the model to score (not with --protocol)")
    ev.add_argument("--data", type=Path, help="dataset description (YAML; not with --protocol)")
    ev.add_argument(
        "--protocol",
        choices=("real",),
        default=None,
        help="real: the real-data evaluation protocol (trains models; needs the train extra)",
    )
    ev.add_argument(
        "--rows",
        default=None,
        help="with --protocol: row groups to run (within,cross,falisse,moco; default all)",
    )
    ev.add_argument(
        "--out", type=Path, default=None, help="with --protocol: directory for the table files"
    )
    ev.add_argument(
        "--datasets", type=Path, default=None, help="with --protocol: dataset descriptions"
    )
    ev.add_argument("--trials", nargs="+", metavar="NAME", help="task trials (default all)")
    ev.add_argument("--calibration", type=Path, default=None, help="default: the model's own")
    ev.add_argument("--json", action="store_true", help="print one JSON object")
    ev.add_argument("--from", dest="from_s", type=float, default=None, metavar="S",
                    help="score only ticks from this time on each trial's own time axis (the "
                    "features still see the trial from its start)")  # fmt: skip
    ev.add_argument(
        "--to",
        dest="to_s",
        type=float,
        default=None,
        metavar="S",
        help="score only ticks up to this time",
    )
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
        help="adapt to a later session: per-channel gain from a recorded warm-up (--session), "
        "or the network's adaptation on a dataset (--model/--data, the train extra)",
        description="With --session: the gain step on a recorded warm-up against a reference "
        "recording of the same patient (numpy, no PyTorch), judged by the guard; prints "
        "before/after and writes the proposed calibration (--out), and with --accept makes it "
        "the patient's current one. With --model/--data: the network's input re-estimation "
        "(and, with --adversarial, domain-adversarial alignment) on the named trials (their EMG "
        "and angles only; moments are ignored).",
    )
    ad.add_argument("--session", default=None, metavar="ID", help="the warm-up recording")
    ad.add_argument(
        "--reference",
        default=None,
        metavar="ID",
        help="the reference recording (default: the one named by the patient's current model)",
    )
    ad.add_argument(
        "--accept",
        action="store_true",
        help="with --session: if the guard accepts, make the result the patient's current model",
    )
    ad.add_argument("--json", action="store_true", help="with --session: print the report as JSON")
    ad.add_argument("--model", type=Path, default=None, help="a network made by exoctl train")
    ad.add_argument("--data", type=Path, default=None, help="dataset with the later sessions")
    ad.add_argument("--trials", nargs="+", metavar="NAME", help="task trials (default all)")
    ad.add_argument(
        "--out",
        type=Path,
        default=None,
        help="adapted model file (.onnx); with --session: the proposed calibration (.yaml)",
    )
    ad.add_argument("--epochs", type=int, default=6)
    ad.add_argument(
        "--source-data",
        type=Path,
        default=None,
        help="the labelled training dataset (default: the one recorded in the model)",
    )
    ad.add_argument(
        "--renormalise",
        choices=("floor", "scale", "full", "none"),  # adapt.RENORMALISE (it imports torch)
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
        default=False,
        help="the adversarial step after the re-estimation (default off: it moved the input "
        "map by at most 0.12 %% on real data and added nothing on the simulator's drift, "
        "docs/adaptation.md)",
    )
    ad.add_argument("--samples-per-epoch", type=int, default=20000, help="windows drawn per epoch")
    ad.add_argument("--seed", type=int, default=0)
    ad.set_defaults(func=cmd_adapt)


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
    from exoctl.data.calibrate import calibrate_dataset
    from exoctl.signal.calibration import load_calibration
    from exoctl.signal.chain import ChainSettings

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
    """Load and split the data, fit and export the model, score the held-out tails, record."""
    from exoctl.data.dataset import load_dataset

    from .pipeline import DataSource, dataset_tick_sets, sidecar, split_tail
    from .workflow import NetworkRecipe, fit_network_model, fit_ridge_model

    t_start = time.monotonic()
    cfg = _cfg(args)
    ds = load_dataset(args.data)
    cal = _calibrate(args, cfg, ds, say)
    data = dataset_tick_sets(
        cfg, ds, args.trials, cal, kinematics=args.kinematics, need_torque=True
    )
    heads, tails = zip(*(split_tail(s, args.holdout) for s in data.sets), strict=True)
    tails = tails if args.holdout > 0 else ()
    say(
        f"{len(data.sets)} trial(s) (EMG {data.emg_signal['input']} at "
        f"{', '.join(f'{r:g}' for r in data.emg_rates_hz)} Hz), "
        f"{sum(h.n - h.warm for h in heads)} training ticks at {data.spec.tick_rate_hz:g} Hz; "
        f"features {list(data.sets[0].names)}"
    )
    source = DataSource(
        "dataset", str(Path(args.data).resolve()), tuple(s.name for s in data.sets),
        tuple(s.fingerprint for s in data.sets),
    )  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cal_path = cal.save(sidecar(args.out, "calibration"))
    extra = {
        "calibration_file": cal_path.name,
        "holdout_fraction": args.holdout,
        "kinematics": data.kinematics,
    }
    if args.model_type == "ridge":
        fit_ridge_model(args.out, heads, data, cal, [source], extra=extra)
    else:
        recipe = NetworkRecipe(
            tuple(args.windows_ms or NetworkRecipe.windows_ms), args.epochs,
            args.samples_per_epoch, args.seed,
        )  # fmt: skip
        fit_network_model(args.out, heads, data, cal, [source], recipe, extra=extra, say=say)
    metrics = _held_out(args, tails, data, say)
    elapsed = time.monotonic() - t_start
    _record_training(args, cal_path, source, metrics, elapsed)
    say(f"wrote {args.out} (+ {cal_path.name}) in {elapsed:.0f} s")
    return 0


def _held_out(args, tails, data, say) -> dict:
    """Score the written model on the held-out tails and store the figures in its metadata."""
    from .workflow import score_sets, set_metrics

    if not tails:
        return {}
    scored, _, _ = score_sets(args.out, tails, data.spec.joints, data.body_mass_kg)
    metrics = {
        "held_out": scored["joints"],
        **{k: v for k, v in scored.items() if k != "joints"},
        "held_out_fraction": args.holdout,
    }
    _print_metrics(scored["joints"], say, f"held-out tail ({args.holdout:.0%} of each trial)")
    set_metrics(args.out, metrics)
    return metrics


def _record_training(args, cal_path: Path, source, metrics: dict, elapsed: float) -> None:
    from .pipeline import write_provenance

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
