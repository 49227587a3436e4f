"""What ``exoctl train``, ``evaluate`` and ``adapt`` share (``exoctl.training.commands``
registers them): the message when PyTorch is missing, the configuration, the printing, the
calibration a model is scored with. A module of its own so that the three command modules
import it and not each other. Imports neither torch nor the training code at module level."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import TextIO

_NO_TORCH = (
    "this command needs PyTorch, which is not installed. Install its CPU build from\n"
    "PyTorch's CPU wheel index, and onnx (together, the training extra):\n"
    "  pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu\n"
    "  pip install 'onnx>=1.16'\n"
    "(in a source checkout: pip install -e '.[train]' --extra-index-url "
    "https://download.pytorch.org/whl/cpu)"
)


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


def _print_metrics(per: dict, say, title: str) -> None:
    say(f"\n{title}:")
    say(f"  {'joint':<8}{'R^2':>8}{'RMSE N m':>10}{'N m/kg':>9}{'NRMSE':>8}")
    for j, m in per.items():
        kg = f"{m['rmse_nm_per_kg']:9.3f}" if "rmse_nm_per_kg" in m else f"{'-':>9}"
        say(f"  {j:<8}{m['r2']:8.3f}{m['rmse_nm']:10.2f}{kg}{m['nrmse']:8.3f}")


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
