"""The model's rate (``estimator.model_every_ticks``): accuracy, estimator CPU and latency per k.

For each k, in one run with k = 1 (the model every tick) first as the reference:

- ``exoctl hil --duration D --json`` with the default configuration and the setting (a config
  override file): R^2 per joint of the synthetic patient (synthetic figures), EMG -> command
  latency p50/p99 (from the sample's host arrival to the write of the first command computed
  from it, so the hold counts), deadline misses;
- with ``--replay-model M.onnx``, also ``exoctl hil --replay DATA --trial T --from S --model M``
  (the live R^2 against the recording's measured moments) and ``exoctl evaluate`` on the same
  span (offline, the value held the same way);
- the estimator's CPU per tick in this process (thread CPU time around ``Estimator.step``, the
  ks interleaved): the cost without a loaded machine's scheduling;
- the estimator process's CPU share of one core: (utime + stime) deltas from /proc/PID/stat of
  the run's estimator process (found under the run's own process tree by parent pid, never by
  name), the median of its 1 s windows after its first 3 s (start-up and model load), which in
  a D s session are the session's.

    python -m bench.bench_model_rate --ks 1 2 4 --duration 30 \\
        [--replay-model M.onnx --replay-from 48.868] --out /tmp/model_rate.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import write_config
from bench.process_tree import tree_sample

ESTIMATOR = "exoctl.runtime.estimator_process"
DATA = Path(__file__).resolve().parents[1] / "datasets" / "ceinms-lowerlimb-s06.yaml"
VALIDATION_FROM = 39.1
"""walk36's validation part: ``exoctl train`` (holdout 0.2) fits on the first 80 % of the
first 80 % of the trial and keeps the last fifth of it (39.1-48.868 s) for its choices."""


def _run(cmd: list[str], tries: int = 2) -> tuple[dict[str, Any], dict[str, Any]]:
    """``_run_once``, again after a failed run (a loaded machine can keep a bench from
    starting); the failures are kept in the result."""
    failures = []
    for _ in range(tries):
        try:
            out, cost = _run_once(cmd)
            return out, {**cost, "failed_runs": failures}
        except RuntimeError as e:
            failures.append(str(e).splitlines()[-1][-300:])
    raise RuntimeError("; ".join(failures))


def _run_once(cmd: list[str], period_s: float = 0.25) -> tuple[dict[str, Any], dict[str, Any]]:
    """Run an exoctl command (JSON on stdout) while sampling its estimator process's CPU."""
    t_start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    series: list[tuple[float, float]] = []  # (time, cpu seconds) of the estimator process
    pid = None
    while proc.poll() is None:
        for p, f in tree_sample(proc.pid).items():
            if ESTIMATOR in f["args"] and (pid is None or p == pid):
                pid = p
                series.append((time.monotonic(), f["cpu_s"]))
        time.sleep(period_s)
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {err[-2000:]}")
    return json.loads(out), {
        "cpu_share_median": _median_share(series),
        "wall_s": round(time.monotonic() - t_start, 1),
    }


