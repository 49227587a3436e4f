"""CLI: ``exoctl evaluate``: score an ONNX model (as the controller runs it) on a dataset, or
run the evaluation protocol on real recorded data (``--protocol real``). Needs no PyTorch."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TextIO

from exoctl.cli_policy import EXIT_ERROR, EXIT_USAGE, fail

from .command_common import _NO_TORCH, _calibration_path, _cfg, _print_metrics, _say, _torch_or_none


def cmd_evaluate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from exoctl.cli_policy import json_text

    out = out or sys.stdout
    say = _say(out)
    if args.protocol is not None:
        return _protocol(args, say)
    protocol_only = [f"--{k}" for k in ("rows", "out", "datasets") if getattr(args, k)]
    if args.model is None or args.data is None or protocol_only:
        return fail(
            "evaluate needs --model and --data"
            + (f"; {', '.join(protocol_only)} only go with --protocol" if protocol_only else ""),
            EXIT_USAGE,
        )
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


def _score(
    cfg, path: Path, calibration: Path, ds, trials, window: tuple[float | None, float | None]
) -> dict:
    """One model over a dataset's trials, through onnxruntime: metrics and the series.

    A window model is scored at the tick rate it was made for (the configuration's control
    rate only matters to the controller, which refuses another). The configuration's
    ``estimator.model_every_ticks`` holds the model's value between its runs as the controller
    does, on the scored tick set's grid. ``window`` (``--from``,
    ``--to``): only the ticks in it are scored, on each trial's own time axis (tick i of a
    trial is at its first sample's time + i / tick rate, as ``exoctl hil --replay`` maps it)."""
    import numpy as np

    from exoctl.estimation.metrics import joint_metrics, summarise
    from exoctl.estimation.torque_model import TorqueModel, calibration_fingerprint
    from exoctl.signal.calibration import load_calibration

    from .pipeline import dataset_tick_sets
    from .workflow import score_sets

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
    data = dataset_tick_sets(
        cfg, ds, trials, cal, kinematics=kin, need_torque=True, tick_rate_hz=info.tick_rate_hz
    )
    _check_signal_kind(path, info.extra.get("emg_signal"), data.emg_signal)
    mass = data.body_mass_kg
    ticks = None
    if window != (None, None):
        lo, hi = (
            (-np.inf if window[0] is None else window[0]),
            (np.inf if window[1] is None else window[1]),
        )
        ticks = []
        for ts in data.sets:
            t = float(ds.load_trial(ts.name).t[0]) + np.arange(ts.n) / ts.tick_rate_hz
            tt = np.flatnonzero((t >= lo - 1e-9) & (t <= hi + 1e-9) & (np.arange(ts.n) >= ts.warm))
            if not tt.size:
                raise ValueError(f"trial {ts.name}: no tick between --from and --to")
            ticks.append(tt)
    every = cfg.estimator.model_every_ticks  # the estimate the controller would command
    scored, y, yhat = score_sets(path, data.sets, info.joints, mass, ticks, every)
    per_trial = {}
    start = 0
    for i, ts in enumerate(data.sets):
        n = ts.n - ts.warm if ticks is None else len(ticks[i])
        per_trial[ts.name] = joint_metrics(y[start : start + n], yhat[start : start + n],
                                           info.joints, mass)  # fmt: skip
        start += n
    return {
        "model": str(path),
        "model_type": info.extra.get("model_type"),
        "trials": [s.name for s in data.sets],
        "scored_ticks": int(len(y)),
        "tick_rate_hz": data.spec.tick_rate_hz,
        "model_every_ticks": every,
        "body_mass_kg": mass,
        "joints": scored["joints"],
        **summarise(scored["joints"]),
        "per_trial": per_trial,
        "_series": (y, np.asarray(yhat), info.joints),
    }


def _protocol(args: argparse.Namespace, say) -> int:
    if args.model is not None or args.data is not None or args.plot or args.compare:
        return fail(
            "--protocol runs its own models and data: no --model/--data/--plot/--compare",
            EXIT_USAGE,
        )
    if not _torch_or_none():
        return fail(_NO_TORCH, EXIT_USAGE)
    from exoctl.config.schema import ConfigError
    from exoctl.data.dataset import DatasetError

    from . import real_protocol

    args.rows = args.rows or ",".join(real_protocol.ROW_GROUPS)
    args.datasets = args.datasets or real_protocol.DATASETS
    try:
        return real_protocol.run_from_args(args, say)
    except (DatasetError, ConfigError, ValueError, OSError) as e:
        return fail(str(e), EXIT_ERROR)


def _check_signal_kind(path: Path, model_signal, data_signal: dict) -> None:
    """Refuse scoring a model on EMG of another kind than it was trained on (raw vs envelopes
    made elsewhere): the figures would describe a chain no one runs."""
    if not model_signal:
        return
    if model_signal.get("input") != data_signal.get("input"):
        raise ValueError(
            f"{path}: trained on {model_signal.get('input')} EMG, the dataset's trials are "
            f"{data_signal.get('input')} EMG (the description's emg.kind): score it on data of "
            "its own kind"
        )


def _evaluate(args, say, out) -> int:
    import numpy as np

    from exoctl.cli_policy import json_text
    from exoctl.data.dataset import load_dataset

    cfg = _cfg(args)
    cal = _calibration_path(args.model, args.calibration, cfg)
    compare = {other: _calibration_path(other, None, cfg) for other in args.compare or ()}
    ds = load_dataset(args.data)
    window = (getattr(args, "from_s", None), getattr(args, "to_s", None))
    result = _score(cfg, args.model, cal, ds, args.trials, window)
    y, yhat, joints = result.pop("_series")
    result["data"] = str(args.data)
    others = {}
    for other, other_cal in compare.items():
        r = _score(cfg, other, other_cal, ds, args.trials, window)
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
    every = result["model_every_ticks"]
    held = f", the model run every {every} ticks and held between" if every > 1 else ""
    _print_metrics(result["joints"], say, f"{result['scored_ticks']} ticks at {rate:g} Hz{held}")
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
