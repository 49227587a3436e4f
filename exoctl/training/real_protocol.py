"""The evaluation protocol on real recorded data (issue 13): one command, one table.

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

``live`` (within rows): the same network run by the controller itself on the HIL bench, the
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
from exoctl.signal.chain import ChainSettings

from .metrics import joint_metrics, summarise
from .pipeline import DataSource, TickData, sidecar, split_tail, trial_tick_sets
from .workflow import (
    NetworkRecipe,
    adapt_model,
    fit_network_model,
    fit_ridge_model,
    score_sets,
)

__all__ = ["ROW_GROUPS", "format_table", "run"]

REPO = Path(__file__).resolve().parents[2]
DATASETS = REPO / "datasets"
ROW_GROUPS = ("within", "cross", "falisse", "moco")
TRAIN_FRACTION = 0.8
CEILING_LOWPASS_HZ = 10.0
FALISSE_REPEATS = 3

# The network recipe the protocol trains with (chosen on training data: see docs/adaptation.md)
RECIPE = NetworkRecipe(epochs=12, samples_per_epoch=20000)
ADAPT = {"epochs": 4, "samples_per_epoch": 10000}

Say = Callable[[str], None]


def _cut(trial: Trial, start: int, stop: int | None) -> Trial:
    sl = slice(start, stop)
    return dataclasses.replace(
        trial,
        t=trial.t[sl],
        emg=trial.emg[sl],
        torque=None if trial.torque is None else trial.torque[sl],
        angles=None if trial.angles is None else trial.angles[sl],
    )


def _labelled(values: np.ndarray | None, trial: Trial) -> np.ndarray:
    if values is None:
        raise ValueError(f"trial {trial.name!r}: no moments or angles; cannot join it")
    return values


def _join(trials: Sequence[Trial], name: str) -> Trial:
    """Trials end to end on one clock at the first one's rate (gait cycles of one person)."""
    first = trials[0]
    n = sum(t.t.size for t in trials)
    return dataclasses.replace(
        first,
        name=name,
        t=np.arange(n) / first.fs_hz,
        emg=np.vstack([t.emg for t in trials]),
        torque=np.vstack([_labelled(t.torque, t) for t in trials]),
        angles=np.vstack([_labelled(t.angles, t) for t in trials]),
    )


def _kind_means(per: dict[str, dict[str, Any]]) -> dict[str, float | None]:
    """``summarise`` for figures that may be missing (None)."""
    out: dict[str, float | None] = {}
    for kind in ("hip", "knee"):
        vals = [m["r2"] for j, m in per.items() if j.startswith(kind)]
        if vals:
            out[f"r2_{kind}"] = None if None in vals else round(float(np.mean(vals)), 5)
    return out


def _ceiling(y: np.ndarray, rate: float, joints: Sequence[str]) -> dict:
    from scipy.signal import butter, sosfiltfilt

    sos = butter(2, CEILING_LOWPASS_HZ, fs=rate, output="sos")
    return summarise(joint_metrics(y, sosfiltfilt(sos, y, axis=0), joints))


LIVE_PREROLL_S = 10.0
LIVE_REALTIME = {"service": {"realtime_priority": 50}, "simulator": {"realtime_priority": 60}}


