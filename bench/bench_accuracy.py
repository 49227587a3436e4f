"""Accuracy on the simulator's multi-session patients: R^2 per joint, spread across patients.

For each synthetic patient (``seed``), ``exoctl.hil.drift.session_recordings`` makes sessions
0..S-1 (session 0 undrifted; later sessions carry electrode shift, gain change, fatigue,
spasticity and weakness growing with the session index). Every model is fitted on the first
75 % of session 0 only, and scored on the rest of session 0 ("same session") and on each later
session, at every control tick after the filters' 2 s warm-up:

- ``exoctl linear``: the shipped model's recipe (``exoctl.training.linear_model``): calibration (MVC,
  NMF synergies by VAF 90 %) on session 0, per-tick features from the controller's own streaming
  chain (``exoctl.training.features.tick_features``), ridge on ``[h, a]``;
- ``lagged ridge``: the torque-model issue's baseline (``exoctl.training.evaluation.
  fit_lagged_ridge``: ridge on h at several lags up to 400 ms), when that module is present;
- ``LibEMG``: Hudgins features on 200 ms windows + ``EMGRegressor('LR')`` (the LibEMG peer, in
  its own venv) on the same raw EMG and torques.

- ``paper network``: the training package's ``MultiScaleNet`` (``exoctl.training.fit.
  train_network``, scales 50-400 ms) on the same features, on the first ``NET_PATIENTS``
  patients, without and with adversarial adaptation (``adapt_network``) to each later
  session's unlabelled EMG. Needs PyTorch (the ``train`` extra); skipped in --quick mode.

Real recorded data (not simulated): a stated subset of the real-data protocol
(``exoctl.training.real_protocol``: the within-trial rows of ceinms-lowerlimb-s06 and the
moco-3dwalking chain check), under ``result["real_data"]``; skipped in --quick mode or without
``../shared/data``.

    .venv/bin/python -m bench --only accuracy
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import joint_r2
from bench.peers import libemg_env
from exoctl.config.schema import load_config
from exoctl.training.linear_model import fit_ridge

TRAIN_FRACTION = 0.75
SCORE_STRIDE = 4  # every model is scored on every 4th control tick (125 Hz at 500 Hz): the
# R^2 of a 4 Hz-bandwidth torque does not change, the cost of windowed models drops 4x


def _spread(per_patient: list[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation, min and max across patients, per joint."""
    out = {}
    for j in per_patient[0]:
        v = np.array([p[j] for p in per_patient])
        out[j] = {
            "mean": round(float(v.mean()), 4),
            "sd": round(float(v.std(ddof=1)) if v.size > 1 else 0.0, 4),
            "min": round(float(v.min()), 4),
            "max": round(float(v.max()), 4),
        }
    return out


NET_SCALES_MS = (50, 100, 200, 400)
# Training budget that fits `make bench` (15 min on 2 cores); `exoctl train` trains longer
# (20 epochs of 40,000 windows), so these figures are a floor for the network.
NET_TRAIN = {"epochs": 4, "samples_per_epoch": 8000}
NET_ADAPT = {"epochs": 2, "samples_per_epoch": 8000}
NET_PATIENTS = 2
NET_TIME_BUDGET_S = 420.0  # no further network patient once the section has run this long


# The real-data protocol's subset that fits `make bench` (the whole protocol:
# `exoctl evaluate --protocol real`, docs/adaptation.md): the within-trial rows and the second
# lab's chain check, with the protocol's own network recipe; a group is not started once the
# section has spent REAL_BUDGET_S on real data.
REAL_GROUPS = ("within", "moco")
REAL_BUDGET_S = 300.0


def _real_data(quick: bool, log) -> dict[str, Any]:
    """The real-data protocol's stated subset, or why it did not run."""
    from bench.common import REPO

    shared = REPO.parent / "shared" / "data"
    if quick:
        return {"skipped": "--quick: the real-data rows train networks (minutes)"}
    if not shared.is_dir():
        return {"skipped": f"the shared real data is not beside the repository ({shared})"}
    try:
        from exoctl.training import real_protocol
    except ImportError as e:  # PyTorch is the optional train extra
        return {"skipped": f"PyTorch not importable ({e}); install the train extra"}
    t0 = time.monotonic()
    rows, ran = [], []
    for group in REAL_GROUPS:
        if time.monotonic() - t0 > REAL_BUDGET_S:
            break
        doc = real_protocol.run(groups=[group], seeds=(0,), say=lambda m: log(f"  real data: {m}"))
        rows += doc["rows"]
        ran.append(group)
    doc = {**doc, "rows": rows, "wall_time_s": round(time.monotonic() - t0, 1)}
    return {
        "groups": ran,
        "not_run": [g for g in real_protocol.ROW_GROUPS if g not in ran],
        "command": "exoctl evaluate --protocol real --rows " + ",".join(ran),
        "table_md": real_protocol.format_table(doc),
        **doc,
    }


