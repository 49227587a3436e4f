"""The evaluation protocol on real recorded data: one command, one table.

    exoctl evaluate --protocol real [--out DIR]
    .venv/bin/python -m exoctl.training.real_protocol [--out DIR] [--rows within,cross,...]

Data: the shared data sets (``../shared/data`` beside the repository) through the dataset
descriptions in ``datasets/``, read exactly as published. Every model is exported to ONNX and
scored through onnxruntime at the configuration's control rate (500 Hz by default), against the
measured joint moments as they are (inverse-dynamics spikes included). Rows:

- ``within``: walk36 and run81, each trained on its first 80 % and scored on its last 20 %
  (the tail is streamed on from the head: no new warm-up, nothing of it seen in training);
  the calibration (synergies W by NMF, MVC) is made on the first 80 % too.
- ``cross``: walk36 -> run81 and run81 -> walk36: trained (and calibrated) on all of one
  trial, scored on all of the other after its 0.5 s warm-up; unadapted, and after ``exoctl
  adapt`` (the same ``adapt_network``) on the target trial's EMG and angles only, never its
  moments.
- ``falisse``: leave one gait cycle out over the 6 cycles with all 14 muscles. The other five,
  joined end to end, are the training stream (calibrated on them); the held-out cycle is
  streamed three times in a row (a cycle-normalised file has no before and after: its own
  inputs stand in for the strides before it) and only its third pass is scored. R^2 over the
  six held-out cycles pooled.
- ``moco``: calibration (K by VAF 90 %) and the chain on a second lab's 2 kHz envelopes with
  1 kHz moments, at 500 Hz and 1 kHz ticks: what comes out, no accuracy claim (one cycle).

``live`` (within rows): the first seed's network run by the controller itself on the HIL bench, the
trial replayed from the start of its scored tail (``exoctl hil --replay``: the EMG over LSL at
its own rate, the angles as the emulated firmware's telemetry, 10 s of the head streamed first
while the controller starts), scored on its ticks against the measured moments with no delay
compensation. It runs with the real-time set-up of the exoskeleton PC (SCHED_FIFO, as the HIL
tests ask for it): on a loaded machine without it, late ticks and stale telemetry lower it.

Beside every row: the lagged-ridge baseline (every per-tick feature: synergy and muscle
activations, joint angles and velocities, at lags 0-200 ms; penalty chosen on the training
part's last 20 %) fitted on the same training ticks, and, for context only, the R^2 that the
measured moment's own zero-phase 10 Hz low-pass scores against it (``ceiling``): what a smooth
estimate that is right in every other respect would get on those spiky moments. Targets and
method choices never look at the scored part.

Where: this module runs the rows (``run``) and is the command line; the later-session cases
and the guard's rates are in :mod:`~exoctl.training.later_session`, the table's text in
:mod:`~exoctl.training.protocol_table`, trial parts in :mod:`~exoctl.training.trial_slices`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.cli_policy import EXIT_ERROR, EXIT_USAGE, fail
from exoctl.config.schema import load_config
from exoctl.data.calibrate import calibrate_trials
from exoctl.data.dataset import Trial, load_dataset
from exoctl.estimation.metrics import joint_metrics, summarise
from exoctl.signal.chain import ChainSettings

from .features import TickSet
from .later_session import LaterCase, drift_factors, guard_rates
from .pipeline import DataSource, TickData, sidecar, split_tail, trial_tick_sets
from .protocol_table import format_table, row_line
from .trial_slices import cut_trial, join_trials
from .workflow import (
    NetworkRecipe,
    fit_network_model,
    fit_ridge_model,
    score_sets,
)

__all__ = [
    "ROW_GROUPS",
    "drift_factors",
    "format_table",
    "guard_rates",
    "kinematic_sets",
    "run",
]

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "datasets"
ROW_GROUPS = ("within", "later", "guard", "falisse", "moco")
TRAIN_FRACTION = 0.8
CEILING_LOWPASS_HZ = 10.0
FALISSE_REPEATS = 3

# The network recipe the protocol trains with (chosen on training data: see docs/adaptation.md)
RECIPE = NetworkRecipe(epochs=12, samples_per_epoch=20000)
SEEDS = (0, 1, 2)  # training seeds: every network row is trained once per seed
GUARD_DRIFTS = 10  # drift draws per seed and target in the guard's cases

Say = Callable[[str], None]


def _ceiling(y: np.ndarray, rate: float, joints: Sequence[str]) -> dict:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, CEILING_LOWPASS_HZ, fs=rate, output="sos")
    return summarise(joint_metrics(y, sosfiltfilt(sos, y, axis=0), joints))


def kinematic_sets(sets: Sequence[TickSet]) -> list[TickSet]:
    """The tick sets' joint angle and velocity columns only (the kinematics-only baseline)."""
    out = []
    for ts in sets:
        cols = [i for i, n in enumerate(ts.names) if n.startswith(("angle:", "velocity:"))]
        out.append(dataclasses.replace(ts, X=ts.X[:, cols], names=tuple(ts.names[i] for i in cols)))
    return out


