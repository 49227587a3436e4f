"""From data to a model file: metadata and sidecar files (no torch here; the tick sets a model
is trained on are ``exoctl.offline.tick_sets``, re-exported here).

A trained model is one ONNX file plus sidecars beside it, all named from the model's stem:

- ``M.onnx``: what the controller loads (metadata: features, joints, muscles, K, input window
  and tick rate, normalisation, training data fingerprints, metrics, calibration fingerprint);
- ``M.calibration.yaml``: the calibration whose MVC and W made the training inputs (the
  controller's ``estimator.calibration`` must be this one, or a model refuses it);
- ``M.pt``: the PyTorch weights and architecture, for ``exoctl adapt`` (not needed to run);
- ``M.json``: provenance for people (command, data, metrics, times).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from exoctl import __version__
from exoctl.estimation.input_kinds import Window
from exoctl.estimation.torque_model import MODEL_FORMAT, calibration_fingerprint, sidecar
from exoctl.offline.features import TickSet
from exoctl.offline.tick_sets import TickData, dataset_tick_sets, emg_signal_of, trial_tick_sets
from exoctl.signal.calibration import Calibration

__all__ = [
    "DEFAULT_WINDOWS_MS",
    "DataSource",
    "TickData",
    "dataset_tick_sets",
    "trial_tick_sets",
    "emg_signal_of",
    "model_metadata",
    "sidecar",
    "split_tail",
    "write_provenance",
]

DEFAULT_WINDOWS_MS = (50.0, 100.0, 200.0, 400.0)


def scales_in_ticks(windows_ms: Sequence[float], tick_rate_hz: float) -> list[int]:
    out = []
    for ms in windows_ms:
        n = ms * tick_rate_hz / 1000.0
        if abs(n - round(n)) > 1e-6 or round(n) < 5:
            raise ValueError(
                f"window {ms:g} ms is not a whole number (>= 5) of ticks at {tick_rate_hz:g} Hz"
            )
        out.append(int(round(n)))
    return out


@dataclass(frozen=True)
class DataSource:
    """Where a tick set came from, for the metadata (a dataset's trial or a simulator session)."""

    kind: str  # dataset | simulator
    path: str | None
    trials: tuple[str, ...]
    fingerprints: tuple[str, ...]


def split_tail(ts: TickSet, frac: float) -> tuple[TickSet, TickSet]:
    """(head, tail): the last ``frac`` of a tick set held out; the tail keeps its past as warm-up."""
    cut = ts.warm + int((ts.n - ts.warm) * (1.0 - frac))
    head = TickSet(ts.name, ts.X[:cut], None if ts.y is None else ts.y[:cut], ts.tick_rate_hz,
                   ts.warm, ts.names, ts.body_mass_kg, ts.fingerprint)  # fmt: skip
    # the tail is scored from `cut` on, with the rows before it as its (unscored) past
    tail = TickSet(ts.name, ts.X, ts.y, ts.tick_rate_hz, cut, ts.names, ts.body_mass_kg,
                   ts.fingerprint)  # fmt: skip
    return head, tail


def model_metadata(
    *,
    model_type: str,
    features: Sequence[str],
    muscles: Sequence[str],
    joints: Sequence[str],
    cal: Calibration,
    window_ticks: int,
    tick_rate_hz: float,
    emg_rate_hz: float | list[float],
    windows_ms: Sequence[float] | None,
    sources: Sequence[DataSource],
    metrics: dict,
    normalisation: dict | None = None,
    extra: dict | None = None,
    emg_signal: dict | None = None,
) -> dict:
    """The exoctl metadata of a trained model; ``emg_signal`` says what the training EMG was
    (``ChainSettings.describe``; the estimator refuses a model its chain cannot match)."""
    doc = {
        "format": MODEL_FORMAT,
        "model_type": model_type,
        "features": list(features),
        "joints": list(joints),
        "muscles": list(muscles),
        "n_synergies": cal.k,
        "input": Window(int(window_ticks), float(tick_rate_hz)).entry(),
        "window_ms": window_ticks * 1000.0 / tick_rate_hz,
        "scales_ms": list(windows_ms) if windows_ms else None,
        "emg_rate_hz": emg_rate_hz,
        "calibration_fingerprint": calibration_fingerprint(muscles, cal.mvc, cal.W),
        "training_data": [
            {
                "kind": s.kind,
                "path": s.path,
                "trials": list(s.trials),
                "fingerprints": list(s.fingerprints),
            }
            for s in sources
        ],
        "metrics": metrics,
        "exoctl_version": __version__,
    }
    if emg_signal is not None:
        doc["emg_signal"] = emg_signal
    if normalisation is not None:
        doc["normalisation"] = normalisation
    if extra:
        doc.update(extra)
    return doc


def write_provenance(model_path: Path, doc: dict) -> Path:
    p = sidecar(model_path, "json")
    out = {
        "model": Path(model_path).name,
        "sha256": hashlib.sha256(Path(model_path).read_bytes()).hexdigest(),
        "made_at": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        **doc,
    }
    p.write_text(json.dumps(out, indent=2, default=_plain) + "\n")
    return p


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(type(o))
