"""How exoctl's per-tick cost grows with channel count, synergy count and control rate.

Per tick, the calls the estimator makes (``EmgConditioner.process`` on the new samples,
``ActivationDynamics.process``, ``OnlineNNLS.solve`` on the newest activation, a linear ONNX
model on ``[h, a]`` through IOBinding), timed stage by stage with ``perf_counter_ns``:

- channels 8, 16, 32, 64 (K = 4, 500 Hz): the synthetic patient has 16 muscles; 8 is its left
  leg, 32 and 64 are copies of the 16 with their own gain and a time shift, so every channel
  carries different, realistic EMG. The naive chain (``bench.peers.naive``, filtfilt window
  re-filtering + fresh NNLS) runs on the same data for the ratio;
- synergies K = 2, 4, 8, 12 (16 channels, 500 Hz): W from NMF of the same activations;
- control rate 250, 500, 1000 Hz (16 channels, K = 4): 8, 4, 2 new EMG samples per tick, and
  the share of one core the pipeline takes at that rate (median tick cost x rate).

The model's weights are random (its cost does not depend on their values).

    .venv/bin/python -m bench --only scaling
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import WARMUP_TICKS, TimedChain, ratios, tick_stats
from bench.peers import naive
from exoctl.config.schema import load_config
from exoctl.data.patient import patient_from_config
from exoctl.estimation.torque_model import MODEL_FORMAT, TorqueModel
from exoctl.signal.activation import ActivationDynamics
from exoctl.signal.dsp import EmgConditioner
from exoctl.signal.synergy import nmf
from exoctl.training.linear_model import write_onnx

CHANNELS = (8, 16, 32, 64)
SYNERGIES = (2, 4, 8, 12)
RATES = (250, 500, 1000)
STAGES = ("dsp", "activation", "nnls", "onnx")


def _emg(base: np.ndarray, m: int, rng: np.random.Generator) -> np.ndarray:
    """m channels from the patient's 16: the first m, or gain-scaled, time-shifted copies."""
    if m <= base.shape[1]:
        return np.ascontiguousarray(base[:, :m])
    cols = []
    for c in range(m):
        src = base[:, c % base.shape[1]]
        if c >= base.shape[1]:
            src = np.roll(src, int(rng.integers(200, 2000))) * rng.uniform(0.7, 1.3)
        cols.append(src)
    return np.ascontiguousarray(np.stack(cols, axis=1), dtype=np.float32)


def _calibrate(cfg, emg: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    fs = cfg.emg.sampling_rate_hz
    m = emg.shape[1]
    env = EmgConditioner(fs, m, max_chunk=emg.shape[0]).process(emg).copy()
    warm = int(fs)
    mvc = np.percentile(env[warm:], 99.5, axis=0)
    act = ActivationDynamics(m, fs, max_chunk=emg.shape[0]).process(env / mvc).copy()
    W, _ = nmf(act[warm::20], k, max_iter=200)
    return mvc, W


def _model(tmp: Path, m: int, k: int, n_joints: int, rng: np.random.Generator) -> TorqueModel:
    path = tmp / f"linear_{m}_{k}.onnx"
    meta = {
        "format": MODEL_FORMAT,
        "features": [f"h{i}" for i in range(k)] + [f"a:ch{c}" for c in range(m)],
        "joints": [f"j{j}" for j in range(n_joints)],
        "muscles": [f"ch{c}" for c in range(m)],
        "n_synergies": k,
        "model_type": "benchmark: random linear",
    }
    write_onnx(path, rng.normal(size=(k + m, n_joints)), rng.normal(size=n_joints), meta)
    return TorqueModel(path)


def _time_chain(cfg, emg, mvc, W, model: TorqueModel, spt: int, n: int) -> np.ndarray:
    chain = TimedChain.build(cfg.emg.sampling_rate_hz, mvc, W, cfg.estimator.activation)
    k = W.shape[1]
    feats = model.features
    clock = time.perf_counter_ns
    st = np.empty((n, 5), dtype=np.int64)
    for i in range(n):
        h, t0, t3 = chain.tick(emg[i * spt : (i + 1) * spt], clock, st[i])
        feats[0, :k] = h
        feats[0, k:] = chain.last_activation
        model.run()
        t4 = clock()
        st[i, 3:] = (t4 - t3, t4 - t0)
    return st


def _row(st: np.ndarray) -> dict[str, Any]:
    r = {"tick": tick_stats(st[:, 4], WARMUP_TICKS)}
    r["stages_median_us"] = {
        name: tick_stats(st[:, i], WARMUP_TICKS)["median_us"] for i, name in enumerate(STAGES)
    }
    return r


def run(quick: bool = False, log=print) -> dict[str, Any]:
    cfg = load_config(None)
    fs = cfg.emg.sampling_rate_hz
    nj = len(cfg.joint_names)
    seconds = 3.0 if quick else 10.0
    n_naive = 30 if quick else 120
    rng = np.random.default_rng(0)
    base = np.asarray(patient_from_config(cfg, session=11).generate(seconds).emg, np.float32)
    out: dict[str, Any] = {
        "emg_rate_hz": fs,
        "seconds_per_point": seconds,
        "channels": {},
        "synergies": {},
        "rates": {},
    }
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        cache: dict[int, tuple] = {}
        spt = int(fs // 500)
        for m in CHANNELS:
            log(f"  scaling: {m} channels")
            emg = _emg(base, m, rng)
            mvc, W = _calibrate(cfg, emg, 4)
            cache[m] = (emg, mvc)
            st = _time_chain(cfg, emg, mvc, W, _model(tmp, m, 4, nj, rng), spt, emg.shape[0] // spt)
            row = _row(st)
            chain, _ = naive.chain_times(emg, mvc, W, cfg.estimator.activation, spt, n_naive)
            row["naive_chain"] = tick_stats(chain, 10)
            row["ratio_naive_vs_exoctl"] = ratios(row["naive_chain"], row["tick"])
            out["channels"][str(m)] = row
        emg, mvc = cache[16]
        for k in SYNERGIES:
            log(f"  scaling: K = {k}")
            _, W = _calibrate(cfg, emg, k)
            st = _time_chain(
                cfg, emg, mvc, W, _model(tmp, 16, k, nj, rng), spt, emg.shape[0] // spt
            )
            out["synergies"][str(k)] = _row(st)
        _, W4 = _calibrate(cfg, emg, 4)
        model = _model(tmp, 16, 4, nj, rng)
        for rate in RATES:
            log(f"  scaling: {rate} Hz")
            s = int(fs // rate)
            row = _row(_time_chain(cfg, emg, mvc, W4, model, s, emg.shape[0] // s))
            row["samples_per_tick"] = s
            row["cpu_share_of_one_core"] = round(row["tick"]["median_us"] * 1e-6 * rate, 4)
            out["rates"][str(rate)] = row
    return out