def over_seeds(scores: Sequence[dict], seeds: Sequence[int]) -> dict:
    """Per-seed R^2 and their mean and spread (sd over seeds)."""
    out: dict[str, Any] = {"seeds": []}
    for s, seed in zip(scores, seeds, strict=True):
        out["seeds"].append({"seed": seed, **{k: s[k] for k in ("r2_hip", "r2_knee") if k in s}})
    for kind in ("hip", "knee"):
        v = [s[f"r2_{kind}"] for s in scores if f"r2_{kind}" in s]
        if v:
            out[f"r2_{kind}"] = round(float(np.mean(v)), 5)
            out[f"sd_{kind}"] = round(float(np.std(v)), 5)
    return out


def _kind_means(per: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """``summarise`` for figures that may be missing (None)."""
    out: dict[str, float | None] = {}
    for kind in ("hip", "knee"):
        vals = [m["r2"] for j, m in per.items() if j.startswith(kind)]
        if vals:
            out[f"r2_{kind}"] = None if None in vals else round(float(np.mean(vals)), 5)
    return out


LIVE_PREROLL_S = 10.0
LIVE_REALTIME = {"service": {"realtime_priority": 50}, "simulator": {"realtime_priority": 60}}


class _Protocol:
    def __init__(
        self,
        cfg,
        workdir: Path,
        recipe: NetworkRecipe,
        seeds: Sequence[int],
        say: Say,
        live: bool = True,
        config: Path | None = None,
    ) -> None:
        self.cfg = cfg
        self.live = live
        self.config = config
        self.chain = ChainSettings.from_config(cfg)
        self.workdir = workdir
        self.recipe = recipe
        self.seeds = tuple(seeds)
        self.say = say
        self.rows: list[dict[str, Any]] = []
        self._halves: dict[str, LaterCase] = {}

    def _calibrate(self, trials: Sequence[Trial], where: Path):
        return calibrate_trials(trials, where=where, chain=self.chain).calibration

    def _ticks(self, trials, cal, joints, where) -> TickData:
        return trial_tick_sets(
            self.cfg, trials, cal, joints, where=where, kinematics=True, need_torque=True
        )

    def _models(self, tag: str, heads, data: TickData, cal) -> dict[str, Any]:
        """The lagged ridge, the kinematics-only ridge and one network per seed."""
        src = [DataSource("dataset", None, tuple(h.name for h in heads), ())]
        ridge = self.workdir / f"{tag}_ridge.onnx"
        fit_ridge_model(ridge, heads, data, cal, src)
        kin = self.workdir / f"{tag}_kinematics.onnx"
        fit_ridge_model(kin, kinematic_sets(heads), data, cal, src)
        nets = []
        for seed in self.seeds:
            net_path = self.workdir / f"{tag}_net{seed}.onnx"
            t0 = time.monotonic()
            fit_network_model(
                net_path, heads, data, cal, src, dataclasses.replace(self.recipe, seed=seed)
            )
            self.say(f"  {tag}: network seed {seed} trained in {time.monotonic() - t0:.0f} s")
            nets.append(net_path)
        return {"ridge": ridge, "kinematics": kin, "networks": nets}

    def _row(self, name, train, test, joints, scored: dict, y, rate, **extra) -> None:
        row = {
            "row": name,
            "train": train,
            "test": test,
            "scored_ticks": int(len(y)),
            **{k: scored[k] for k in scored},
            "ceiling": _ceiling(y, rate, joints),
            **extra,
        }
        self.rows.append(row)
        self.say("  " + row_line(row))

    def _score_models(self, models: dict, sets, joints, ticks=None) -> tuple[dict, np.ndarray]:
        scored: dict[str, Any] = {}
        for label in ("ridge", "kinematics"):
            s, y, _ = score_sets(models[label], sets, joints, ticks=ticks)
            scored[label] = s
        scored["network"] = over_seeds(
            [score_sets(p, sets, joints, ticks=ticks)[0] for p in models["networks"]], self.seeds
        )
        return scored, y

    def within(self, ds) -> None:
        for name in ds.trial_names:
            trial = ds.load_trial(name)
            n_head = int(TRAIN_FRACTION * trial.t.size)
            cal = self._calibrate([cut_trial(trial, 0, n_head)], ds.path)
            data = self._ticks([trial], cal, ds.joints, ds.path)
            head, tail = split_tail(data.sets[0], 1.0 - TRAIN_FRACTION)
            models = self._models(f"within_{name}", [head], data, cal)
            scored, y = self._score_models(models, [tail], ds.joints)
            extra: dict[str, Any] = {}
            if self.live:  # the first seed's network, run by the controller on the bench
                net_path = models["networks"][0]
                cal.save(sidecar(net_path, "calibration"))
                start = float(trial.t[0]) + tail.warm / tail.tick_rate_hz
                extra["live"] = self._live(ds.path, name, start, net_path)
            self._row(
                f"within {name}", f"{name} first 80 %", f"{name} last 20 %", ds.joints, scored,
                y, data.spec.tick_rate_hz, K=cal.k, **extra,
            )  # fmt: skip

    def _live(self, data: Path, trial: str, start_s: float, model: Path) -> dict[str, Any]:
        """The network on the HIL bench, the trial replayed from ``start_s`` (module doc)."""
        from exoctl.hil.replay import ReplaySpec
        from exoctl.hil.runner import run_hil

        spec = ReplaySpec(data=str(data), trial=trial, start_s=start_s, preroll_s=LIVE_PREROLL_S)
        t0 = time.monotonic()
        out = run_hil(3600.0, self.config, LIVE_REALTIME, replay=spec, model=str(model))
        rp = out["replay"]
        per = {j: m for j, m in rp["live"].items()}
        self.say(f"  live {trial}: replayed in {time.monotonic() - t0:.0f} s")
        return {
            "network": {"joints": per, **_kind_means(per)},
            "offline_same_ticks": {"joints": rp["offline"], **_kind_means(rp["offline"])},
            "scored_from_s": rp["scored_from_s"],
            "scored_ticks": rp["scored_ticks"],
            "delay_ms": rp["delay_ms"],
            "deadline_misses": out["deadline_misses"],
            "faults": out["faults"],
        }

    def _later_setup(self, ds, src_name: str, tgt_name: str | None):
        """A source part, a target part and the models trained on the source (no target
        label is read by anything but the scoring)."""
        if tgt_name is None:  # the first half -> the second half of one trial
            if src_name not in self._halves:  # shared by the later rows and the guard's cases
                trial = ds.load_trial(src_name)
                self._halves[src_name] = LaterCase(self, ds, trial, trial.t.size // 2, None)
            return self._halves[src_name]
        return LaterCase(self, ds, ds.load_trial(src_name), None, ds.load_trial(tgt_name))

    def later(self, ds) -> None:
        a, b = ds.trial_names[0], ds.trial_names[1]
        halves = self._later_setup(ds, a, None)
        for drift in (False, True):
            per_seed = []
            for i, seed in enumerate(self.seeds):
                factors = drift_factors(seed, len(ds.muscles)) if drift else None
                per_seed.append(halves.adapt_and_score(i, factors))
            name = f"{a} first 50 % -> last 50 %" + (", gain drift injected" if drift else "")
            self._later_row(name, f"{a} first 50 %", f"{a} last 50 %", halves, per_seed)
        for src, tgt in ((a, b), (b, a)):
            case = self._later_setup(ds, src, tgt)
            per_seed = [case.adapt_and_score(i, None) for i in range(len(self.seeds))]
            self._later_row(f"{src} -> {tgt}", f"{src} (all)", f"{tgt} (all)", case, per_seed)

    def _later_row(self, name, train, test, case: LaterCase, per_seed: list[dict]) -> None:
        ridge = (
            over_seeds([p["ridge"] for p in per_seed], self.seeds)
            if "ridge" in per_seed[0]
            else case.scored["ridge"]
        )
        scored = {
            "ridge": ridge,
            "kinematics": case.scored["kinematics"],
            "network": over_seeds([p["network"] for p in per_seed], self.seeds),
            "adapted": over_seeds([p["in_use"] for p in per_seed], self.seeds),
        }
        self._row(
            name, train, test, case.ds.joints, scored, case.y, case.rate, K=case.cal.k,
            adaptation=[p["adaptation"] for p in per_seed],
        )  # fmt: skip

    def guard(self, ds) -> None:
        """The guard's false-accept and false-refuse rates over seeded cases: the first half
        of walk36 as the reference, the later half with drawn gain drifts (adapting should
        help or be harmless) and the other trial with the same drifts (another task: adapting
        should be refused or be harmless)."""
        a, b = ds.trial_names[0], ds.trial_names[1]
        halves = self._later_setup(ds, a, None)
        other = LaterCase(self, ds, halves.trial, halves.n_cut, ds.load_trial(b), halves)
        cases = []
        for i, seed in enumerate(self.seeds):
            for d in range(GUARD_DRIFTS):
                factors = drift_factors(1000 * (seed + 1) + d, len(ds.muscles))
                for target, case in ((f"{a} last 50 %", halves), (f"{b} (all)", other)):
                    r = case.adapt_and_score(i, factors)
                    cases.append({"seed": seed, "drift": d, "target": target, **r})
        out = guard_rates(cases)
        self.rows.append({"row": "guard", "cases": cases, **out})
        self.say(
            f"  guard: {out['n']} cases, accepted {out['accepted']}, false accepts "
            f"{out['false_accepts']} ({out['false_accept_rate']:.1%}), false refusals "
            f"{out['false_refusals']} ({out['false_refuse_rate']:.1%})"
        )

    def falisse(self, ds) -> None:
        import scipy.signal  # noqa: F401  (the ceiling's filter; fail early if absent)

        trials = [ds.load_trial(n) for n in ds.trial_names]
        full = [t for t in trials if np.isfinite(t.emg).all()]
        labels = ["ridge", "kinematics"] + [f"net{i}" for i in range(len(self.seeds))]
        ys: dict[str, list[np.ndarray]] = {k: [] for k in labels}
        truth: list[np.ndarray] = []
        ks = []
        rate = self.cfg.tick_rate_hz
        for held in full:
            rest = [t for t in full if t is not held]
            train = join_trials(rest, f"cycles except {held.name}")
            test = join_trials([held] * FALISSE_REPEATS, f"{held.name} x{FALISSE_REPEATS}")
            cal = self._calibrate([train], ds.path)
            ks.append(cal.k)
            data = self._ticks([train, test], cal, ds.joints, ds.path)
            head, test_set = data.sets
            per_pass = test_set.n // FALISSE_REPEATS
            scored_ticks = np.arange((FALISSE_REPEATS - 1) * per_pass, test_set.n)
            models = self._models(f"falisse_{held.name}", [head], data, cal)
            paths = [models["ridge"], models["kinematics"], *models["networks"]]
            for label, path in zip(labels, paths, strict=True):
                _, y, yhat = score_sets(path, [test_set], ds.joints, ticks=[scored_ticks])
                ys[label].append(yhat)
            truth.append(y)
        y = np.vstack(truth)
        pooled = {}
        for label, parts in ys.items():
            per = joint_metrics(y, np.vstack(parts), ds.joints)
            pooled[label] = {"joints": per, **summarise(per)}
        scored = {
            "ridge": pooled["ridge"],
            "kinematics": pooled["kinematics"],
            "network": over_seeds([pooled[f"net{i}"] for i in range(len(self.seeds))], self.seeds),
        }
        self._row(
            "falisse2019 leave one cycle out", "5 of the 6 complete cycles",
            f"the 6th ({len(full)} folds, pooled)", ds.joints, scored, y, rate, K=ks,
            cycles=[t.name for t in full],
        )  # fmt: skip

    def moco(self, ds) -> None:
        trial = ds.load_trial(ds.trial_names[0])
        res = calibrate_trials([trial], where=ds.path, chain=self.chain)
        cal = res.calibration
        out: dict[str, Any] = {
            "row": "moco-3dwalking: calibration and chain only",
            "train": "walk (one cycle)",
            "test": "-",
            "K": cal.k,
            "vaf": round(cal.vaf, 4),
            "emg_rate_hz": trial.fs_hz,
            "moment_rate_hz": trial.files[1].timing.rate_hz,
            "ticks": {},
        }
        for rate in (500.0, 1000.0):
            data = trial_tick_sets(
                self.cfg, [trial], cal, ds.joints, where=ds.path, kinematics=True,
                need_torque=True, tick_rate_hz=rate,
            )  # fmt: skip
            ts = data.sets[0]
            a = ts.X[:, cal.k : cal.k + len(cal.muscles)]
            out["ticks"][f"{rate:g}"] = {
                "n": ts.n,
                "activation_max": round(float(a.max()), 4),
                "finite": bool(np.isfinite(ts.X).all() and np.isfinite(ts.torques).all()),
            }
        self.rows.append(out)
        self.say("  " + row_line(out))


def run(
    *,
    datasets: Path = DATASETS,
    groups: Sequence[str] = ROW_GROUPS,
    config: Path | None = None,
    recipe: NetworkRecipe = RECIPE,
    seeds: Sequence[int] = SEEDS,
    say: Say = print,
    live: bool = True,
) -> dict[str, Any]:
    """Run the protocol's row groups; returns the table as a document (see ``format_table``).
    ``live``: the within rows' live column (the HIL bench; about 25 s per row)."""
    cfg = load_config(config)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        p = _Protocol(cfg, Path(d), recipe, seeds, say, live, config)
        for group in groups:
            if group not in ROW_GROUPS:
                raise ValueError(f"unknown row group {group!r}; groups: {', '.join(ROW_GROUPS)}")
            say(f"{group}:")
            desc = {
                "within": "ceinms-lowerlimb-s06.yaml",
                "later": "ceinms-lowerlimb-s06.yaml",
                "guard": "ceinms-lowerlimb-s06.yaml",
                "falisse": "falisse2019.yaml",
                "moco": "moco-3dwalking.yaml",
            }[group]
            getattr(p, group)(load_dataset(datasets / desc))
    return {
        "protocol": "exoctl.training.real_protocol (docs/adaptation.md, real data)",
        "tick_rate_hz": cfg.tick_rate_hz,
        "recipe": dataclasses.asdict(recipe),
        "seeds": list(p.seeds),
        "rows": p.rows,
        "wall_time_s": round(time.monotonic() - t0, 1),
    }


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--datasets", type=Path, default=DATASETS, help="the dataset descriptions")
    p.add_argument(
        "--rows", default=",".join(ROW_GROUPS), help=f"row groups, from {','.join(ROW_GROUPS)}"
    )
    p.add_argument("--out", type=Path, default=None, help="directory for table.md and .json")
    p.add_argument(
        "--no-live",
        dest="live",
        action="store_false",
        help="leave out the within rows' live column (the HIL bench replay)",
    )


def run_from_args(args: argparse.Namespace, say: Say) -> int:
    groups = [g.strip() for g in args.rows.split(",") if g.strip()]
    unknown = [g for g in groups if g not in ROW_GROUPS]
    if unknown:
        return fail(f"--rows: unknown {unknown}; allowed: {', '.join(ROW_GROUPS)}", EXIT_USAGE)
    missing = [p for p in (REPO.parent / "shared" / "data",) if not p.is_dir()]
    if missing and args.datasets == DATASETS:
        return fail(
            f"the shared real data is not at {missing[0]} (the descriptions in "
            f"{DATASETS} read it from ../shared/data beside the repository)",
            EXIT_ERROR,
        )
    doc = run(datasets=args.datasets, groups=groups, config=getattr(args, "config", None),
              say=say, live=getattr(args, "live", True))  # fmt: skip
    doc["command"] = " ".join(sys.argv) if sys.argv else ""
    table = format_table(doc)
    say("\nR^2 against the measured moments as they are (hip / knee):\n" + table)
    say(f"\n{doc['wall_time_s']:.0f} s")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "real_protocol.json").write_text(json.dumps(doc, indent=2) + "\n")
        (args.out / "real_protocol.md").write_text(table + "\n")
        say(f"wrote {args.out / 'real_protocol.md'} and real_protocol.json")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exoctl.training.real_protocol", description=__doc__)
    p.add_argument("--config", type=Path, default=None)
    add_arguments(p)
    args = p.parse_args(argv)
    return run_from_args(args, lambda s: print(s, flush=True))


if __name__ == "__main__":
    raise SystemExit(main())