def _median_share(series: list[tuple[float, float]]) -> float | None:
    if not series:
        return None
    t0 = series[0][0] + 3.0
    pts = [s for s in series if s[0] >= t0]
    shares, i = [], 0
    for j in range(1, len(pts)):
        if pts[j][0] - pts[i][0] >= 1.0:
            shares.append((pts[j][1] - pts[i][1]) / (pts[j][0] - pts[i][0]))
            i = j
    if not shares:
        return None
    shares.sort()
    return round(shares[len(shares) // 2], 4)


def _evaluate(cfg: Path, model: Path, args: list[str]) -> dict[str, Any]:
    cmd = _exoctl(cfg, "evaluate", "--model", str(model), *args, "--json")
    return json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)


def _exoctl(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "exoctl.cli", "--config", str(config), *args]


def _synthetic(s: dict[str, Any], cost: dict[str, Any]) -> dict[str, Any]:
    return {
        "r2": s["r2"],
        "latency_ms": s["latency_ms"],
        "deadline_misses": s["deadline_misses"],
        "control_rate_hz": s["control_rate_hz"],
        "faults": [f.get("kind") for f in s.get("faults", [])],
        "estimator_cpu_share": cost["cpu_share_median"],
        "failed_runs": cost["failed_runs"],
    }


def measure(
    ks: list[int],
    duration: float,
    model: Path | None,
    start: float,
    synthetic: bool = True,
    replay_realtime: bool = False,
    cpu_seconds: float = 4.0,
) -> dict[str, Any]:
    rows = []
    cpu = step_cpu(ks, cpu_seconds)
    print(json.dumps({"step_cpu": cpu}), flush=True)
    with tempfile.TemporaryDirectory(prefix="model_rate_") as tmp:
        for k in ks:
            cfg = write_config(Path(tmp) / f"k{k}.yaml", estimator={"model_every_ticks": k})
            row: dict[str, Any] = {"k": k, "load_before": os.getloadavg()[0], **cpu[k]}
            if synthetic:
                s, cost = _run(_exoctl(cfg, "hil", "--duration", str(duration), "--json"))
                row["synthetic"] = _synthetic(s, cost)
            if model is not None:
                if replay_realtime:  # the HIL tests' set-up: the bench above other load
                    cfg = write_config(
                        Path(tmp) / f"k{k}rt.yaml",
                        estimator={"model_every_ticks": k},
                        service={"realtime_priority": 50},
                        simulator={"realtime_priority": 60},
                    )
                    row["replay_realtime"] = True
                args = ["--data", str(DATA), "--trials", "walk36", "--from", str(start)]
                off = _evaluate(cfg, model, args)
                # the model's own validation part (the end of its training 80 %): where k is
                # chosen, never on the held-out part
                val = _evaluate(
                    cfg,
                    model,
                    [
                        "--data",
                        str(DATA),
                        "--trials",
                        "walk36",
                        "--from",
                        str(VALIDATION_FROM),
                        "--to",
                        str(start),
                    ],
                )
                row["validation"] = {j: v["r2"] for j, v in val["joints"].items()}
                r, rcost = _run(
                    _exoctl(cfg, "hil", "--replay", str(DATA), "--trial", "walk36", "--from",
                            str(start), "--model", str(model), "--json")
                )  # fmt: skip
                rp = r["replay"]
                row["replay"] = {
                    "live_r2": {j: v["r2"] for j, v in rp["live"].items()},
                    "offline_same_ticks_r2": {j: v["r2"] for j, v in rp.get("offline", {}).items()},
                    "scored_ticks": rp["scored_ticks"],
                    "latency_ms": r["latency_ms"],
                    "deadline_misses": r["deadline_misses"],
                    "faults": [f.get("kind") for f in r.get("faults", [])],
                    "estimator_cpu_share": rcost["cpu_share_median"],
                    "failed_runs": rcost["failed_runs"],
                }
                row["evaluate"] = {
                    "r2": {j: v["r2"] for j, v in off["joints"].items()},
                    "scored_ticks": off["scored_ticks"],
                    "model_every_ticks": off["model_every_ticks"],
                }
            row["load_after"] = os.getloadavg()[0]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"ks": ks, "duration_s": duration, "model": str(model) if model else None,
            "rows": rows}  # fmt: skip


def step_cpu(ks: list[int], seconds: float = 4.0, repeats: int = 3) -> dict[int, dict[str, float]]:
    """The estimator's CPU per control tick in this process (``time.thread_time`` around
    ``Estimator.step``, the shipped network and calibration, the synthetic patient's EMG one
    tick at a time): what each k costs without the scheduling of a loaded machine. The
    repeats interleave the ks; the median of the repeats' means, and that as a share of one
    core at the tick rate."""
    from exoctl.config.schema import load_config
    from exoctl.data.patient import patient_from_config
    from exoctl.estimation.estimator import build_estimator

    base = load_config()
    emg = patient_from_config(base, session=5).generate(seconds + 1.0).emg
    n = round(base.emg.sampling_rate_hz / base.tick_rate_hz)
    ticks = emg.shape[0] // n
    per: dict[int, list[float]] = {k: [] for k in ks}
    for _ in range(repeats):
        for k in ks:
            est = build_estimator(base.with_overrides(estimator={"model_every_ticks": k}))
            for i in range(200):  # first calls, caches
                est.step(emg[i * n : (i + 1) * n])
            t0 = time.thread_time()
            for i in range(200, ticks):
                est.step(emg[i * n : (i + 1) * n])
            per[k].append((time.thread_time() - t0) / (ticks - 200))
    out = {}
    for k, v in per.items():
        med = sorted(v)[len(v) // 2]
        out[k] = {
            "us_per_tick": round(med * 1e6, 1),
            "core_share": round(med * base.tick_rate_hz, 4),
        }
    return out


def run(quick: bool = False) -> dict[str, Any]:
    """``make bench``'s section: the synthetic HIL per k (the replay needs a trained model)."""
    return measure(
        [1, 2, 4], 5.0 if quick else 30.0, None, 48.868, cpu_seconds=1.0 if quick else 4.0
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--replay-model", type=Path, default=None)
    ap.add_argument("--replay-from", type=float, default=48.868)
    ap.add_argument("--no-synthetic", action="store_true", help="only the replay and evaluate")
    ap.add_argument("--replay-realtime", action="store_true", help="replay at SCHED_FIFO 50/60")
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = measure(
        a.ks, a.duration, a.replay_model, a.replay_from, not a.no_synthetic, a.replay_realtime
    )
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
