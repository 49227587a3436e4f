"""LibEMG's own virtual environment (``bench/.venv-libemg``), made once, and the peer run in it.

Why a venv of its own: ``libemg`` 2.0.3 pins numpy<2 and lists a dozen hardware drivers and
GUIs (pythonnet, mindrove, bleak, dearpygui, opencv, ...) that exoctl's environment must not
carry. The benchmark installs ``libemg`` without its dependencies and adds only what the two
modules it uses import (``feature_extractor``, ``emg_predictor``): numpy<2, scipy,
scikit-learn, matplotlib, PyWavelets, pillow, librosa (LPC features) and pygame (imported by
``emg_predictor``'s environments module).

Idempotent: a stamp file holding the requirement list is written after a successful install;
with the stamp present and equal, nothing is installed again (a second run costs nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench.common import REPO

VENV = REPO / "bench" / ".venv-libemg"
LIBEMG = "libemg==2.0.3"
REQUIREMENTS = [
    "numpy<2",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "PyWavelets",
    "pillow",
    "librosa",
    "pygame",
]
STAMP = VENV / ".exoctl-bench-installed"
PEER = Path(__file__).with_name("libemg_peer.py")


def python() -> Path:
    return VENV / "bin" / "python"


def _want() -> str:
    return json.dumps({"libemg": LIBEMG, "deps": REQUIREMENTS})


def installed() -> bool:
    return STAMP.is_file() and STAMP.read_text() == _want() and python().is_file()


def ensure(log=print, timeout_s: float = 600.0) -> dict:
    """Create/complete the venv; returns what was done. Raises RuntimeError with pip's words."""
    if installed():
        return {"venv": str(VENV.relative_to(REPO)), "installed_now": False, "install_s": 0.0}
    t0 = time.monotonic()
    base = getattr(sys, "_base_executable", sys.executable)
    steps = []
    if not python().is_file():
        steps.append(("create the venv", [base, "-m", "venv", str(VENV)]))
    pip = [str(python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    steps.append((f"install {', '.join(REQUIREMENTS)}", [*pip, *REQUIREMENTS]))
    steps.append((f"install {LIBEMG} --no-deps", [*pip, "--no-deps", LIBEMG]))
    for what, cmd in steps:
        log(f"  LibEMG venv {VENV.relative_to(REPO)}: {what}")
        left = timeout_s - (time.monotonic() - t0)
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=max(left, 1.0))
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"installing LibEMG took longer than {timeout_s:.0f} s") from None
        if p.returncode != 0:
            err = [ln for ln in (p.stderr or p.stdout).splitlines() if "WARNING" not in ln]
            raise RuntimeError(
                f"`{' '.join(cmd)}` failed (exit {p.returncode}): " + " | ".join(err[-4:])
            )
    STAMP.write_text(_want())
    return {
        "venv": str(VENV.relative_to(REPO)),
        "installed_now": True,
        "install_s": round(time.monotonic() - t0, 1),
    }


def run_peer(npz: Path, out: Path, timeout_s: float = 300.0) -> dict:
    env = dict(os.environ, PYGAME_HIDE_SUPPORT_PROMPT="1", MPLBACKEND="Agg")
    env.pop("PYTHONPATH", None)
    p = subprocess.run(
        [str(python()), str(PEER), str(npz), str(out)],
        capture_output=True,
        text=True,
        timeout=timeout_s,
        env=env,
    )
    if p.returncode != 0:
        tail = " | ".join((p.stderr or p.stdout).strip().splitlines()[-4:])
        raise RuntimeError(f"the LibEMG peer failed (exit {p.returncode}): {tail}")
    return json.loads(out.read_text())


def write_input(
    path: Path,
    *,
    train: tuple,
    tests: list[tuple],
    joints: list[str],
    fs_hz: float,
    per_tick: int,
    window_s: float = 0.2,
    train_stride_s: float = 0.01,
    score_from_s: float = 2.0,
    score_from_samples: list[int] | None = None,
    score_stride_ticks: int = 1,
    timed_ticks: int = 2000,
    warmup: int = 200,
) -> None:
    """The peer's input: raw EMG (samples, channels) and true torque, train and test sessions.

    Each test session is scored from ``score_from_samples[i]`` (default: ``score_from_s``).
    """
    import numpy as np

    arrays = {
        "train_emg": np.asarray(train[0], dtype=np.float64),
        "train_torque": np.asarray(train[1], dtype=np.float64),
        "n_tests": len(tests),
        "joints": np.array(joints),
        "fs": fs_hz,
        "per_tick": per_tick,
        "window": int(round(window_s * fs_hz)),
        "train_stride": max(1, int(round(train_stride_s * fs_hz))),
        "score_from": int(round(score_from_s * fs_hz)),
        "timed_ticks": timed_ticks,
        "score_stride": int(score_stride_ticks),
        "warmup": warmup,
    }
    for i, (emg, torque) in enumerate(tests):
        arrays[f"test_emg_{i}"] = np.asarray(emg, dtype=np.float64)
        arrays[f"test_torque_{i}"] = np.asarray(torque, dtype=np.float64)
        if score_from_samples is not None:
            arrays[f"score_from_{i}"] = int(score_from_samples[i])
    np.savez(path, **arrays)
