"""Dataset descriptions: which lab files make up which trials, and how to read them.

A description is a YAML file; paths in it are relative to the file itself. Example::

    format: exoctl-dataset/1
    name: lab-A subject 03
    body_mass_kg: 71.5                 # optional; needed for moments given in N m/kg
    muscles: [rectus_femoris_r, vastus_lateralis_r, biceps_femoris_r]  # optional: the order
    joints: [hip_r, knee_r]            # optional: the order (our names)
    trials:
      - name: mvc_quadriceps
        role: mvc                      # mvc trials only set the normalisation
        emg: {file: s03_mvc_quad.csv, kind: raw, units: mV,
              channels: {rectus_femoris_r: RF, vastus_lateralis_r: VL, biceps_femoris_r: BF}}
      - name: walk_1
        emg:
          file: s03_walk1.xdf          # .sto, .mot, .csv or .xdf (or set format:)
          stream: Delsys               # XDF: stream name or type
          kind: raw                    # raw (microvolts after `units`) or enveloped
                                       # (with `normalised: true` when already divided by MVC)
          units: uV                    # uV, mV or V (raw EMG is converted to microvolts)
          channels: {rectus_femoris_r: 0, vastus_lateralis_r: 1, biceps_femoris_r: 2}
        moment:                        # optional: e.g. OpenSim inverse dynamics
          file: s03_walk1_id.sto
          columns: {hip_r: hip_flexion_r_moment, knee_r: knee_angle_r_moment}
          units: Nm                    # Nm or Nm/kg
          sign: {knee_r: -1}           # multiply to get our convention: flexion positive
        angle:                         # optional: e.g. OpenSim inverse kinematics
          file: s03_walk1_ik.mot
          columns: {hip_r: hip_flexion_r, knee_r: knee_angle_r}
          units: deg                   # rad or deg; default: the .sto/.mot inDegrees header, else rad
          sign: {knee_r: -1}
      - name: lab_envelopes
        emg:
          file: emgFilt.sto            # envelopes made elsewhere (e.g. CEINMS, 100 Hz)
          kind: enveloped
          normalised: true
          envelope: {lowpass_hz: 6, normalisation: peak}   # as the source states it (or null /
                                                           # unknown): goes into model metadata
          channels: {rectus_femoris_r: rect_fem_r, ...}
      - name: cycle01                  # a gait-cycle-normalised .mat (no time axis): one cycle
        emg:
          file: ExperimentalData.mat
          variable: ExperimentalData.EMG.subject1   # struct with all (points, columns, cycles)
          cycle: 0                                  # and colheaders
          stride_s: 1.1                             # the stated stride time: t = i * stride / P
          kind: enveloped
          channels: {soleus_r: Soleus, ...}

The shipped descriptions of the shared real data are in ``datasets/`` at the repository's root.

Columns are given by label (exact, then case-insensitive) or by 0-based index. CSV files name
their time column with ``time_column`` (default ``time``). ``time_offset_s`` shifts one file's
clock onto the others'. Only the muscles and joints a description names are used downstream:
every trial must map the same muscles (and, where present, the same joints).

Loading a trial puts every signal on one time base: a uniform grid at the EMG's rate over the
span that all of the trial's files cover (files may start and end at different times and run
at different rates). EMG already on such a grid is taken as is; otherwise (jittered or gapped
time stamps) it is linearly interpolated, and the gaps are reported. Moments and angles are
linearly interpolated onto the grid. Units end as: EMG microvolts (raw) or as given
(enveloped), moments N m, angles rad, flexion positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from exoctl.config.schema import problem_text
from exoctl.config.yamlfile import read_yaml_mapping

from .importers import ImportErrorWithPath, Table, Timing, read_table, timing_summary
from .spec import (
    EMG_SCALE_TO_UV,
    FORMAT,
    DatasetError,
    DatasetSpec,
    EnvelopeSpec,
    FileSpec,
    TrialSpec,
)

__all__ = [
    "FORMAT",
    "Dataset",
    "DatasetError",
    "FileReport",
    "Trial",
    "load_dataset",
]


@dataclass(frozen=True)
class FileReport:
    """What one file of a trial holds (for ``exoctl data check``)."""

    part: str  # emg, moment, angle
    path: Path
    fmt: str
    columns_used: dict[str, str]  # our name -> column label
    n_columns: int
    timing: Timing
    nans: dict[str, int]  # our name -> NaN count (only non-zero)
    clipped: dict[str, int] = field(default_factory=dict)  # our name -> samples at the rail
    units: str = ""
    warnings: tuple[str, ...] = ()  # what the reader noticed (e.g. header vs rows)


@dataclass(frozen=True)
class Trial:
    """One trial on one uniform time base (see the module docstring for units)."""

    name: str
    role: str
    fs_hz: float
    t: np.ndarray  # (n,) s, uniform
    emg: np.ndarray  # (n, m) in muscles order
    emg_kind: str  # raw | enveloped
    emg_normalised: bool  # enveloped and already divided by MVC
    envelope: EnvelopeSpec | None  # enveloped: how it was made, as stated (None: not stated)
    muscles: tuple[str, ...]
    joints: tuple[str, ...]
    torque: np.ndarray | None  # (n, j) N m, flexion positive
    angles: np.ndarray | None  # (n, j) rad, flexion positive
    body_mass_kg: float | None
    files: tuple[FileReport, ...]
    interpolated_emg: bool  # EMG had to be interpolated (jitter or gaps)

    @property
    def duration_s(self) -> float:
        return float(self.t[-1] - self.t[0]) if self.t.size else 0.0


def _format_validation(path: Path, err: ValidationError) -> str:
    lines = [f"{path}: invalid dataset description ({err.error_count()} problem(s))"]
    for item in err.errors():
        loc = ""
        for part in item["loc"]:
            loc += f"[{part}]" if isinstance(part, int) else ("." if loc else "") + str(part)
        loc = loc or "(top level)"
        if item["type"] == "missing":
            lines.append(f"  {path}: {loc}: required key is missing")
        elif item["type"] == "extra_forbidden":
            lines.append(f"  {path}: {loc}: unknown key")
        else:
            shown = repr(item.get("input"))
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            lines.append(f"  {path}: {loc} = {shown}: {problem_text(item)}")
    return "\n".join(lines)


class Dataset:
    """A parsed description; trials are read from disk on demand by ``load_trial``."""

    def __init__(self, path: Path, spec: DatasetSpec) -> None:
        self.path = path
        self.base = path.resolve().parent
        self.spec = spec
        self.muscles: tuple[str, ...] = tuple(spec.muscles or spec.trials[0].emg.channels)
        joints = spec.joints
        if joints is None:
            for t in spec.trials:
                for part in (t.moment, t.angle):
                    if part is not None and joints is None:
                        joints = list(part.columns)
        self.joints: tuple[str, ...] = tuple(joints or ())

    @property
    def trial_names(self) -> list[str]:
        return [t.name for t in self.spec.trials]

    def trial_spec(self, name: str) -> tuple[int, TrialSpec]:
        for i, t in enumerate(self.spec.trials):
            if t.name == name:
                return i, t
        raise DatasetError(f"{self.path}: no trial named {name!r}; trials: {self.trial_names}")

    def load_trial(self, name: str) -> Trial:
        """Read a trial's files and put them on one time base; errors name file and key."""
        i, spec = self.trial_spec(name)
        where = f"trials[{i}] ({spec.name})"
        cache: dict[Path, Any] = {}
        reports: list[FileReport] = []

        def read(part: str, fs: FileSpec) -> Table:
            p = self.base / fs.file
            if not p.is_file():
                raise DatasetError(
                    f"{self.path}: {where}.{part}.file: {fs.file}: file not found ({p})"
                )
            try:
                tab = read_table(
                    p,
                    fs.format,
                    time_column=fs.time_column,
                    skip_rows=fs.skip_rows,
                    stream=fs.stream,
                    xdf_cache=cache,
                    variable=fs.variable,
                    cycle=fs.cycle,
                    stride_s=fs.stride_s,
                )
            except ImportErrorWithPath as e:
                raise DatasetError(f"{self.path}: {where}.{part}: {e}") from None
            bad_t = int(np.count_nonzero(~np.isfinite(tab.t)))
            if bad_t:
                raise DatasetError(
                    f"{self.path}: {where}.{part}: {tab.path}: {bad_t} time stamp(s) are NaN or "
                    "infinite"
                )
            return tab

        def pick(part: str, tab: Table, mapping: dict[str, Any], key: str) -> list[int]:
            idx = []
            for ours, col in mapping.items():
                try:
                    idx.append(tab.index(col))
                except ImportErrorWithPath as e:
                    raise DatasetError(f"{self.path}: {where}.{part}.{key}.{ours}: {e}") from None
            return idx

        # --- EMG
        emg_tab = read("emg", spec.emg)
        order = list(self.muscles)
        emg_idx = pick("emg", emg_tab, {m: spec.emg.channels[m] for m in order}, "channels")
        t_emg = emg_tab.t + spec.emg.time_offset_s
        emg_raw = emg_tab.data[:, emg_idx]
        scale = EMG_SCALE_TO_UV[spec.emg.units] if spec.emg.kind == "raw" else 1.0
        if emg_tab.t.size < 2:
            raise DatasetError(f"{self.path}: {where}.emg: {emg_tab.path}: fewer than 2 samples")
        timing = timing_summary(t_emg)
        if not math.isfinite(timing.rate_hz):
            raise DatasetError(f"{self.path}: {where}.emg: {emg_tab.path}: time does not advance")
        fs = float(emg_tab.nominal_rate_hz or timing.rate_hz)
        if emg_tab.nominal_rate_hz is None:
            fs = _round_rate(fs)
        reports.append(
            FileReport(
                "emg",
                emg_tab.path,
                spec.emg.format if spec.emg.format != "auto" else emg_tab.path.suffix.lstrip("."),
                {m: emg_tab.columns[j] for m, j in zip(order, emg_idx, strict=True)},
                len(emg_tab.columns),
                timing,
                _nan_counts(order, emg_raw),
                _clipped(order, emg_raw) if spec.emg.kind == "raw" else {},
                ("microvolts x " + f"{scale:g}")
                if spec.emg.kind == "raw"
                else ("enveloped, normalised" if spec.emg.normalised else "enveloped"),
                emg_tab.warnings,
            )
        )
        spans = [(float(t_emg[0]), float(t_emg[-1]), "emg")]

        joints = list(self.joints)
        side: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        for part in ("moment", "angle"):
            fspec = getattr(spec, part)
            if fspec is None:
                continue
            tab = read(part, fspec)
            idx = pick(part, tab, {j: fspec.columns[j] for j in joints}, "columns")
            vals = tab.data[:, idx].copy()
            sign = np.array([float(fspec.sign.get(j, 1)) for j in joints])
            vals *= sign
            if part == "moment":
                units = fspec.units
                if units == "Nm/kg":
                    mass = spec.body_mass_kg or self.spec.body_mass_kg
                    if mass is None:
                        raise DatasetError(
                            f"{self.path}: {where}.moment.units is Nm/kg but no body_mass_kg is "
                            "given (set it on the trial or at the top level)"
                        )
                    vals *= mass
            else:
                units = fspec.units
                if units is None:
                    units = "deg" if tab.meta.get("inDegrees") is True else "rad"
                if units == "deg":
                    vals = np.radians(vals)
            tt = tab.t + fspec.time_offset_s
            if tt.size < 2:
                raise DatasetError(f"{self.path}: {where}.{part}: {tab.path}: fewer than 2 samples")
            reports.append(
                FileReport(
                    part,
                    tab.path,
                    fspec.format if fspec.format != "auto" else tab.path.suffix.lstrip("."),
                    {j: tab.columns[k] for j, k in zip(joints, idx, strict=True)},
                    len(tab.columns),
                    timing_summary(tt),
                    _nan_counts(joints, vals),
                    {},
                    units + (" (sign " + str(dict(fspec.sign)) + ")" if fspec.sign else ""),
                    tab.warnings,
                )
            )
            side[part] = (tt, vals)
            spans.append((float(tt[0]), float(tt[-1]), part))

        start = max(s[0] for s in spans)
        end = min(s[1] for s in spans)
        if end - start < 2.0 / fs:
            listing = ", ".join(f"{p} {a:.3f}..{b:.3f} s" for a, b, p in spans)
            raise DatasetError(
                f"{self.path}: {where}: the files do not overlap in time ({listing}); "
                "check the time columns or set time_offset_s"
            )
        # grid on the EMG's own samples where possible (no interpolation of raw EMG)
        regular = (
            timing.gaps == 0
            and timing.non_increasing == 0
            and abs(timing.rate_hz - fs) < 1e-6 * fs
            and np.abs(np.diff(t_emg) - 1.0 / fs).max() < 0.01 / fs
        )
        if regular:
            k0 = int(np.searchsorted(t_emg, start - 1e-9 / fs))
            k1 = int(np.searchsorted(t_emg, end + 1e-9 / fs, side="right"))
            grid = t_emg[k0:k1].copy()
            emg = emg_raw[k0:k1] * scale
        else:
            n = int(math.floor((end - start) * fs + 1e-9)) + 1
            grid = start + np.arange(n) / fs
            order_t = np.argsort(t_emg, kind="stable")
            emg = (
                np.column_stack(
                    [
                        np.interp(grid, t_emg[order_t], emg_raw[order_t, c])
                        for c in range(len(order))
                    ]
                )
                * scale
            )
        out: dict[str, np.ndarray | None] = {"moment": None, "angle": None}
        for part, (tt, vals) in side.items():
            o = np.argsort(tt, kind="stable")
            out[part] = np.column_stack(
                [np.interp(grid, tt[o], vals[o, c]) for c in range(vals.shape[1])]
            )
        return Trial(
            name=spec.name,
            role=spec.role,
            fs_hz=fs,
            t=grid,
            emg=np.ascontiguousarray(emg),
            emg_kind=spec.emg.kind,
            emg_normalised=spec.emg.normalised,
            envelope=spec.emg.envelope,
            muscles=self.muscles,
            joints=tuple(joints),
            torque=out["moment"],
            angles=out["angle"],
            body_mass_kg=spec.body_mass_kg or self.spec.body_mass_kg,
            files=tuple(reports),
            interpolated_emg=not regular,
        )


