"""Small helpers shared by the project-wide benchmarks: per-tick statistics, ratios, machine facts.

Why one place: every figure in the report is a median and a p99 over many ticks with the
warm-up discarded, and every comparison is a ratio of two such figures measured in the same
run; computing them the same way everywhere keeps the report's numbers comparable.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
WARMUP_TICKS = 200  # first calls (caches, lazy initialisation) are not measured


def tick_stats(ns: np.ndarray, discard: int = 0) -> dict[str, float]:
    """Median, p99, max (microseconds) and count of per-tick durations given in nanoseconds."""
    v = np.asarray(ns, dtype=np.float64)[discard:] / 1000.0
    if v.size == 0:
        return {"median_us": float("nan"), "p99_us": float("nan"), "max_us": float("nan"), "n": 0}
    return {
        "median_us": round(float(np.median(v)), 2),
        "p99_us": round(float(np.percentile(v, 99)), 2),
        "max_us": round(float(v.max()), 2),
        "n": int(v.size),
    }


def ratio(slow: dict | None, fast: dict | None, key: str) -> float | None:
    """slow[key] / fast[key], or None when either side is missing."""
    if not slow or not fast:
        return None
    a, b = slow.get(key), fast.get(key)
    if a is None or b is None or not b or not np.isfinite(a) or not np.isfinite(b):
        return None
    return round(float(a) / float(b), 2)


def ratios(slow: dict | None, fast: dict | None) -> dict[str, float | None]:
    return {"median": ratio(slow, fast, "median_us"), "p99": ratio(slow, fast, "p99_us")}


def machine() -> dict[str, Any]:
    """What the figures were measured on (they mean nothing without it)."""
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def proc_sample(pid: int) -> dict[str, float] | None:
    """CPU seconds (utime + stime) and peak/current RSS (MiB) of a process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu_s = (int(fields[11]) + int(fields[12])) / ticks  # utime, stime (fields 14, 15)
    mem = {}
    for line in status.splitlines():
        if line.startswith(("VmHWM:", "VmRSS:")):
            key, val = line.split(":", 1)
            mem[key] = int(val.split()[0]) / 1024.0
    return {
        "cpu_s": cpu_s,
        "hwm_mib": mem.get("VmHWM", float("nan")),
        "rss_mib": mem.get("VmRSS", float("nan")),
    }


def write_config(path: Path, **sections: Any) -> Path:
    """The default configuration with ``sections`` overridden (validated), written to ``path``
    as a plain YAML file that a child ``exoctl`` process reads."""
    import yaml

    from exoctl.config.schema import DEFAULT_CONFIG, load_config

    data = load_config(DEFAULT_CONFIG).with_overrides(**sections).model_dump(mode="json")
    data.pop("source", None)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def local_service(tmp: Path, user: str | None = None) -> dict[str, Any]:
    """Service settings with every file under ``tmp`` (never /var/lib or /run), the socket in
    the caller's own group, usable by ``user`` (default: whoever runs the benchmark)."""
    import getpass

    return {
        "data_dir": str(tmp / "data"),
        "socket_path": str(tmp / "run" / "control.sock"),
        "socket_group": None,
        "allowed_users": [user or getpass.getuser()],
        "allowed_groups": [],
    }


def joint_r2(y: np.ndarray, yhat: np.ndarray, joints) -> dict[str, float]:
    """R^2 per joint name (``exoctl.estimation.metrics.r2``), rounded for a report."""
    from exoctl.estimation.metrics import r2

    return {name: round(float(v), 4) for name, v in zip(joints, r2(y, yhat), strict=True)}


def daemon_config(tmp: Path, endpoints: dict[str, Any], realtime_priority: int = 0) -> Path:
    """``tmp/exoctl.yaml``: a daemon for the simulator at ``endpoints`` (its pty and LSL source
    id), every service file under ``tmp`` (never /var/lib or /run), no LSL outlets."""
    svc = {
        **local_service(tmp, "root"),
        "publish_lsl": False,
        "realtime_priority": realtime_priority,
    }
    return write_config(
        tmp / "exoctl.yaml",
        service=svc,
        device={"serial": {"port": endpoints["port"]}},
        emg={"lsl": {"source_id": endpoints["source_id"]}},
    )


class TimedChain:
    """The streaming signal chain as the estimator runs it (conditioning, activation dynamics,
    synergy NNLS), one tick at a time with each stage timed: the per-stage loop that the signal
    chain and scaling benchmarks share, so their stage figures mean the same."""

    def __init__(self, conditioner: Any, activation: Any, nnls: Any) -> None:
        self.cond, self.act, self.nnls = conditioner, activation, nnls

    @classmethod
    def build(
        cls, fs: float, mvc: np.ndarray, W: np.ndarray, act_cfg: Any, max_chunk: int = 64
    ) -> TimedChain:
        """The three stages made as the estimator makes them (an estimator's own stages can be
        handed to the constructor instead)."""
        from exoctl.signal.activation import ActivationDynamics
        from exoctl.signal.dsp import EmgConditioner
        from exoctl.signal.synergy import OnlineNNLS

        m = len(mvc)
        return cls(
            EmgConditioner(fs, m, mvc=mvc, max_chunk=max_chunk),
            ActivationDynamics.from_settings(m, fs, act_cfg, max_chunk=max_chunk),
            OnlineNNLS(W),
        )

    def tick(self, x: np.ndarray, clock: Any, stages: np.ndarray) -> tuple[np.ndarray, int, int]:
        """One tick's samples through the three stages; ``stages[:3]`` gets each one's time.
        Returns the last activation's synergy activations and the clock at start and end."""
        t0 = clock()
        e = self.cond.process(x)
        t1 = clock()
        a = self.act.process(e)
        t2 = clock()
        h = self.nnls.solve(a[-1])
        t3 = clock()
        stages[0], stages[1], stages[2] = t1 - t0, t2 - t1, t3 - t2
        self.last_activation = a[-1]
        return h, t0, t3
