"""Per-tick cost of the signal chain (EMG conditioning, activation dynamics, synergy NNLS).

16 EMG channels at 2 kHz from the synthetic patient; control ticks at 500 Hz (4 new samples per
tick) and 1 kHz (2 samples). Two implementations run in the same process on the same data:

- streaming (what the estimator runs): ``EmgConditioner.process`` on the new samples (state
  carried), ``ActivationDynamics.process``, ``OnlineNNLS.solve`` on the newest activation;
- naive reference: every tick re-filters the last ``WINDOW_S`` of raw EMG with zero-phase
  ``sosfiltfilt`` (band-pass, rectify, envelope), normalises, runs the activation recursion over
  the window from rest, and solves the newest sample with a fresh ``scipy.optimize.nnls``.
  This is how offline code is often reused online; it is also non-causal at the window's end.

Reported: median, p99 and max per tick (microseconds), per-stage medians of the streaming
chain, and the ratio naive / streaming of the medians and of the p99s. The naive chain runs
fewer ticks (it is slow). Nothing here asserts: timing belongs to benchmarks, not tests.

    .venv/bin/python bench/bench_signal_chain.py [--seconds 20] [--out bench/results/signal_chain.json]
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from scipy import optimize, signal

from bench.common import TimedChain
from exoctl.config.schema import load_config
from exoctl.data.patient import patient_from_config
from exoctl.signal.activation import ActivationDynamics
from exoctl.signal.dsp import EmgConditioner
from exoctl.signal.synergy import nmf

FS = 2000.0
WINDOW_S = 1.0
K = 4


def _stats(ns: np.ndarray) -> dict[str, float]:
    us = ns / 1000.0
    return {
        "median_us": float(np.median(us)),
        "p99_us": float(np.percentile(us, 99)),
        "max_us": float(us.max()),
        "ticks": int(us.size),
    }


def _setup(seconds: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, Any]:
    cfg = load_config(None)
    cfg = cfg.with_overrides(emg={"sampling_rate_hz": FS})
    patient = patient_from_config(cfg)
    emg = np.ascontiguousarray(patient.generate(seconds).emg, dtype=np.float64)
    # a quick calibration on the same data (its quality is not the point here)
    env = EmgConditioner(FS, emg.shape[1], max_chunk=emg.shape[0]).process(emg).copy()
    mvc = np.percentile(env[1000:], 99.5, axis=0)
    act = ActivationDynamics(emg.shape[1], FS, max_chunk=emg.shape[0]).process(env / mvc).copy()
    W, _ = nmf(act[1000::20], K, max_iter=200)
    return emg, mvc, W, cfg.estimator.activation


def bench_streaming(
    emg: np.ndarray,
    mvc: np.ndarray,
    W: np.ndarray,
    act_cfg: Any,
    per_tick: int,
    clock: Any = time.perf_counter_ns,
    stages_too: bool = True,
):
    chain = TimedChain.build(FS, mvc, W, act_cfg)
    n_ticks = emg.shape[0] // per_tick
    total = np.empty(n_ticks, dtype=np.int64)
    stages = np.zeros((n_ticks, 3), dtype=np.int64)
    H = np.empty((n_ticks, W.shape[1]))
    for i in range(n_ticks):
        x = emg[i * per_tick : (i + 1) * per_tick]
        if stages_too:
            h, t0, t3 = chain.tick(x, clock, stages[i])
        else:
            t0 = clock()
            h = chain.nnls.solve(chain.act.process(chain.cond.process(x))[-1])
            t3 = clock()
        H[i] = h
        total[i] = t3 - t0
    return total, stages, H


def _set_fifo(priority: int) -> str:
    """SCHED_FIFO as the deployed control thread would run (ros2_control asks for 50)."""
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO {priority}"
    except (AttributeError, PermissionError, OSError) as e:
        return f"SCHED_FIFO refused ({e.__class__.__name__})"


def _set_normal() -> None:
    with contextlib.suppress(AttributeError, PermissionError, OSError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))


def bench_naive(
    emg: np.ndarray, mvc: np.ndarray, W: np.ndarray, act_cfg: Any, per_tick: int, n_ticks: int
):
    m = emg.shape[1]
    pre = signal.butter(4, [20.0, 450.0], "bandpass", fs=FS, output="sos")
    post = signal.butter(2, 6.0, "lowpass", fs=FS, output="sos")
    ref = ActivationDynamics(
        m, FS, c1=act_cfg.c1, c2=act_cfg.c2, reference_rate_hz=act_cfg.reference_rate_hz
    )
    b, a_coef = [ref.alpha[0]], [1.0, ref.beta1[0], ref.beta2[0]]
    A = act_cfg.shape_a
    d = int(round(act_cfg.delay_s * FS))
    win = int(WINDOW_S * FS)
    start_tick = win // per_tick + 1
    total = np.empty(n_ticks, dtype=np.int64)
    H = np.empty((n_ticks, W.shape[1]))
    clock = time.perf_counter_ns
    for j in range(n_ticks):
        end = (start_tick + j) * per_tick
        t0 = clock()
        x = emg[end - win : end]
        env = signal.sosfiltfilt(post, np.abs(signal.sosfiltfilt(pre, x, axis=0)), axis=0) / mvc
        e = np.clip(env, 0.0, 1.0)
        if d:
            e = np.vstack([np.zeros((d, m)), e[:-d]])
        u = signal.lfilter(b, a_coef, e, axis=0)
        act = (np.exp(A * u[-1]) - 1.0) / (np.exp(A) - 1.0)
        h, _ = optimize.nnls(W, act)
        total[j] = clock() - t0
        H[j] = h
    return total, H, start_tick


def run(seconds: float = 20.0, naive_ticks: int = 400, rt: bool = True) -> dict[str, Any]:
    emg, mvc, W, act_cfg = _setup(seconds)
    results: dict[str, Any] = {
        "channels": emg.shape[1],
        "emg_rate_hz": FS,
        "synergies": K,
        "naive_window_s": WINDOW_S,
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "load_average_at_start": list(os.getloadavg()),
        "gc": "enabled" if gc.isenabled() else "disabled",
        "ticks": {},
    }
    for rate in (500, 1000):
        per_tick = int(FS // rate)
        # warm-up (first calls, caches), then the measured passes on fresh objects
        bench_streaming(emg[: 200 * per_tick], mvc, W, act_cfg, per_tick)
        total, stages, H_fast = bench_streaming(emg, mvc, W, act_cfg, per_tick)
        # the chain's own CPU cost, without the time other processes take from it
        cpu, _, _ = bench_streaming(
            emg, mvc, W, act_cfg, per_tick, clock=time.thread_time_ns, stages_too=False
        )
        fifo = None
        if rt:
            sched = _set_fifo(50)
            try:
                if sched.startswith("SCHED_FIFO 50"):
                    fifo, _, _ = bench_streaming(emg, mvc, W, act_cfg, per_tick, stages_too=False)
            finally:
                _set_normal()
            results["rt_scheduling"] = sched
        naive, H_naive, start_tick = bench_naive(emg, mvc, W, act_cfg, per_tick, naive_ticks)
        fast = _stats(total)
        slow = _stats(naive)
        r: dict[str, Any] = {
            "samples_per_tick": per_tick,
            "streaming": fast,
            "streaming_cpu_time": _stats(cpu),
            "streaming_stage_median_us": {
                "dsp": float(np.median(stages[:, 0]) / 1000),
                "activation": float(np.median(stages[:, 1]) / 1000),
                "nnls": float(np.median(stages[:, 2]) / 1000),
            },
            "streaming_stage_p99_us": {
                "dsp": float(np.percentile(stages[:, 0], 99) / 1000),
                "activation": float(np.percentile(stages[:, 1], 99) / 1000),
                "nnls": float(np.percentile(stages[:, 2], 99) / 1000),
            },
            "naive": slow,
            "ratio_median": slow["median_us"] / fast["median_us"],
            "ratio_p99": slow["p99_us"] / fast["p99_us"],
            # how far the causal chain is from the zero-phase one at the same ticks (same units
            # as h): the price of causality, not an error
            "h_mean_abs_diff": float(
                np.mean(np.abs(H_fast[start_tick : start_tick + naive_ticks] - H_naive))
            ),
        }
        if fifo is not None:
            r["streaming_fifo"] = _stats(fifo)
        results["ticks"][f"{rate}Hz"] = r
    results["load_average_at_end"] = list(os.getloadavg())
    return results


def _print(res: dict[str, Any]) -> None:
    la = res["load_average_at_start"]
    print(
        f"signal chain, {res['channels']} channels at {res['emg_rate_hz']:g} Hz, K={res['synergies']}, "
        f"{res['cpus']} CPUs (load average {la[0]:.2f} at start, "
        f"{res['load_average_at_end'][0]:.2f} at end), Python {res['python']}, numpy {res['numpy']}"
    )
    for name, r in res["ticks"].items():
        f, s, st = r["streaming"], r["naive"], r["streaming_stage_median_us"]
        c = r["streaming_cpu_time"]
        print(f"  ticks at {name} ({r['samples_per_tick']} samples/tick), per tick:")
        print(
            f"    streaming, wall clock     median {f['median_us']:6.1f} us  p99 {f['p99_us']:7.1f} us"
            f"  max {f['max_us']:7.0f} us  ({f['ticks']} ticks; medians: dsp {st['dsp']:.1f}, "
            f"activation {st['activation']:.1f}, nnls {st['nnls']:.1f} us)"
        )
        print(
            f"    streaming, thread CPU     median {c['median_us']:6.1f} us  p99 {c['p99_us']:7.1f} us"
            f"  max {c['max_us']:7.0f} us"
        )
        if "streaming_fifo" in r:
            q = r["streaming_fifo"]
            print(
                f"    streaming, {res['rt_scheduling']}  median {q['median_us']:6.1f} us  p99 "
                f"{q['p99_us']:7.1f} us  max {q['max_us']:7.0f} us"
            )
        print(
            f"    naive (sosfiltfilt {res['naive_window_s']:g} s window + fresh nnls), wall: median "
            f"{s['median_us']:.0f} us, p99 {s['p99_us']:.0f} us ({s['ticks']} ticks)"
        )
        print(
            f"    streaming is {r['ratio_median']:.0f}x faster (medians), {r['ratio_p99']:.0f}x (p99s, "
            "wall clock)"
        )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=20.0, help="EMG seconds streamed per rate")
    p.add_argument("--naive-ticks", type=int, default=400)
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    p.add_argument(
        "--no-gc", action="store_true", help="disable the garbage collector while timing"
    )
    p.add_argument("--no-rt", action="store_true", help="do not try SCHED_FIFO for a third pass")
    args = p.parse_args(argv)
    if args.no_gc:
        gc.disable()
    res = run(args.seconds, args.naive_ticks, rt=not args.no_rt)
    if args.no_gc:
        res["gc"] = "disabled"
    _print(res)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
