"""Size and time of a session's exports (Parquet, CSV, NPZ) and of its report.

Input: a real recording (``python -m bench.session_recording`` makes one with the HIL simulator
and the daemon), or ``--record`` to make one first. Every format is exported ``--repeat``
times into a temporary directory; the median wall and CPU times are reported beside the
reference measured in the same run: reading every stream out of the SQLite file (what any export must
do first). Sizes are the bytes on disk of everything an export wrote, beside the size of the
recording itself.

    .venv/bin/python -m bench.bench_export --db /tmp/exo-rec/data/SIM-P01/<id>.sqlite
    .venv/bin/python -m bench.bench_export --record /tmp/exo-rec --minutes 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from exoctl.recordings import store
from exoctl.recordings.export import export_session

CASES = (
    ("parquet (default: no raw EMG, float32)", {"fmt": "parquet"}),
    ("parquet + raw EMG", {"fmt": "parquet", "raw_emg": True}),
    ("parquet + raw EMG, exact (float64)", {"fmt": "parquet", "raw_emg": True, "exact": True}),
    ("csv (default: no raw EMG, float32)", {"fmt": "csv"}),
    ("csv + raw EMG, exact (float64)", {"fmt": "csv", "raw_emg": True, "exact": True}),
    ("npz + raw EMG", {"fmt": "npz", "raw_emg": True}),
)


def _size(paths: list[Path]) -> int:
    return sum(p.stat().st_size for p in paths)


def _read_all(db: Path) -> None:
    with store.open_session_db(db) as conn:
        for s in store.stream_names(conn):
            store.read_table(conn, s)


def _median_time(fn: Any, repeat: int) -> tuple[float, float, Any]:
    """Median wall and CPU seconds (this process, every thread) of ``repeat`` calls. On a
    loaded machine the wall time waits for a core; the CPU time is what the work costs."""
    walls, cpus, out = [], [], None
    for _ in range(repeat):
        w0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        cpus.append(time.process_time() - c0)
        walls.append(time.perf_counter() - w0)
    return statistics.median(walls), statistics.median(cpus), out


def run(db: Path, repeat: int = 3, report: bool = True) -> dict[str, Any]:
    with store.open_session_db(db) as conn:
        info = store.session_info(conn)
        per_stream = {
            s: conn.execute("SELECT sum(n) FROM chunks WHERE stream=?", (s,)).fetchone()[0]
            for s in store.stream_names(conn)
        }
    ref_s, ref_cpu, _ = _median_time(lambda: _read_all(db), repeat)
    out: dict[str, Any] = {
        "recording": str(db),
        "duration_s": info["duration_s"],
        "samples_per_stream": per_stream,
        "sqlite_bytes": db.stat().st_size,
        "reference_read_all_streams_s": round(ref_s, 3),
        "reference_read_all_streams_cpu_s": round(ref_cpu, 3),
        "load_average": os.getloadavg(),
        "exports": {},
    }
    for name, kw in CASES:
        tmp = Path(tempfile.mkdtemp(prefix="exo-export-"))
        try:
            target = tmp / ("x.npz" if kw["fmt"] == "npz" else "x")

            def go(target: Path = target, kw: dict[str, Any] = kw) -> list[Path]:
                if target.exists():
                    shutil.rmtree(target) if target.is_dir() else target.unlink()
                return export_session(db, None, out=target, **kw)

            secs, cpu, files = _median_time(go, repeat)
            out["exports"][name] = {
                "bytes": _size(files),
                "megabytes": round(_size(files) / 1e6, 2),
                "median_s": round(secs, 3),
                "median_cpu_s": round(cpu, 3),
                "x_reference": round(secs / ref_s, 2),
                "files": {p.name: p.stat().st_size for p in files},
            }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if report:
        from exoctl.recordings.report import build_report

        secs, cpu, text = _median_time(lambda: build_report(db), repeat)
        out["report"] = {"median_s": round(secs, 3), "median_cpu_s": round(cpu, 3),
                         "bytes": len(text.encode())}  # fmt: skip
    out["load_average_at_end"] = os.getloadavg()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, help="a session's .sqlite file")
    ap.add_argument("--record", type=Path, help="record a session first, in this directory")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args()
    db = a.db
    if db is None:
        if a.record is None:
            ap.error("give --db or --record")
        from bench.session_recording import record

        rec = record(a.record, a.minutes, history=0)
        db = store.find_session(rec["data_dir"], rec["sessions"][-1])
    print(json.dumps(run(db, a.repeat), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