class _Protocol:
    def __init__(
        self,
        cfg,
        workdir: Path,
        recipe: NetworkRecipe,
        adapt: dict,
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
        self.adapt = adapt
        self.say = say
        self.rows: list[dict[str, Any]] = []

    def _calibrate(self, trials: Sequence[Trial], where: Path):
        return calibrate_trials(trials, where=where, chain=self.chain).calibration

    def _ticks(self, trials, cal, joints, where) -> TickData:
        return trial_tick_sets(
            self.cfg, trials, cal, joints, where=where, kinematics=True, need_torque=True
        )

    def _models(self, tag: str, heads, data: TickData, cal) -> tuple[Path, Path, Any, dict]:
        src = [DataSource("dataset", None, tuple(h.name for h in heads), ())]
        ridge = self.workdir / f"{tag}_ridge.onnx"
        fit_ridge_model(ridge, heads, data, cal, src)
        net_path = self.workdir / f"{tag}_net.onnx"
        t0 = time.monotonic()
        net, meta = fit_network_model(net_path, heads, data, cal, src, self.recipe)
        self.say(f"  {tag}: network trained in {time.monotonic() - t0:.0f} s")
        return ridge, net_path, net, meta

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
        self.say("  " + _row_line(row))

    def within(self, ds) -> None:
        for name in ds.trial_names:
            trial = ds.load_trial(name)
            n_head = int(TRAIN_FRACTION * trial.t.size)
            cal = self._calibrate([_cut(trial, 0, n_head)], ds.path)
            data = self._ticks([trial], cal, ds.joints, ds.path)
            head, tail = split_tail(data.sets[0], 1.0 - TRAIN_FRACTION)
            ridge, net_path, _, _ = self._models(f"within_{name}", [head], data, cal)
            scored = {}
            for label, path in (("ridge", ridge), ("network", net_path)):
                s, y, _ = score_sets(path, [tail], ds.joints)
                scored[label] = {k: v for k, v in s.items() if k != "joints"}
                scored[label]["joints"] = s["joints"]
            extra: dict[str, Any] = {}
            if self.live:
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

    def cross(self, ds) -> None:
        names = ds.trial_names
        trials = {n: ds.load_trial(n) for n in names}
        for src_name, tgt_name in ((names[0], names[1]), (names[1], names[0])):
            cal = self._calibrate([trials[src_name]], ds.path)
            data = self._ticks([trials[src_name], trials[tgt_name]], cal, ds.joints, ds.path)
            source, target = data.sets
            tag = f"cross_{src_name}_{tgt_name}"
            ridge, net_path, net, meta = self._models(tag, [source], data, cal)
            adapted = self.workdir / f"{tag}_adapted.onnx"
            t0 = time.monotonic()
            _, adapted_meta = adapt_model(
                net, meta, [source], [target], adapted,
                n_emg_features=cal.k + len(cal.muscles),
                target_source=DataSource("dataset", None, (tgt_name,), ()),
                from_model=net_path.name, seed=self.recipe.seed, **self.adapt,
            )  # fmt: skip
            self.say(f"  {tag}: adapted in {time.monotonic() - t0:.0f} s")
            if "task_change" in adapted_meta["adaptation"]:
                changed = adapted_meta["adaptation"]["task_change"]
                self.say(f"  {tag}: WARNING: task change (velocity spread ratio {changed})")
            scored = {}
            for label, path in (("ridge", ridge), ("network", net_path), ("adapted", adapted)):
                s, y, _ = score_sets(path, [target], ds.joints)
                scored[label] = s
            self._row(
                f"{src_name} -> {tgt_name}", f"{src_name} (all)", f"{tgt_name} (all)",
                ds.joints, scored, y, data.spec.tick_rate_hz, K=cal.k,
                adaptation={k: v for k, v in adapted_meta["adaptation"].items() if k != "target"},
            )  # fmt: skip

    def falisse(self, ds) -> None:
        import scipy.signal  # noqa: F401  (the ceiling's filter; fail early if absent)

        trials = [ds.load_trial(n) for n in ds.trial_names]
        full = [t for t in trials if np.isfinite(t.emg).all()]
        ys: dict[str, list[np.ndarray]] = {"ridge": [], "network": []}
        truth: list[np.ndarray] = []
        ks = []
        rate = self.cfg.control.rate_hz
        for held in full:
            rest = [t for t in full if t is not held]
            train = _join(rest, f"cycles except {held.name}")
            test = _join([held] * FALISSE_REPEATS, f"{held.name} x{FALISSE_REPEATS}")
            cal = self._calibrate([train], ds.path)
            ks.append(cal.k)
            data = self._ticks([train, test], cal, ds.joints, ds.path)
            head, test_set = data.sets
            per_pass = test_set.n // FALISSE_REPEATS
            scored_ticks = np.arange((FALISSE_REPEATS - 1) * per_pass, test_set.n)
            ridge, net_path, _, _ = self._models(f"falisse_{held.name}", [head], data, cal)
            for label, path in (("ridge", ridge), ("network", net_path)):
                _, y, yhat = score_sets(path, [test_set], ds.joints, ticks=[scored_ticks])
                ys[label].append(yhat)
            truth.append(y)
        y = np.vstack(truth)
        scored = {}
        for label, parts in ys.items():
            per = joint_metrics(y, np.vstack(parts), ds.joints)
            scored[label] = {"joints": per, **summarise(per)}
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
        self.say("  " + _row_line(out))


def run(
    *,
    datasets: Path = DATASETS,
    groups: Sequence[str] = ROW_GROUPS,
    config: Path | None = None,
    recipe: NetworkRecipe = RECIPE,
    adapt: dict | None = None,
    say: Say = print,
    live: bool = True,
) -> dict[str, Any]:
    """Run the protocol's row groups; returns the table as a document (see ``format_table``).
    ``live``: the within rows' live column (the HIL bench; about 25 s per row)."""
    cfg = load_config(config)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        p = _Protocol(
            cfg, Path(d), recipe, dict(ADAPT if adapt is None else adapt), say, live, config
        )
        for group in groups:
            if group not in ROW_GROUPS:
                raise ValueError(f"unknown row group {group!r}; groups: {', '.join(ROW_GROUPS)}")
            say(f"{group}:")
            desc = {
                "within": "ceinms-lowerlimb-s06.yaml",
                "cross": "ceinms-lowerlimb-s06.yaml",
                "falisse": "falisse2019.yaml",
                "moco": "moco-3dwalking.yaml",
            }[group]
            getattr(p, group)(load_dataset(datasets / desc))
    return {
        "protocol": "exoctl.training.real_protocol (docs/adaptation.md, real data)",
        "tick_rate_hz": cfg.control.rate_hz,
        "recipe": dataclasses.asdict(recipe),
        "adapt": p.adapt,
        "rows": p.rows,
        "wall_time_s": round(time.monotonic() - t0, 1),
    }


def _r2(row: dict, model: str, kind: str) -> str:
    v = (row.get(model) or {}).get(f"r2_{kind}")
    return "-" if v is None else f"{v:.3f}"


def _row_line(row: dict) -> str:
    if "ridge" not in row:
        t = ", ".join(f"{k} Hz: {v['n']} ticks" for k, v in row["ticks"].items())
        return f"{row['row']}: K={row['K']} (VAF {row['vaf']:.1%}); {t}"
    s = f"{row['row']}: ridge {_r2(row, 'ridge', 'hip')}/{_r2(row, 'ridge', 'knee')}"
    s += f"  network {_r2(row, 'network', 'hip')}/{_r2(row, 'network', 'knee')}"
    if "adapted" in row:
        s += f"  adapted {_r2(row, 'adapted', 'hip')}/{_r2(row, 'adapted', 'knee')}"
    if "live" in row:
        s += f"  live {_live(row, 'hip')}/{_live(row, 'knee')}"
    return s + f"  (ceiling {_r2(row, 'ceiling', 'hip')}/{_r2(row, 'ceiling', 'knee')})"


def _live(row: dict, kind: str) -> str:
    """The live network's R^2 of a within row, or "-" (other rows, or not run)."""
    return _r2(row["live"], "network", kind) if "live" in row else "-"


def format_table(doc: dict) -> str:
    """The protocol's table in Markdown (R^2 hip / knee against the measured moments)."""
    lines = [
        "| row | trained on | scored on | ticks | lagged ridge hip / knee | network hip / knee "
        "| live network hip / knee | adapted hip / knee | ceiling hip / knee |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in doc["rows"]:
        if "ridge" not in r:
            t = ", ".join(f"{v['n']} at {k} Hz" for k, v in r["ticks"].items())
            lines.append(
                f"| {r['row']} | {r['train']} | - | {t} | K={r['K']}, VAF {r['vaf']:.1%} "
                "| no accuracy claim (one cycle) | | | |"
            )
            continue
        ad = f"{_r2(r, 'adapted', 'hip')} / {_r2(r, 'adapted', 'knee')}" if "adapted" in r else "-"
        lines.append(
            f"| {r['row']} | {r['train']} | {r['test']} | {r['scored_ticks']} "
            f"| {_r2(r, 'ridge', 'hip')} / {_r2(r, 'ridge', 'knee')} "
            f"| {_r2(r, 'network', 'hip')} / {_r2(r, 'network', 'knee')} "
            f"| {_live(r, 'hip')} / {_live(r, 'knee')} | {ad} "
            f"| {_r2(r, 'ceiling', 'hip')} / {_r2(r, 'ceiling', 'knee')} |"
        )
    return "\n".join(lines)


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