def _round_rate(fs: float) -> float:
    """A rate estimated from time stamps, snapped to a whole number of Hz when that close."""
    r = round(fs)
    return float(r) if r > 0 and abs(fs - r) < 1e-3 * fs else fs


def _nan_counts(names: list[str], data: np.ndarray) -> dict[str, int]:
    counts = np.count_nonzero(np.isnan(data), axis=0)
    return {n: int(c) for n, c in zip(names, counts, strict=True) if c}


def _clipped(names: list[str], data: np.ndarray) -> dict[str, int]:
    """Samples sitting at a channel's extreme value: an amplifier or ADC at its rail.

    Continuous signals reach their maximum once; five or more samples exactly at it is clipping.
    """
    out = {}
    for c, name in enumerate(names):
        x = data[:, c]
        x = x[np.isfinite(x)]
        if x.size == 0:
            continue
        hi, lo = x.max(), x.min()
        n = int(np.count_nonzero(x == hi)) if hi > 0 else 0
        n += int(np.count_nonzero(x == lo)) if lo < 0 else 0
        if n >= 5:
            out[name] = n
    return out


def load_dataset(path: str | Path) -> Dataset:
    """Parse and validate a dataset description (files are read later, per trial)."""
    path = Path(path)
    raw = read_yaml_mapping(path, "dataset description", DatasetError)
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as e:
        raise DatasetError(_format_validation(path, e)) from None
    return Dataset(path, spec)