def _net_predict(tf, net, X: np.ndarray, ticks: np.ndarray) -> np.ndarray:
    """PyTorch forward over windows ending at ``ticks``, in batches (bounded memory)."""
    from exoctl.training.features import windows

    return np.vstack(
        [
            tf.torch_predict(net, windows(X, b, net.window))
            for b in np.array_split(ticks, max(1, ticks.size // 2000))
        ]
    )


def run(quick: bool = False, libemg: bool = True, log=print) -> dict[str, Any]:
    from exoctl.hil.drift import session_recordings
    from exoctl.training.features import calibrate_recordings, tick_features

    try:
        from exoctl.training.evaluation import _lagged, fit_lagged_ridge
    except ImportError:  # optional baseline
        fit_lagged_ridge = None

    cfg = load_config(None)
    sim = cfg.simulator
    fs, rate = cfg.emg.sampling_rate_hz, cfg.tick_rate_hz
    spt = int(round(fs / rate))
    joints = list(cfg.joint_names)
    seeds = (1, 2) if quick else (1, 2, 3, 4, 5, 6)
    n_sessions, duration = (2, 12.0) if quick else (4, 60.0)
    names = ["session 0 (held-out 25 %)"] + [f"session {s}" for s in range(1, n_sessions)]
    models: dict[str, list[list[dict]]] = {"exoctl linear": [], "lagged ridge": [], "LibEMG": []}
    libemg_note = None
    net_note = None
    tf = None
    if quick:
        net_note = "not trained in --quick mode (minutes of PyTorch training)"
    else:
        try:
            from exoctl.training import fit as tf
            from exoctl.training.adapt import adapt_network

            tf.set_threads()
        except ImportError as e:
            net_note = f"PyTorch or exoctl.training not importable ({e}); install the train extra"
    t_section = time.monotonic()
    net_key = f"paper network, no adaptation (first {NET_PATIENTS} patients)"
    ada_key = f"paper network + adversarial adaptation (first {NET_PATIENTS} patients)"
    if tf is not None:
        models[net_key], models[ada_key] = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            log(f"  accuracy: patient {seed}, {n_sessions} sessions of {duration:g} s")
            recs = session_recordings(
                cfg.emg.muscles,
                joints,
                seed=seed,
                n_sessions=n_sessions,
                duration_s=duration,
                fs_hz=fs,
                stride_s=sim.stride_s,
                emg_noise_uv=sim.emg_noise_uv,
                electromechanical_delay_s=sim.electromechanical_delay_s,
                body_mass_kg=sim.body_mass_kg,
            )
            n_train = int(TRAIN_FRACTION * recs[0].emg.shape[0]) // spt * spt
            cal = calibrate_recordings(cfg, [recs[0].emg[:n_train]])
            sets = [
                tick_features(cfg, cal, r.emg, angles=r.angles, torque=r.torque, kinematics=False)
                for r in recs
            ]
            t_split = n_train // spt
            s0 = sets[0]
            train_ticks = np.arange(s0.warm, t_split)
            # test: the rest of session 0 (its filter state carried on: no new warm-up) and the
            # later sessions after their warm-up
            tests = [(s0, np.arange(t_split, s0.n, SCORE_STRIDE))] + [
                (s, np.arange(s.warm, s.n, SCORE_STRIDE)) for s in sets[1:]
            ]
            coef, icpt = fit_ridge(s0.X[train_ticks].astype(float), s0.y[train_ticks].astype(float))
            models["exoctl linear"].append(
                [joint_r2(s.y[t], s.X[t] @ coef + icpt, joints) for s, t in tests]
            )
            if fit_lagged_ridge is not None:
                import dataclasses

                head = dataclasses.replace(s0, X=s0.X[:t_split], y=s0.y[:t_split])
                lags, lc, li = fit_lagged_ridge([head], cal.k, rate)
                models["lagged ridge"].append(
                    [
                        joint_r2(s.y[t], _lagged(s.X[:, : cal.k], t, lags) @ lc + li, joints)
                        for s, t in tests
                    ]
                )
            if (
                tf is not None
                and net_note is None
                and len(models[net_key]) < NET_PATIENTS
                and time.monotonic() - t_section < NET_TIME_BUDGET_S
            ):
                try:
                    import dataclasses

                    head = dataclasses.replace(s0, X=s0.X[:t_split], y=s0.y[:t_split])
                    scales = [int(round(ms * rate / 1000.0)) for ms in NET_SCALES_MS]
                    # trained the way `exoctl train` trains (amplitude augmentation)
                    net = tf.train_network(
                        [head], scales, seed=seed, **NET_TRAIN,
                        **tf.emg_augmentation(s0.X.shape[1]),
                    )  # fmt: skip
                    plain = [
                        joint_r2(s.y[t], _net_predict(tf, net, s.X, t), joints) for s, t in tests
                    ]
                    # each later session adapted to on its own unlabelled EMG (never its
                    # torque), as `exoctl adapt` does with that session's trials: sessions
                    # drift differently, and one adaptation to all of them fits none
                    adapted = [plain[0]]  # session 0 is the labelled source
                    for s, t in tests[1:]:
                        a_net, _ = adapt_network(
                            net, [head], [s], n_emg_features=s0.X.shape[1], seed=seed,
                            **NET_ADAPT,
                        )  # fmt: skip
                        adapted.append(joint_r2(s.y[t], _net_predict(tf, a_net, s.X, t), joints))
                    models[net_key].append(plain)
                    models[ada_key].append(adapted)
                except Exception as e:  # the training package may be absent or changing
                    net_note = f"{type(e).__name__}: {e}"
            if libemg and libemg_note is None:
                try:
                    if quick and not libemg_env.installed():
                        raise RuntimeError("quick mode does not install the LibEMG venv")
                    libemg_env.ensure(log=log)
                    npz = Path(tmp) / f"acc_{seed}.npz"
                    r0 = recs[0]
                    libemg_env.write_input(
                        npz,
                        train=(r0.emg[:n_train], r0.torque[:n_train]),
                        tests=[(r0.emg, r0.torque)] + [(r.emg, r.torque) for r in recs[1:]],
                        joints=joints,
                        fs_hz=fs,
                        per_tick=spt,
                        score_from_samples=[n_train] + [int(2.0 * fs)] * (len(recs) - 1),
                        score_stride_ticks=SCORE_STRIDE,
                        timed_ticks=10,
                        warmup=0,
                    )
                    res = libemg_env.run_peer(npz, Path(tmp) / f"acc_{seed}.json")
                    models["LibEMG"].append(res["r2"])
                except Exception as e:
                    libemg_note = f"{type(e).__name__}: {e}"
    out: dict[str, Any] = {
        "patients": list(seeds),
        "sessions": names,
        "session_seconds": duration,
        "train": f"first {int(TRAIN_FRACTION * 100)} % of session 0 of each patient",
        "scored_every_n_ticks": SCORE_STRIDE,
        "models": {},
    }
    for name, per_patient in models.items():
        if not per_patient:
            continue
        out["models"][name] = {
            sname: {
                "per_patient": [p[i] for p in per_patient],
                "across_patients": _spread([p[i] for p in per_patient]),
            }
            for i, sname in enumerate(names)
        }
    out["real_data"] = _real_data(quick, log)
    if libemg_note:
        out["libemg_skipped"] = libemg_note
    if net_note:
        out["network"] = {"pending": net_note}
    else:
        out["network"] = {
            "scales_ms": list(NET_SCALES_MS),
            "train": NET_TRAIN,
            "adapt": NET_ADAPT,
            "patients": len(models[net_key]),
            "note": "trained with exoctl.training.fit (train_network) and .adapt (adapt_network: amplitude "
            "floors re-estimated, then the adversarial input adapter; each later session's EMG "
            "only, never its torque) on a budget "
            "that fits make bench; scored with the PyTorch forward of the same module",
        }
    return out
