"""The long-term experiment: patients x sessions with drift; network+adaptation vs baselines.

For every synthetic patient (seed): session 0 is the labelled calibration session (the
calibration, MVC and W, is made on it and never changed); sessions 1..S-1 drift more and more
(``exoctl.hil.drift``). Three models, all exported to ONNX and scored through onnxruntime on
the *second half* of the last session:

- ``ridge``: ridge regression on lagged synergy activations, trained on session 0;
- ``network``: the multi-scale attention network trained on session 0, no adaptation;
- ``adapted``: that network adapted with the *first half* of the last session, its EMG only
  (the session a clinician starts: a minute of walking, unlabelled, before assistance); its
  torques are never used: each EMG feature's amplitude factor re-estimated from its floor
  (``fit.FLOOR_QUANTILE``), then adversarial alignment (gradient reversal, domain classifier).
  Ablations beside it: ``floor_only`` (no adversary), ``rms_adv`` (the factor from the RMS
  ratio instead of the floor), ``adv_only`` (no re-estimation), ``adv_loose`` (the adversary's
  map held less tightly near the re-estimated start) and ``dann`` (the whole feature extractor
  trained against the domain classifier, regression on session 0 kept).

The middle sessions are not adaptation data for the last one: their drift is another (smaller)
one, and pooling them estimated an average of the sessions' amplitudes, not the last session's.
They are scored unadapted for the drift curve (``network_by_session``).

Run (prints a table, writes JSON)::

    .venv/bin/python -m exoctl.training.experiment --patients 8 --sessions 5 --out results.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from exoctl.config.schema import load_config
from exoctl.estimation.metrics import joint_metrics, summarise
from exoctl.hil.drift import session_recordings

from .evaluation import fit_lagged_ridge, predict, write_ridge_onnx
from .features import TickSet, calibrate_recordings, tick_features
from .pipeline import DEFAULT_WINDOWS_MS, DataSource, model_metadata, scales_in_ticks

__all__ = ["MODELS", "VARIANTS", "run_patient"]

# adaptation variants: keyword arguments of adapt_network beside the common ones
VARIANTS: dict[str, dict] = {
    "adapted": {},  # the defaults of adapt_network / exoctl adapt
    "floor_only": {"adversarial": False},
    "rms_adv": {"renormalise": "scale"},
    "adv_only": {"renormalise": "none"},
    "adv_loose": {"adapter_pull": 1.0},  # the adversary's map held 10x less near its start
    "dann": {"mode": "dann"},  # the whole feature extractor behind the reversal layer
}
MODELS = ("ridge", "network", *VARIANTS)


def _half(ts: TickSet, second: bool) -> TickSet:
    mid = ts.n // 2
    if second:  # scored from mid on; the first half is its (unscored) past
        return TickSet(ts.name, ts.X, ts.y, ts.tick_rate_hz, mid, ts.names, ts.body_mass_kg,
                       ts.fingerprint)  # fmt: skip
    return TickSet(ts.name, ts.X[:mid], None, ts.tick_rate_hz, ts.warm, ts.names,
                   ts.body_mass_kg, ts.fingerprint)  # fmt: skip


def run_patient(
    cfg,
    seed: int,
    *,
    n_sessions: int = 5,
    duration_s: float = 60.0,
    epochs: int = 8,
    adapt_epochs: int = 4,
    kinematics: bool = False,
    samples_per_epoch: int = 20000,
    workdir: Path,
    log=print,
) -> dict:
    from .adapt import adapt_network
    from .fit import emg_augmentation, export_onnx, train_network

    t0 = time.monotonic()
    recs = session_recordings(
        cfg.emg.muscles, cfg.joint_names, seed=seed, n_sessions=n_sessions, duration_s=duration_s,
        fs_hz=cfg.emg.sampling_rate_hz,
    )  # fmt: skip
    cal = calibrate_recordings(cfg, [recs[0].emg], source={"simulator_seed": seed, "session": 0})
    sets = [
        tick_features(
            cfg,
            cal,
            r.emg,
            angles=r.angles,
            torque=r.torque,
            kinematics=kinematics,
            name=f"p{seed}s{i}",
        )  # fmt: skip
        for i, r in enumerate(recs)
    ]
    rate = cfg.tick_rate_hz
    scales = scales_in_ticks(DEFAULT_WINDOWS_MS, rate)
    window = max(scales)
    k, m = cal.k, len(cal.muscles)
    src = [sets[0]]
    last = sets[-1]
    test = _half(last, second=True)
    targets = [_half(last, second=False)]
    common = dict(
        muscles=cal.muscles, joints=cfg.joint_names, cal=cal, window_ticks=window,
        tick_rate_hz=rate, emg_rate_hz=cfg.emg.sampling_rate_hz,
        sources=[DataSource("simulator", None, (sets[0].name,), (sets[0].fingerprint,))],
        metrics={},
    )  # fmt: skip
    out: dict = {"seed": seed, "k": k}
    ticks = np.arange(test.warm, test.n)
    y = test.torques[ticks]

    lags, coef, b = fit_lagged_ridge(src, k, rate)
    ridge_path = workdir / f"ridge_{seed}.onnx"
    write_ridge_onnx(
        ridge_path, lags, coef, b, window,
        model_metadata(model_type="ridge", features=[f"h{i}" for i in range(k)],
                       windows_ms=None, **common),
    )  # fmt: skip
    t1 = time.monotonic()
    net = train_network(
        src, scales, epochs=epochs, seed=seed, samples_per_epoch=samples_per_epoch,
        **emg_augmentation(k + m),
    )  # fmt: skip
    train_s = time.monotonic() - t1
    net_path = workdir / f"net_{seed}.onnx"
    meta = model_metadata(
        model_type="network", features=sets[0].names, windows_ms=DEFAULT_WINDOWS_MS, **common
    )
    export_onnx(net, net_path, meta)
    paths = {"ridge": ridge_path, "network": net_path}
    out["adaptation"] = {}
    adapt_s = {}
    for name, kw in VARIANTS.items():
        t2 = time.monotonic()
        adapted, rep = adapt_network(
            net, src, targets, n_emg_features=k + m, epochs=adapt_epochs, seed=seed,
            samples_per_epoch=samples_per_epoch // 2, **kw,
        )  # fmt: skip
        adapt_s[name] = round(time.monotonic() - t2, 1)
        paths[name] = workdir / f"{name}_{seed}.onnx"
        export_onnx(adapted, paths[name], meta)
        out["adaptation"][name] = rep
    for name, path in paths.items():
        per = joint_metrics(
            y, predict(path, test, ticks), cfg.joint_names, cfg.simulator.body_mass_kg
        )
        out[name] = {"joints": per, **summarise(per)}
    # session 0 (held-out half) and every session without adaptation, for the drift curve
    out["network_by_session"] = []
    for s in sets:
        h = _half(s, second=True)
        tt = np.arange(h.warm, h.n)
        per = joint_metrics(s.torques[tt], predict(net_path, h, tt), cfg.joint_names)
        out["network_by_session"].append(summarise(per))
    out["times_s"] = {"train": round(train_s, 1), "adapt": adapt_s,
                      "total": round(time.monotonic() - t0, 1)}  # fmt: skip
    log(
        f"patient {seed}: K={k}  "
        + "  ".join(f"{n} hip {out[n]['r2_hip']:.3f} knee {out[n]['r2_knee']:.3f}" for n in MODELS)
        + f"  ({out['times_s']['total']:.0f} s)"
    )
    return out


def _spread(rows: list[dict], model: str, key: str) -> dict:
    v = np.array([r[model][key] for r in rows])
    return {"mean": round(float(v.mean()), 4), "sd": round(float(v.std(ddof=1)) if len(v) > 1 else 0.0, 4),
            "min": round(float(v.min()), 4)}  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m exoctl.training.experiment", description=__doc__)
    p.add_argument("--config", type=Path, default=None)
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--sessions", type=int, default=5)
    p.add_argument("--duration", type=float, default=60.0, help="seconds per session")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--adapt-epochs", type=int, default=4)
    p.add_argument("--kinematics", action="store_true", help="also angles and velocities")
    p.add_argument("--out", type=Path, default=None, help="JSON results")
    args = p.parse_args(argv)
    from .fit import set_threads

    set_threads()
    cfg = load_config(args.config)
    rows = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory() as d:
        for seed in range(args.first_seed, args.first_seed + args.patients):
            rows.append(
                run_patient(
                    cfg, seed, n_sessions=args.sessions, duration_s=args.duration,
                    epochs=args.epochs, adapt_epochs=args.adapt_epochs,
                    kinematics=args.kinematics, workdir=Path(d),
                    log=lambda s: print(s, flush=True),
                )
            )  # fmt: skip
    summary = {m: {k: _spread(rows, m, k) for k in ("r2_hip", "r2_knee")} for m in MODELS}
    wins = sum(
        all(r["adapted"][k] > max(r["ridge"][k], r["network"][k]) for k in ("r2_hip", "r2_knee"))
        for r in rows
    )
    doc = {
        "command": "python -m exoctl.training.experiment " + " ".join(argv or sys.argv[1:]),
        "protocol": __doc__.split("Run (")[0].strip(),
        "patients": args.patients,
        "sessions": args.sessions,
        "duration_s": args.duration,
        "summary_last_session": summary,
        "adapted_beats_both_baselines_in": f"{wins}/{len(rows)} patients",
        "wall_time_s": round(time.monotonic() - t0, 1),
        "rows": rows,
    }
    print("\nlast session, second half (R^2 mean +- sd over patients, min):")
    for m in MODELS:
        s = summary[m]
        print(
            f"  {m:<8} hip {s['r2_hip']['mean']:.3f} +- {s['r2_hip']['sd']:.3f} (min "
            f"{s['r2_hip']['min']:.3f})   knee {s['r2_knee']['mean']:.3f} +- "
            f"{s['r2_knee']['sd']:.3f} (min {s['r2_knee']['min']:.3f})"
        )
    print(
        f"  adapted beats both baselines (hip and knee) in {doc['adapted_beats_both_baselines_in']}"
    )
    if args.out:
        args.out.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
