"""The naive peer: the same chain as a user would write it from offline code, tick by tick.

- signal chain: the signal-chain benchmark's reference in ``bench.bench_signal_chain``
  (``bench_naive``: every tick re-filters the last second of raw EMG with zero-phase
  ``sosfiltfilt``, runs the activation recursion over that window from rest and solves the
  newest sample with a fresh ``scipy.optimize.nnls``). Imported, not copied, so both reports
  time the same code.
- inference: PyTorch eager (``torch.no_grad``) of the *same* network: for the shipped linear
  model an ``nn.Linear`` holding the ONNX file's weights; for the paper's network the very
  ``MultiScaleNet`` module that was exported. Without PyTorch (it is the optional ``train``
  extra) the fallback is onnxruntime used the generic way: a session with default options and
  ``session.run`` with a dict per call (allocates the output every tick, default thread pools).

The per-tick cost of the naive pipeline is the naive chain's time at tick i plus the naive
inference's time at tick i, both measured on the same ticks of the same input.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np


def chain_times(
    emg: np.ndarray, mvc: np.ndarray, W: np.ndarray, act_cfg: Any, per_tick: int, n_ticks: int
) -> tuple[np.ndarray, int]:
    """Naive chain per tick (ns) for ``n_ticks`` ticks; returns (times, first tick index)."""
    from bench import bench_signal_chain as sc

    times, _, start_tick = sc.bench_naive(
        np.ascontiguousarray(emg, dtype=np.float64), mvc, W, act_cfg, per_tick, n_ticks
    )
    return times, start_tick


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


class TorchEager:
    """PyTorch eager forward of one feature row/window per call, one thread (as the controller)."""

    kind = "PyTorch eager"

    def __init__(self, module) -> None:
        import torch

        torch.set_num_threads(1)
        self.torch = torch
        self.module = module.eval()

    @classmethod
    def from_linear_onnx(cls, path: Path) -> TorchEager:
        import onnx
        import torch
        from onnx import numpy_helper

        m = onnx.load(str(path))
        w = {i.name: numpy_helper.to_array(i) for i in m.graph.initializer}
        coef, intercept = w["coef"], w["intercept"].reshape(-1)
        lin = torch.nn.Linear(coef.shape[0], coef.shape[1])
        with torch.no_grad():
            lin.weight.copy_(torch.from_numpy(coef.T.copy()))
            lin.bias.copy_(torch.from_numpy(intercept.copy()))
        return cls(lin)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.module(self.torch.from_numpy(x)).numpy()


class OrtDefault:
    """onnxruntime the generic way: default session options, ``run`` with a dict per call."""

    kind = "onnxruntime, default session, run() per call"

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"features": x})[0]


def inference_times(model, inputs: np.ndarray, warmup: int = 50) -> np.ndarray:
    """Per-call time (ns) of ``model(inputs[i:i+1])`` over the rows of ``inputs``."""
    clock = time.perf_counter_ns
    for i in range(min(warmup, len(inputs))):
        model(inputs[i : i + 1])
    out = np.empty(len(inputs), dtype=np.int64)
    for i in range(len(inputs)):
        x = inputs[i : i + 1]
        t0 = clock()
        model(x)
        out[i] = clock() - t0
    return out
