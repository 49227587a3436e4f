"""CLI commands of the data side: ``exoctl data check``, ``exoctl data export-sim``, ``exoctl calibrate``.

``register(subparsers)`` adds the parsers; exoctl/cli.py calls it. Each command's ``func`` takes
the parsed args and returns the exit code (exoctl/cli_policy.py): 0 fine, 1 the data or a file
is unusable (the message, on stderr, says which file and key), 2 bad usage. ``python -m exoctl.data.commands ...`` runs them
without the main CLI.

``--config`` is optional on these commands (``argparse.SUPPRESS`` default, so a global
``--config`` of the main parser is not overwritten). The file is found by the one rule of
``exoctl.config.lookup``; when one is given (or set by ``$EXOCTL_CONFIG`` or /etc/exoctl),
calibration uses its filter and activation settings and its channel-to-muscle order, and
refuses a dataset with other muscles.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any, TextIO

from exoctl.cli_policy import EXIT_ERROR, EXIT_OK, EXIT_USAGE, emit_json, fail

__all__ = ["main", "register"]


def register(subparsers: Any) -> None:
    """Add the ``data`` (check, export-sim) and ``calibrate`` commands."""
    data = subparsers.add_parser("data", help="inspect lab datasets and export simulator data")
    dsub = data.add_subparsers(dest="data_command", metavar="{check,export-sim}")
    dsub.required = True

    check = dsub.add_parser(
        "check",
        help="load every trial of a dataset description and report what is in it",
        description="Load every trial of a dataset description and print channels, rates, "
        "durations, gaps, clipping and NaNs. Fails (exit 1) on a missing file or column, or "
        "an infinite or out-of-range value; errors go to stderr.",
    )
    check.add_argument("description", type=Path, help="dataset description (YAML)")
    check.add_argument("--trials", nargs="+", metavar="NAME", help="only these trials")
    check.add_argument(
        "--json", action="store_true", help="one JSON document on stdout (errors: ok false)"
    )
    check.set_defaults(func=cmd_check)

    exp = dsub.add_parser(
        "export-sim",
        help="record the synthetic patient and write it as lab files plus a description",
    )
    exp.add_argument("--out", type=Path, required=True, help="output directory")
    exp.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="configuration")
    exp.add_argument("--format", choices=("sto", "csv", "xdf"), default="sto")
    exp.add_argument("--duration", type=float, default=30.0, help="seconds per trial")
    exp.add_argument("--trials", type=int, default=1, help="number of trials (sessions)")
    exp.add_argument("--session", type=int, default=0, help="first session number")
    exp.set_defaults(func=cmd_export_sim)

    cal = subparsers.add_parser(
        "calibrate",
        help="MVC normalisation and synergies (NMF) from a dataset; writes a calibration file",
        description="Compute per-channel MVC normalisation and muscle synergies from a "
        "dataset description and write a calibration file for the estimator.",
    )
    cal.add_argument("--data", type=Path, required=True, help="dataset description (YAML)")
    cal.add_argument("--trials", nargs="+", metavar="NAME", help="trials to use (default all)")
    cal.add_argument("--out", type=Path, required=True, help="calibration file to write")
    cal.add_argument("--config", type=Path, default=argparse.SUPPRESS, help="configuration")
    cal.add_argument("--k", type=int, default=None, help="fix the number of synergies")
    cal.add_argument("--k-max", type=int, default=None, help="largest K tried (default min(m, 8))")
    cal.add_argument("--vaf", type=float, default=0.9, help="VAF threshold for K (default 0.9)")
    cal.add_argument(
        "--percentile",
        type=float,
        default=99.5,
        help="robust maximum used without an MVC trial (default 99.5)",
    )
    cal.add_argument("--seed", type=int, default=0)
    cal.set_defaults(func=cmd_calibrate)


# ------------------------------------------------------------------------------- check


def _fmt_timing(tm: Any) -> str:
    rate = f"{tm.rate_hz:.6g} Hz" if math.isfinite(tm.rate_hz) else "rate ?"
    s = f"{rate}, {tm.duration_s:.3f} s from t={tm.start_s:.3f} s, {tm.n} samples"
    if tm.gaps:
        s += f", {tm.gaps} gap(s) (longest {tm.longest_gap_s * 1000:.1f} ms)"
    if tm.non_increasing:
        s += f", {tm.non_increasing} time step(s) not increasing"
    return s


def _file_warnings(rep: Any) -> list[str]:
    out = list(rep.warnings)
    if rep.timing.gaps or rep.timing.non_increasing:
        out.append("gaps/backward time steps (interpolated over)")
    if rep.nans:
        out.append(f"NaN samples {rep.nans}")
    if rep.clipped:
        out.append(f"clipping (samples at the rail) {rep.clipped}")
    return out


def _trial_report(trial: Any) -> dict[str, Any]:
    """What ``data check`` says of one loaded trial, as plain values (text and --json)."""
    import dataclasses

    import numpy as np

    finite = np.isfinite(trial.emg)
    has = finite.any(axis=0)
    with np.errstate(over="ignore", invalid="ignore"):  # values are bounded by the importer
        sq = np.where(finite, trial.emg, 0.0) ** 2
        rms = np.where(has, np.sqrt(sq.sum(0) / np.maximum(finite.sum(0), 1)), np.nan)
        peak = np.where(has, np.abs(np.where(finite, trial.emg, 0.0)).max(axis=0), np.nan)
    ranges: dict[str, dict[str, list[float]]] = {}
    for part, arr in (("moment", trial.torque), ("angle", trial.angles)):
        if arr is not None:
            ranges[part] = {
                j: [float(np.nanmin(arr[:, i])), float(np.nanmax(arr[:, i]))]
                for i, j in enumerate(trial.joints)
            }
    env = trial.envelope
    return {
        "name": trial.name,
        "role": trial.role,
        "emg_kind": trial.emg_kind,
        "envelope": None
        if env is None
        else {"lowpass_hz": env.lowpass_hz, "normalisation": env.normalisation},
        "files": [
            {
                "part": rep.part,
                "path": str(rep.path),
                "format": rep.fmt,
                "units": rep.units,
                "timing": dataclasses.asdict(rep.timing),
                "columns_used": dict(rep.columns_used),
                "n_columns": rep.n_columns,
                "warnings": _file_warnings(rep),
            }
            for rep in trial.files
        ],
        "fs_hz": trial.fs_hz,
        "duration_s": trial.duration_s,
        "t_start_s": float(trial.t[0]),
        "t_end_s": float(trial.t[-1]),
        "emg_interpolated": trial.interpolated_emg,
        "emg_units": "uV" if trial.emg_kind == "raw" else "",
        "muscles": [
            {"name": m, "rms": float(r), "peak": float(pk)}
            for m, r, pk in zip(trial.muscles, rms, peak, strict=True)
        ],
        "ranges": ranges,
    }


def _print_trial(rep: dict[str, Any], out: TextIO) -> int:
    """The text report of one trial; returns its number of warnings."""
    warnings = 0
    print(f"\ntrial {rep['name']} ({rep['role']}, EMG {rep['emg_kind']})", file=out)
    if rep["envelope"] is not None:
        env = rep["envelope"]
        lp = f"{env['lowpass_hz']:g} Hz" if env["lowpass_hz"] else "not stated"
        print(
            f"  envelope as stated: low-pass {lp}, normalisation {env['normalisation']}",
            file=out,
        )
    for f in rep["files"]:
        tm = SimpleNamespace(**f["timing"])
        print(f"  {f['part']:<6} {Path(f['path']).name} [{f['format']}, {f['units']}]", file=out)
        print(f"         {_fmt_timing(tm)}", file=out)
        print(
            f"         {len(f['columns_used'])} of {f['n_columns']} columns used: "
            + ", ".join(f"{k}<-{v}" for k, v in f["columns_used"].items()),
            file=out,
        )
        for w in f["warnings"]:
            warnings += 1
            print(f"         WARNING: {w}", file=out)
    print(
        f"  on one time base: {rep['fs_hz']:g} Hz, {rep['duration_s']:.3f} s "
        f"(t={rep['t_start_s']:.3f}..{rep['t_end_s']:.3f} s), EMG "
        + ("interpolated" if rep["emg_interpolated"] else "on its own samples"),
        file=out,
    )
    unit = rep["emg_units"]
    print(f"  {'muscle':<28}{'rms ' + unit:>12}{'peak ' + unit:>12}", file=out)
    for m in rep["muscles"]:
        r, pk = m["rms"], m["peak"]
        flag = "  <- all NaN" if math.isnan(pk) else ("  <- flat" if not (pk > 0) else "")
        print(f"  {m['name']:<28}{r:>12.4g}{pk:>12.4g}{flag}", file=out)
    for part, unit in (("moment", "N m"), ("angle", "rad")):
        if part in rep["ranges"]:
            rng = ", ".join(
                f"{j} {lo:.3g}..{hi:.3g}" for j, (lo, hi) in rep["ranges"][part].items()
            )
            print(f"  {part} range ({unit}, flexion +): {rng}", file=out)
    return warnings


def cmd_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """Load every trial and report it: text on stdout, or one JSON document with --json.

    Errors (a description or a file that cannot be used) go to stderr, one line each, and make
    the exit code 1; with --json stdout then holds ``{"ok": false, "error": ...,
    "exit_code": 1, "data": <the report of the trials that loaded>}``.
    """
    from .dataset import DatasetError, load_dataset

    out = out or sys.stdout
    json_mode = bool(getattr(args, "json", False))
    try:
        ds = load_dataset(args.description)
    except DatasetError as e:
        return fail(str(e), EXIT_ERROR, json_mode=json_mode)
    names = args.trials or ds.trial_names
    head = {
        "name": ds.spec.name or ds.path.name,
        "path": str(ds.path),
        "muscles": list(ds.muscles),
        "joints": list(ds.joints),
        "n_trials": len(ds.trial_names),
    }
    if not json_mode:
        print(
            f"dataset {head['name']} ({ds.path}): {len(ds.muscles)} muscles, "
            f"{len(ds.joints)} joints {list(ds.joints)}, {len(ds.trial_names)} trials",
            file=out,
        )
    reports: list[dict[str, Any]] = []
    errors: list[str] = []
    warnings = 0
    for name in names:
        try:
            trial = ds.load_trial(name)
        except DatasetError as e:
            errors.append(f"trial {name}: {e}")
            continue
        rep = _trial_report(trial)
        reports.append(rep)
        if json_mode:
            warnings += sum(len(f["warnings"]) for f in rep["files"])
        else:
            warnings += _print_trial(rep, out)
    ok = len(names) - len(errors)
    summary = f"{ok} of {len(names)} trial(s) loaded, {len(errors)} error(s), {warnings} warning(s)"
    doc = {"dataset": head, "trials": reports, "errors": errors, "warnings": warnings}
    if errors:
        return fail(
            "\n".join([*errors, f"FAILED: {summary}"]), EXIT_ERROR, json_mode=json_mode, data=doc
        )
    if json_mode:
        emit_json({"ok": True, **doc}, out)
    else:
        print(f"\nOK: {summary}", file=out)
    return EXIT_OK


# ---------------------------------------------------------------------------- export-sim


def _load_config(args: argparse.Namespace) -> Any:
    """The configuration by the one lookup rule, or None where only the packaged default
    would apply (calibration then keeps the dataset's own muscle order)."""
    from exoctl.config.lookup import find_config
    from exoctl.config.schema import load_config

    choice = find_config(getattr(args, "config", None))
    return None if choice.packaged else load_config(choice.path)


def cmd_export_sim(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from exoctl.config.lookup import load_for
    from exoctl.config.schema import ConfigError
    from exoctl.data.patient import patient_from_config

    from .export import export_recording

    out = out or sys.stdout
    try:
        cfg = load_for(args)
    except ConfigError as e:
        return fail(str(e), EXIT_ERROR)
    if args.duration <= 1.0 or args.trials < 1:
        return fail("--duration must be > 1 s and --trials >= 1", EXIT_USAGE)
    s = cfg.simulator
    desc = None
    for i in range(args.trials):
        session = args.session + i
        patient = patient_from_config(cfg, session=session)
        rec = patient.generate(args.duration)
        desc = export_recording(
            rec,
            args.out,
            fmt=args.format,
            trial=f"walk_s{session}",
            body_mass_kg=s.body_mass_kg,
        )
        print(f"wrote trial walk_s{session} ({args.duration:g} s, {args.format})", file=out)
    print(f"dataset description: {desc}", file=out)
    return 0


# ----------------------------------------------------------------------------- calibrate


def cmd_calibrate(args: argparse.Namespace, out: TextIO | None = None) -> int:
    from exoctl.config.schema import ConfigError
    from exoctl.signal.chain import ChainSettings

    from .calibrate import calibrate_dataset
    from .dataset import DatasetError, load_dataset

    out = out or sys.stdout
    if not 0 < args.vaf <= 1 or not 50 <= args.percentile <= 100:
        return fail("--vaf must be in (0, 1] and --percentile in [50, 100]", EXIT_USAGE)
    try:
        cfg = _load_config(args)
    except ConfigError as e:
        return fail(str(e), EXIT_ERROR)
    try:
        ds = load_dataset(args.data)
        if cfg is not None:
            chain, muscles = ChainSettings.from_config(cfg), list(cfg.emg.muscles)
            print(f"settings and muscle order from {cfg.source}", file=out)
        else:
            chain, muscles = ChainSettings(), None
            print(
                "no --config: default filter/activation settings, the dataset's muscle order",
                file=out,
            )
        res = calibrate_dataset(
            ds,
            trials=args.trials,
            chain=chain,
            muscles=muscles,
            k=args.k,
            vaf_threshold=args.vaf,
            k_max=args.k_max,
            percentile=args.percentile,
            seed=args.seed,
        )
    except (DatasetError, ValueError) as e:
        return fail(str(e), EXIT_ERROR)
    cal, choice = res.calibration, res.choice
    print(
        f"dataset {ds.path}: task trials {res.task_trials}, MVC trials {res.mvc_trials or 'none'}; "
        f"{res.n_samples_nmf} activation samples for NMF",
        file=out,
    )
    for w in res.warnings:
        print(f"WARNING: {w}", file=out)
    ks = sorted(choice.vaf_by_k)
    print("\nVAF by number of synergies K:", file=out)
    for kk in ks:
        mark = "  <- chosen" if kk == choice.k else ""
        print(f"  K={kk}: {choice.vaf_by_k[kk]:7.2%}{mark}", file=out)
    print(f"\nVAF per muscle (%), K = {ks[0]}..{ks[-1]}; MVC in conditioned-EMG units:", file=out)
    print(f"  {'muscle':<28}{'MVC':>10}" + "".join(f"{'K=' + str(k):>8}" for k in ks), file=out)
    order = list(cal.muscles)
    for i, m in enumerate(order):
        row = "".join(f"{choice.vaf_muscle_by_k[k][i] * 100:8.1f}" for k in ks)
        print(f"  {m:<28}{cal.mvc[i]:>10.4g}{row}", file=out)
    try:
        path = cal.save(args.out)
    except OSError as e:
        return fail(f"{args.out}: cannot write: {e.strerror}", EXIT_ERROR)
    print(
        f"\nwrote {path}: {len(order)} muscles, K={cal.k}, VAF {cal.vaf:.2%} "
        f"(MVC by {res.mvc_method})",
        file=out,
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exoctl.data.commands")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
