"""The model's rate (``estimator.model_every_ticks``): accuracy, estimator CPU and latency per k.

For each k, in one run with k = 1 (the model every tick) first as the reference:

- ``exoctl hil --duration D --json`` with the default configuration and the setting (a config
  override file): R^2 per joint of the synthetic patient (synthetic figures), EMG -> command
  latency p50/p99 (from the sample's host arrival to the write of the first command computed
  from it, so the hold counts), deadline misses;
- with ``--replay-model M.onnx``, also ``exoctl hil --replay DATA --trial T --from S --model M``
  (the live R^2 against the recording's measured moments) and ``exoctl evaluate`` on the same
  span (offline, the value held the same way);
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


def _run(cmd: list[str], period_s: float = 0.25) -> tuple[dict[str, Any], dict[str, Any]]:
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


def _exoctl(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "exoctl.cli", "--config", str(config), *args]


def measure(ks: list[int], duration: float, model: Path | None, start: float) -> dict[str, Any]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="model_rate_") as tmp:
        for k in ks:
            cfg = write_config(Path(tmp) / f"k{k}.yaml", estimator={"model_every_ticks": k})
            row: dict[str, Any] = {"k": k, "load_before": os.getloadavg()[0]}
            s, cost = _run(_exoctl(cfg, "hil", "--duration", str(duration), "--json"))
            row["synthetic"] = {
                "r2": s["r2"],
                "latency_ms": s["latency_ms"],
                "deadline_misses": s["deadline_misses"],
                "control_rate_hz": s["control_rate_hz"],
                "faults": [f.get("kind") for f in s.get("faults", [])],
                "estimator_cpu_share": cost["cpu_share_median"],
            }
            if model is not None:
                args = ["--data", str(DATA), "--trials", "walk36", "--from", str(start)]
                off = json.loads(
                    subprocess.run(
                        _exoctl(cfg, "evaluate", "--model", str(model), *args, "--json"),
                        capture_output=True, text=True, check=True,
                    ).stdout
                )  # fmt: skip
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


def run(quick: bool = False) -> dict[str, Any]:
    """``make bench``'s section: the synthetic HIL per k (the replay needs a trained model)."""
    return measure([1, 2, 4], 5.0 if quick else 30.0, None, 48.868)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--replay-model", type=Path, default=None)
    ap.add_argument("--replay-from", type=float, default=48.868)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    res = measure(a.ks, a.duration, a.replay_model, a.replay_from)
    if a.out is not None:
        a.out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
