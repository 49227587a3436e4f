"""LibEMG peer: per-window feature extraction plus a regressor, the closest job LibEMG offers.

Runs *inside* the LibEMG virtual environment (``bench/.venv-libemg``, numpy<2), never in
exoctl's: it imports nothing from exoctl. It reads the same input the other peers use (an .npz
written by ``bench.bench_end_to_end``), and writes its figures as JSON:

    bench/.venv-libemg/bin/python bench/peers/libemg_peer.py IN.npz OUT.json

What it does, as a LibEMG user would for continuous (regression) control:

1. training: windows of ``window`` raw EMG samples (200 ms) ending every ``train_stride``
   samples of the training session; LibEMG's ``FeatureExtractor`` computes the Hudgins
   time-domain set (MAV, WL, ZC, SSC) per channel; ``EMGRegressor('LR')`` (scikit-learn linear
   regression through LibEMG's wrapper) is fitted to the joint torques at the windows' ends;
2. accuracy: the same on every control tick of each test session, R^2 per joint;
3. per-tick cost: at each control tick the newest window goes through ``extract_features`` and
   ``EMGRegressor.run``, timed with ``perf_counter_ns``; the first ``warmup`` ticks are not
   counted. LibEMG's online path adds its own acquisition (shared memory, a process) on top of
   these two calls, so this is a lower bound on what LibEMG costs per tick.

Importing the ``libemg`` package runs its ``__init__``, which imports every hardware streamer
and GUI; the benchmark loads only the two modules it uses, under an empty package object whose
``__path__`` is LibEMG's own directory. The modules themselves are LibEMG's, unchanged.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import types
from pathlib import Path

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

FEATURES = ["MAV", "WL", "ZC", "SSC"]


def _load_libemg():
    spec = importlib.util.find_spec("libemg")
    if spec is None or spec.origin is None:
        raise ImportError("libemg is not installed in this interpreter")
    pkg = types.ModuleType("libemg")
    pkg.__path__ = [str(Path(spec.origin).parent)]
    sys.modules["libemg"] = pkg
    from libemg.emg_predictor import EMGRegressor
    from libemg.feature_extractor import FeatureExtractor

    version = "unknown"
    try:
        from importlib.metadata import version as _v

        version = _v("libemg")
    except Exception:
        pass
    return FeatureExtractor, EMGRegressor, version


def _windows(emg, ends, win):
    import numpy as np

    idx = ends[:, None] + np.arange(-win + 1, 1)[None, :]
    return np.ascontiguousarray(emg[idx].transpose(0, 2, 1))  # (N, channels, samples)


def _features(fe, emg, ends, win, batch: int = 2000) -> dict:
    """LibEMG features of the windows ending at ``ends``, in batches (bounded memory)."""
    import numpy as np

    parts = [
        fe.extract_features(FEATURES, _windows(emg, b, win))
        for b in np.array_split(ends, max(1, ends.size // batch))
    ]
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def main(argv: list[str]) -> int:
    import numpy as np

    src, dst = Path(argv[1]), Path(argv[2])
    t_import = time.perf_counter()
    FeatureExtractor, EMGRegressor, version = _load_libemg()
    t_import = time.perf_counter() - t_import
    d = np.load(src)
    win, spt = int(d["window"]), int(d["per_tick"])
    warmup, n_timed = int(d["warmup"]), int(d["timed_ticks"])
    train_emg, train_y = d["train_emg"], d["train_torque"]
    fe = FeatureExtractor()

    ends = np.arange(win - 1, train_emg.shape[0], int(d["train_stride"]))
    t0 = time.perf_counter()
    feats = _features(fe, train_emg, ends, win)
    reg = EMGRegressor("LR")
    reg.fit(feature_dictionary={"training_features": feats, "training_labels": train_y[ends]})
    t_fit = time.perf_counter() - t0

    # accuracy on every control tick (with a full window) of each test session
    joints = [str(x) for x in d["joints"]]
    r2_sets = []
    for s in range(int(d["n_tests"])):
        emg_s, y_s = d[f"test_emg_{s}"], d[f"test_torque_{s}"]
        ticks = np.arange(spt - 1, emg_s.shape[0], spt)
        start = int(d[f"score_from_{s}"]) if f"score_from_{s}" in d else int(d["score_from"])
        ticks = ticks[ticks >= max(win - 1, start)]
        ticks = ticks[:: int(d["score_stride"]) if "score_stride" in d else 1]
        pred = np.asarray(reg.run(_features(fe, emg_s, ticks, win)))
        y = y_s[ticks]
        r2 = {}
        for j, name in enumerate(joints):
            ss_tot = float(np.sum((y[:, j] - y[:, j].mean()) ** 2))
            r2[name] = round(1.0 - float(np.sum((y[:, j] - pred[:, j]) ** 2)) / ss_tot, 4)
        r2_sets.append(r2)
    test_emg, n_j = d["test_emg_0"], len(joints)

    # per-tick cost: newest window -> features -> regressor, tick by tick
    first = (win + spt - 1) // spt  # first tick with a full window
    n = min(n_timed + warmup, test_emg.shape[0] // spt - first)
    times = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    out = np.empty((n, n_j))
    for i in range(n):
        end = (first + i + 1) * spt
        t0 = clock()
        w = test_emg[end - win : end].T[None]
        p = reg.run(fe.extract_features(FEATURES, w))
        times[i] = clock() - t0
        out[i] = p[0]
    times = times[warmup:] / 1000.0
    res = {
        "libemg_version": version,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
        "features": FEATURES,
        "regressor": "EMGRegressor('LR') (scikit-learn LinearRegression)",
        "window_samples": win,
        "import_s": round(t_import, 2),
        "fit_s": round(t_fit, 2),
        "train_windows": int(ends.size),
        "r2": r2_sets,
        "per_tick": {
            "median_us": round(float(np.median(times)), 2),
            "p99_us": round(float(np.percentile(times, 99)), 2),
            "max_us": round(float(times.max()), 2),
            "n": int(times.size),
        },
    }
    dst.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
