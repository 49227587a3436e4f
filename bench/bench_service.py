"""Cost of the service side, measured in one process, one run:

- the control thread's share of recording: ``Recorder.submit_chunk`` (copy + put_nowait) for
  a per-tick row, a 50-row batch and a 100 x 16 EMG chunk, and ``StreamWriter.append`` per
  tick (preallocated; one submit every ``batch`` calls);
- the writer thread: chunks committed per second when flooded, and the drops it takes;
- the control API: JSON-RPC round trip over the Unix socket (connect once, small request),
  and connect + call + close (what one CLI invocation costs on the socket side).

Medians and p99 of per-call times (perf_counter_ns). Nothing asserts: timing belongs here,
not in tests.

    .venv/bin/python bench/bench_service.py [--out bench/results/service.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from exoctl.recordings.recorder import Recorder  # noqa: E402
from exoctl.service import client as C  # noqa: E402
from exoctl.service import rpc  # noqa: E402


def pct(ns: list[int] | np.ndarray, scale: float = 1e-3) -> dict[str, float]:
    a = np.asarray(ns, dtype=float) * scale
    return {
        "p50": round(float(np.percentile(a, 50)), 2),
        "p99": round(float(np.percentile(a, 99)), 2),
        "max": round(float(a.max()), 2),
        "n": int(a.size),
    }


def bench_submit(tmp: Path, n: int = 5000) -> dict:
    out = {}
    rec = Recorder(tmp / "d1", queue_chunks=100000, flush_interval_s=0.5)
    rec.start_session("BENCH")
    try:
        for name, arr, kw in (
            ("row_4xf64", np.zeros(4), {}),
            ("batch_50x4_f64_with_t", np.zeros((50, 4)), {"t": np.zeros(50)}),
            ("emg_100x16_f32_with_t", np.zeros((100, 16), np.float32), {"t": np.zeros(100)}),
        ):
            ts = []
            for i in range(n):
                t0 = time.perf_counter_ns()
                rec.submit_chunk(name, float(i), arr, **kw)
                ts.append(time.perf_counter_ns() - t0)
            out[f"submit_chunk_{name}_us"] = pct(ts)
            rec.flush(60)
        w = rec.stream("tick", 4, batch=50)
        row = np.ones(4)
        ts = []
        for i in range(n * 5):
            t0 = time.perf_counter_ns()
            w.append(float(i), row)
            ts.append(time.perf_counter_ns() - t0)
        out["stream_writer_append_us"] = pct(ts)
        rec.flush(60)
    finally:
        rec.close()
    return out


def bench_writer(tmp: Path, seconds: float = 3.0) -> dict:
    rec = Recorder(tmp / "d2", queue_chunks=2048, flush_interval_s=0.5)
    rec.start_session("BENCH")
    chunk = np.zeros((50, 4))
    t = np.zeros(50)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        rec.submit_chunk("flood", 0.0, chunk, t=t)
        n += 1
    t0 = time.monotonic()
    rec.flush(120)
    drain = time.monotonic() - t0
    st = rec.stats()
    rec.close()
    written = st["written_chunks"]
    return {
        "flood_seconds": seconds,
        "submitted_attempts": n,
        "written_chunks": written,
        "dropped": st["dropped"],
        "written_chunks_per_s": round(written / (seconds + drain), 1),
        "rows_per_s_50_row_chunks": round(50 * written / (seconds + drain), 1),
    }


def bench_rpc(tmp: Path, n: int = 2000) -> dict:
    class H:
        RPC_METHODS = {"status": "status"}

        def status(self) -> dict:
            return {"ok": True, "loop": {"ticks": 1}}

    path = tmp / "ctl.sock"
    srv = rpc.RpcServer(path, rpc.methods_from(H()), allowed_users=["root"]).start()
    try:
        ts = []
        with C.Client(path) as c:
            for _ in range(n):
                t0 = time.perf_counter_ns()
                c.call("status")
                ts.append(time.perf_counter_ns() - t0)
        ts2 = []
        for _ in range(n // 4):
            t0 = time.perf_counter_ns()
            C.call(path, "status")
            ts2.append(time.perf_counter_ns() - t0)
    finally:
        srv.close()
    return {"rpc_round_trip_us": pct(ts), "connect_call_close_us": pct(ts2)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        res = {
            "machine": {"python": platform.python_version(), "platform": platform.platform()},
            **bench_submit(tmp),
            "writer": bench_writer(tmp),
            **bench_rpc(tmp),
        }
    text = json.dumps(res, indent=2)
    print(text)
    if a.out:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
