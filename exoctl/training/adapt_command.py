"""CLI: ``exoctl adapt``: adapt a trained network to a later session's unlabelled EMG (the
``train`` extra: PyTorch is imported inside the command)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import TextIO

from exoctl.cli_policy import EXIT_ERROR, EXIT_USAGE, fail

from .command_common import _NO_TORCH, _calibration_path, _cfg, _say, _torch_or_none


def cmd_adapt(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    say = _say(out)
    if getattr(args, "session", None):
        return _adapt_session(args, out)
    missing = [f"--{k}" for k in ("model", "data", "out") if getattr(args, k, None) is None]
    if missing:
        return fail(
            f"adapt: give --session ID (a recorded warm-up), or {', '.join(missing)} "
            "(a dataset adaptation)",
            EXIT_USAGE,
        )
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
    from exoctl.data.dataset import load_dataset
    from exoctl.estimation.torque_model import TorqueModel

    from .pipeline import DataSource, dataset_tick_sets, sidecar, write_provenance
    from .workflow import adapt_model, load_torch

    t_start = time.monotonic()
    cfg = _cfg(args)
    model = TorqueModel(args.model)
    info = model.info
    if info.extra.get("model_type") != "network":
        raise ValueError(
            f"{args.model}: only a network can be adapted (this is {info.extra.get('model_type')})"
        )
    pt = sidecar(args.model, "pt")
    if not pt.is_file():
        raise ValueError(f"{args.model}: its weights {pt.name} are not beside it; retrain")
    from exoctl.signal.calibration import load_calibration

    cal = load_calibration(_calibration_path(args.model, None, cfg))
    net, _doc = load_torch(pt)
    src_info = info.extra["training_data"][0]
    src_path = args.source_data or Path(src_info["path"] or "")
    if not Path(src_path).is_file():
        raise ValueError(
            f"the model's labelled training data {src_path} is not there; give --source-data"
        )
    kin = bool(info.extra.get("kinematics"))
    rate = info.tick_rate_hz
    source = dataset_tick_sets(
        cfg, load_dataset(src_path), src_info["trials"], cal, kinematics=kin, need_torque=True,
        tick_rate_hz=rate,
    ).sets  # fmt: skip
    if args.source_data is None:
        now = [s.fingerprint for s in source]
        if now != list(src_info["fingerprints"]):
            say("WARNING: the training data on disk differs from what the model was trained on")
    target = dataset_tick_sets(
        cfg, load_dataset(args.data), args.trials, cal, kinematics=kin, need_torque=False,
        tick_rate_hz=rate,
    ).sets  # fmt: skip
    say(f"adapting to {[t.name for t in target]} (EMG{' and angles' if kin else ''} only)")
    meta = {**info.extra, **_core_metadata(info)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cal_path = cal.save(sidecar(args.out, "calibration"))
    meta["calibration_file"] = cal_path.name
    _adapted, meta = adapt_model(
        net, meta, source, target, args.out,
        n_emg_features=info.n_synergies + len(info.muscles),
        target_source=DataSource(
            "dataset", str(Path(args.data).resolve()), tuple(t.name for t in target),
            tuple(t.fingerprint for t in target),
        ),
        from_model=str(args.model), say=say, epochs=args.epochs, renormalise=args.renormalise,
        seed=args.seed, samples_per_epoch=args.samples_per_epoch, mode=args.mode,
        adversarial=args.adversarial,
    )  # fmt: skip
    elapsed = time.monotonic() - t_start
    write_provenance(
        args.out, {"adaptation": meta["adaptation"], "adapt_time_s": round(elapsed, 1)}
    )
    say(f"wrote {args.out} in {elapsed:.0f} s")
    return 0


def _core_metadata(info) -> dict:
    """The metadata keys ``ModelInfo`` keeps apart from ``extra``, back in the document."""
    from exoctl.estimation.torque_model import MODEL_FORMAT

    return {
        "format": MODEL_FORMAT,
        "features": list(info.features),
        "joints": list(info.joints),
        "muscles": list(info.muscles),
        "n_synergies": info.n_synergies,
        "input": info.input.entry(),
    }


def _adapt_session(args: argparse.Namespace, out: TextIO) -> int:
    """``exoctl adapt --session ID``: numpy only; the guard decides, the clinician accepts."""
    import json

    from exoctl.cli_policy import EXIT_REFUSED, emit_json
    from exoctl.config.schema import ConfigError
    from exoctl.recordings.store import RecorderError
    from exoctl.service.registry import Registry
    from exoctl.signal.calibration import CalibrationError

    from .session_adapt import adapt_session, format_report, write_outputs

    try:
        cfg = _cfg(args)
        data_dir = Path(cfg.service.data_dir)
        reference = args.reference
        registry = Registry(data_dir)
        if reference is None:
            from exoctl.recordings import recorder as R

            with R.open_session_db(R.find_session(data_dir, args.session)) as conn:
                patient = R.session_info(conn, args.session)["patient"]
            cur = registry.current(patient)
            reference = (cur or {}).get("reference_session")
            if reference is None:
                return fail(
                    f"adapt: patient {patient} has no reference recording in the model "
                    "registry; give --reference ID (a session recorded with the model's own "
                    "calibration)",
                    EXIT_USAGE,
                )
        res = adapt_session(cfg, data_dir, args.session, reference)
        if args.out is not None:
            rep_path = write_outputs(res, args.out)
            res.report["proposed_calibration"] = (
                str(args.out) if res.calibration is not None else None
            )
            rep_path.write_text(json.dumps(res.report, indent=2) + "\n")
        accepted = res.verdict.accepted
        if args.accept and accepted:
            if args.out is None:
                return fail("adapt: --accept needs --out (where the calibration goes)", EXIT_USAGE)
            model = res.report["model"]
            version = registry.accept(
                res.report["patient"], model, args.out,
                sources=[f"reference session {reference}", f"warm-up session {args.session}"],
                gain=res.report["gain"], scores=res.report, reference_session=reference,
            )  # fmt: skip
            res.report["registry_version"] = version
        if args.json:
            emit_json(res.report)
        else:
            print(format_report(res.report), file=out)
            if "registry_version" in res.report:
                print(
                    f"accepted: model version {res.report['registry_version']} is now patient "
                    f"{res.report['patient']}'s current one",
                    file=out,
                )
        if args.accept and not accepted:
            return fail("adapt: the guard refused this adaptation; nothing was changed",
                        EXIT_REFUSED)  # fmt: skip
        return 0
    except (RecorderError, CalibrationError, ConfigError, ValueError, OSError) as e:
        return fail(str(e), EXIT_ERROR)
