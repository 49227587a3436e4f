"""Calibration file: per-muscle MVC normalisation and the synergy matrix W, in YAML.

```yaml
format: exoctl-calibration/1
muscles: [rectus_femoris_l, ...]
mvc: [..]            # per muscle, in the units of the conditioned EMG (band-passed, rectified,
                     # enveloped by exoctl.signal.dsp with the estimator's filter settings)
synergies: {k: 4, vaf: 0.95, W: [[..k values..], ...]}   # one row per muscle, in muscles order
source: {...}        # free-form provenance (dataset, trials, filters, VAF per K, date)
gain: {soleus_r: 1.2, ...}   # optional: a later session's per-channel electrode gain
```

``gain`` is what ``exoctl adapt --session`` finds (exoctl/training/matched_gain.py): the
chain divides each channel by ``mvc x gain``, so the model sees the envelope the calibration
session would have given. A model stays tied to the calibration's fingerprint (muscles, MVC,
W), which the gain leaves alone: a gain is a per-session correction, not a new calibration.

Written by ``exoctl calibrate``, read by the estimator and the daemon. A calibration only makes
sense for the muscles it was computed on, in that order, so ``check_muscles`` refuses a
mismatch with both lists in the message. Every load error names the file and the key.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.config.yamlfile import dump_yaml, read_yaml_mapping
from exoctl.errors import DataError

__all__ = ["FORMAT", "Calibration", "CalibrationError", "load_calibration"]

FORMAT = "exoctl-calibration/1"
GAIN_MIN, GAIN_MAX = 0.1, 10.0  # a session gain outside this is a broken electrode


class CalibrationError(DataError):
    """A calibration file that must not be used; the message is meant for a person."""


@dataclass(frozen=True)
class Calibration:
    muscles: tuple[str, ...]
    mvc: np.ndarray
    W: np.ndarray
    vaf: float
    source: dict[str, Any] = field(default_factory=dict)
    gain: np.ndarray | None = None  # per muscle; None: 1 (see the module docstring)

    def __post_init__(self) -> None:
        muscles = tuple(str(m) for m in self.muscles)
        object.__setattr__(self, "muscles", muscles)
        m = len(muscles)
        if m == 0:
            raise CalibrationError("calibration names no muscles")
        dup = sorted({x for x in muscles if muscles.count(x) > 1})
        if dup:
            raise CalibrationError(f"calibration muscles repeated: {dup}")
        mvc = np.array(self.mvc, dtype=np.float64).reshape(-1)
        if mvc.shape != (m,):
            raise CalibrationError(f"mvc has {mvc.size} values for {m} muscles")
        bad = [muscles[i] for i in range(m) if not (math.isfinite(mvc[i]) and mvc[i] > 0)]
        if bad:
            raise CalibrationError(f"mvc must be positive and finite; bad for {bad}")
        W = np.array(self.W, dtype=np.float64)
        if W.ndim != 2 or W.shape[0] != m or W.shape[1] < 1:
            raise CalibrationError(
                f"synergy matrix W must have one row per muscle ({m}) and k >= 1 columns, "
                f"got shape {W.shape}"
            )
        if not np.all(np.isfinite(W)) or W.min() < 0:
            raise CalibrationError("synergy matrix W must be finite and non-negative")
        if self.gain is not None:
            gain = np.array(self.gain, dtype=np.float64).reshape(-1)
            if gain.shape != (m,):
                raise CalibrationError(f"gain has {gain.size} values for {m} muscles")
            bad = [muscles[i] for i in range(m) if not (GAIN_MIN <= gain[i] <= GAIN_MAX)]
            if bad:
                raise CalibrationError(
                    f"gain must be within {GAIN_MIN:g}-{GAIN_MAX:g}; bad for {bad}"
                )
            gain.setflags(write=False)
            object.__setattr__(self, "gain", gain)
        mvc.setflags(write=False)
        W.setflags(write=False)
        object.__setattr__(self, "mvc", mvc)
        object.__setattr__(self, "W", W)
        object.__setattr__(self, "vaf", float(self.vaf))
        object.__setattr__(self, "source", dict(self.source))

    @property
    def k(self) -> int:
        return int(self.W.shape[1])

    @property
    def mvc_in_use(self) -> np.ndarray:
        """What the chain divides by: the MVC times the session gain, when there is one."""
        return self.mvc if self.gain is None else self.mvc * self.gain

    def with_gain(self, gain: np.ndarray | None, note: dict[str, Any] | None = None) -> Calibration:
        """The same calibration with a session gain (``note``: where the gain came from)."""
        src = dict(self.source)
        src.pop("path", None)
        if note is not None:
            src["gain_from"] = note
        return Calibration(self.muscles, self.mvc, self.W, self.vaf, src, gain)

    def check_muscles(self, expected: Sequence[str]) -> None:
        """Refuse to be used with a configuration whose channel-to-muscle map differs."""
        exp = tuple(expected)
        if exp != self.muscles:
            missing = [m for m in exp if m not in self.muscles]
            extra = [m for m in self.muscles if m not in exp]
            detail = []
            if missing:
                detail.append(f"not in the calibration: {missing}")
            if extra:
                detail.append(f"not in the configuration: {extra}")
            if not detail:
                detail.append("same muscles, different order")
            where = self.source.get("path")
            raise CalibrationError(
                f"calibration{f' {where}' if where else ''} does not match the configured "
                f"muscles ({'; '.join(detail)}).\n  configured:  {list(exp)}\n"
                f"  calibration: {list(self.muscles)}\nRecalibrate with `exoctl calibrate` for "
                "this muscle map."
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "muscles": list(self.muscles),
            "mvc": [float(v) for v in self.mvc],
            "synergies": {
                "k": self.k,
                "vaf": float(self.vaf),
                "W": [[float(v) for v in row] for row in self.W],
            },
            "source": _plain(self.source),
            **(
                {}
                if self.gain is None
                else {"gain": {m: float(g) for m, g in zip(self.muscles, self.gain, strict=True)}}
            ),
        }

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        text = dump_yaml(self.to_dict(), sort_keys=False, default_flow_style=None, width=120)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("# exoctl calibration (see exoctl/signal/calibration.py)\n" + text)
        tmp.replace(path)
        return path


def _plain(obj: Any) -> Any:
    """Provenance as plain YAML types (numpy scalars/arrays, paths, tuples converted)."""
    if isinstance(obj, dict):
        return {(k if isinstance(k, int | str) else str(k)): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj


def _numbers_only(path: Path, key: str, values: list[Any]) -> None:
    """Refuse text or booleans among numbers (numpy reads "40" as 40.0 and true as 1.0)."""
    for j, x in enumerate(values):
        if isinstance(x, bool) or not isinstance(x, int | float):
            raise CalibrationError(
                f"{path}: {key}[{j}] = {str(x)[:40]!r}: must be a number, written without "
                "quotes (e.g. 0.5)"
            )


def load_calibration(path: str | Path) -> Calibration:
    """Read and validate a calibration file; errors name the file and the key."""
    path = Path(path)
    raw = read_yaml_mapping(path, "calibration", CalibrationError)

    def need(d: dict[str, Any], key: str, where: str) -> Any:
        if key not in d:
            raise CalibrationError(f"{path}: {where}{key}: required key is missing")
        return d[key]

    fmt = need(raw, "format", "")
    if fmt != FORMAT:
        raise CalibrationError(f"{path}: format = {fmt!r}: expected {FORMAT!r}")
    muscles = need(raw, "muscles", "")
    if not isinstance(muscles, list) or not muscles or not all(isinstance(m, str) for m in muscles):
        raise CalibrationError(f"{path}: muscles: must be a non-empty list of names")
    mvc = need(raw, "mvc", "")
    if not isinstance(mvc, list) or len(mvc) != len(muscles):
        raise CalibrationError(
            f"{path}: mvc: must be a list of {len(muscles)} numbers (one per muscle)"
        )
    _numbers_only(path, "mvc", mvc)
    mvc_arr = np.array(mvc, dtype=np.float64)
    syn = need(raw, "synergies", "")
    if not isinstance(syn, dict):
        raise CalibrationError(f"{path}: synergies: must be a mapping with k, vaf and W")
    k = need(syn, "k", "synergies.")
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise CalibrationError(f"{path}: synergies.k = {k!r}: must be a positive integer")
    v = need(syn, "vaf", "synergies.")
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= float(v) <= 1:
        raise CalibrationError(f"{path}: synergies.vaf = {v!r}: must be a number in [0, 1]")
    W = need(syn, "W", "synergies.")
    if not isinstance(W, list) or len(W) != len(muscles):
        raise CalibrationError(
            f"{path}: synergies.W: must have one row per muscle ({len(muscles)})"
        )
    for i, row in enumerate(W):
        if not isinstance(row, list) or len(row) != k:
            raise CalibrationError(
                f"{path}: synergies.W[{i}] ({muscles[i]}): must be a list of k={k} numbers"
            )
    for i, row in enumerate(W):
        _numbers_only(path, f"synergies.W[{i}]", row)
    W_arr = np.array(W, dtype=np.float64)
    source = raw.get("source") or {}
    if not isinstance(source, dict):
        raise CalibrationError(f"{path}: source: must be a mapping")
    source = {**source, "path": str(path)}
    unknown = sorted(set(raw) - {"format", "muscles", "mvc", "synergies", "source", "gain"})
    if unknown:
        raise CalibrationError(
            f"{path}: unknown key(s) {unknown}; allowed: format, muscles, mvc, synergies, "
            "source, gain"
        )
    gain_arr = None
    if raw.get("gain") is not None:
        g = raw["gain"]
        if not isinstance(g, dict) or sorted(g) != sorted(muscles):
            raise CalibrationError(
                f"{path}: gain: must map every muscle ({', '.join(muscles)}) to a factor"
            )
        if not all(isinstance(x, int | float) and not isinstance(x, bool) for x in g.values()):
            raise CalibrationError(f"{path}: gain: factors must be numbers")
        gain_arr = np.array([float(g[m]) for m in muscles])
    try:
        return Calibration(tuple(muscles), mvc_arr, W_arr, float(v), source, gain_arr)
    except CalibrationError as e:
        raise CalibrationError(f"{path}: {e}") from None
