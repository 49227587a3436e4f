"""`make bench`: every benchmark in bench/, one run, one JSON and one Markdown report with plots.

    .venv/bin/python -m bench                    # everything (< 15 min on 2 cores)
    .venv/bin/python -m bench --quick            # tiny sizes, no LibEMG install (smoke test)
    .venv/bin/python -m bench --only pipeline,scaling
    .venv/bin/python -m bench --list
    .venv/bin/python -m bench --only realtime --vs main      # the real-time targets
    .venv/bin/python -m bench --only realtime_quota --quota-seconds 60   # opt-in, long

Sections run one after the other in this process (so figures measured side by side come from
one run on one machine state). The component benchmarks (``bench_signal_chain``,
``bench_protocol``, ``bench_loop``, ``bench_inference``, and any other ``bench/bench_*.py``)
are called through their ``run()``; one that is missing or has no ``run()`` is reported as
skipped, with the reason, and the rest goes on; so is one that needs a package that is not
installed (ImportError: PyTorch is the optional ``train`` extra). A section that raises anything
else is reported as failed with its error (exit status 1); the others still run. Output: ``bench/results/latest.json``,
``bench/results/latest.md`` and ``bench/results/*.svg`` (none of them committed).
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import inspect
import json
import math
import subprocess
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.common import REPO, machine

RESULTS = REPO / "bench" / "results"


@dataclass
class Section:
    name: str
    module: str
    func: str = "run"
    owner: str = ""
    what: str = ""
    quick_kwargs: dict = field(default_factory=dict)
    full_kwargs: dict = field(default_factory=dict)
    ours: bool = False  # our functions take quick/libemg/log
    opt_in: bool = False  # long: runs only when --only names it


SECTIONS = [
    Section(
        "signal_chain",
        "bench.bench_signal_chain",
        owner="signal chain",
        what="signal chain per tick vs naive filtfilt + fresh NNLS",
        quick_kwargs={"seconds": 2.0, "naive_ticks": 40, "rt": False},
    ),
    Section(
        "protocol",
        "bench.bench_protocol",
        owner="serial protocol",
        what="codec cost, serial round trip over a pty",
        quick_kwargs={"seconds": 0.3},
    ),
    Section(
        "loop",
        "bench.bench_loop",
        owner="control loop",
        what="1 kHz loop with/without real-time setup",
        quick_kwargs={"quick": True},
        full_kwargs={"seconds": 20.0},  # 5 variants (3 ours, 2 today's) within the 15 min
    ),
    Section(
        "tick",
        "bench.bench_tick",
        owner="control tick",
        what="whole control tick per stage, thread CPU, today's code vs this branch",
        quick_kwargs={"quick": True},
    ),
    Section(
        "tick_hil",
        "bench.bench_tick_whole",
        "run_hil",
        owner="control tick",
        what="exoctl hil --duration 30: rate, misses, latency, today's code vs this branch",
        quick_kwargs={"quick": True},
    ),
    Section(
        "tick_daemon",
        "bench.bench_tick_whole",
        "run_daemon",
        owner="control tick",
        what="exoctl daemon CPU and RSS, idle and in a session, today's code vs this branch",
        quick_kwargs={"quick": True},
    ),
    Section(
        "inference",
        "bench.bench_inference",
        owner="training",
        what="ONNX per-tick inference of the paper's network",
        quick_kwargs={"quick": True},
    ),
    Section(
        "pipeline",
        "bench.bench_end_to_end",
        "run_pipeline",
        owner="end to end",
        what="whole per-tick pipeline vs naive and LibEMG peers",
        ours=True,
    ),
    Section(
        "session",
        "bench.bench_end_to_end",
        "run_session",
        owner="end to end",
        what="HIL session at 500 Hz and 1 kHz: tick error, latency, memory, CPU",
        ours=True,
    ),
    Section(
        "daemon",
        "bench.bench_end_to_end",
        "run_daemon",
        owner="end to end",
        what="exoctl daemon in a session against exoctl sim: peak RSS, CPU share, loop",
        ours=True,
    ),
    Section(
        "scaling",
        "bench.bench_scaling",
        owner="end to end",
        what="per-tick cost vs channels, synergies, control rate",
        ours=True,
    ),
    Section(
        "accuracy",
        "bench.bench_accuracy",
        owner="end to end",
        what="R^2 per joint: simulated patients across sessions (synthetic), and the real-data "
        "protocol's within-trial rows and moco chain check (exoctl evaluate --protocol real)",
        ours=True,
    ),
    Section(
        "cli_start",
        "bench.bench_cli_start",
        owner="clinician CLI",
        what="exoctl estop / status end to end vs python -c pass; e-stop from the CLI to zero "
        "torque in a session (exoctl sim + daemon)",
        ours=True,
    ),
    Section(
        "realtime",
        "bench.bench_realtime",
        owner="real-time path",
        what="every target of the real-time path (loop thread CPU per tick, 1 kHz loop alone "
        "and beside busy cores, exoctl hil, daemon tree CPU and PSS) beside today's code (--vs)",
        ours=True,
    ),
    Section(
        "realtime_soak",
        "bench.bench_realtime",
        "run_soak",
        owner="real-time path",
        what="opt-in: one bench-up session of --soak-seconds (default 30 min): faults latched",
        ours=True,
        opt_in=True,
    ),
    Section(
        "realtime_quota",
        "bench.bench_realtime",
        "run_quota",
        owner="real-time path",
        what="opt-in: the daemon under cpu.max 5000 10000 for --quota-seconds (default 5 min)",
        ours=True,
        opt_in=True,
    ),
]
_OWN_FILES = {
    "bench_end_to_end",
    "bench_scaling",
    "bench_accuracy",
    "bench_tick",
    "bench_cli_start",
    "bench_realtime",
}


def all_sections() -> list[Section]:
    """The known sections, plus any other bench/bench_*.py (its owner's ``run()``)."""
    known = {s.module.rsplit(".", 1)[1] for s in SECTIONS}
    extra = [
        Section(p.stem.removeprefix("bench_"), f"bench.{p.stem}", owner="(found in bench/)")
        for p in sorted((REPO / "bench").glob("bench_*.py"))
        if p.stem not in known and p.stem not in _OWN_FILES
    ]
    return SECTIONS + extra


def _call(
    sec: Section, quick: bool, libemg: bool, extra: dict[str, Any] | None = None
) -> tuple[str, str, Any]:
    """(status, reason, result) of one section."""
    path = REPO / (sec.module.replace(".", "/") + ".py")
    if not path.is_file():
        return "skipped", f"{path.relative_to(REPO)} does not exist (yet)", None
    mod = importlib.import_module(sec.module)
    fn = getattr(mod, sec.func, None)
    if not callable(fn):
        return "skipped", f"{path.relative_to(REPO)} has no {sec.func}() to call", None
    if sec.ours:
        kw: dict[str, Any] = {"quick": quick, "log": lambda m: print(m, flush=True)}
        params = inspect.signature(fn).parameters
        if "libemg" in params:
            kw["libemg"] = libemg
        kw.update({k: v for k, v in (extra or {}).items() if k in params and v is not None})
        return "ok", "", fn(**kw)
    params = inspect.signature(fn).parameters
    wanted = sec.quick_kwargs if quick else sec.full_kwargs
    if quick and "quick" in params:
        wanted = {**wanted, "quick": True}
    kw = {k: v for k, v in wanted.items() if k in params}
    if "log" in params:
        kw["log"] = lambda m: print(f"  {m}", flush=True)
    dropped = sorted(set(wanted) - set(kw))
    res = fn(**kw)
    note = f"called without {dropped} (not in its run() signature)" if quick and dropped else ""
    return "ok", note, res


def _clean(x: Any) -> Any:
    """Strict JSON: NaN/inf -> null, numpy scalars/arrays -> Python."""
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_clean(v) for v in x]
    if hasattr(x, "tolist"):
        return _clean(x.tolist())
    if isinstance(x, Path):
        return str(x)
    return x


def _git(*args: str) -> str | None:
    try:
        p = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=5)
        return p.stdout.strip() if p.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def _positive(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not v > 0 or not math.isfinite(v):
        raise argparse.ArgumentTypeError(f"{text!r}: give a positive number of seconds")
    return v


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes for a smoke test (~30 s)")
    ap.add_argument("--only", default="", help="comma-separated section names (see --list)")
    ap.add_argument("--list", action="store_true", help="list the sections and exit")
    ap.add_argument("--no-libemg", action="store_true", help="skip the LibEMG peer")
    ap.add_argument("--out", type=Path, default=RESULTS, help="output directory")
    ap.add_argument("--vs", default=None, help="realtime sections: today's code is this git ref "
                    "(default: the merge base with main)")  # fmt: skip
    ap.add_argument("--soak-seconds", type=_positive, default=None,
                    help="realtime_soak: the session's length (default 1800)")  # fmt: skip
    ap.add_argument("--quota-seconds", type=_positive, default=None,
                    help="realtime_quota: the session's length (default 300)")  # fmt: skip
    args = ap.parse_args(argv)
    extra = {"vs": args.vs}
    sections = all_sections()
    if args.list:
        for s in sections:
            print(f"{s.name:<14} {s.module:<28} {s.owner:<24} {s.what}")
        print("(opt-in sections run only when --only names them)")
        return 0
    only = [x.strip() for x in args.only.split(",") if x.strip()]
    unknown = sorted(set(only) - {s.name for s in sections})
    if unknown:
        ap.error(f"unknown section(s) {unknown}; known: {[s.name for s in sections]}")
    chosen = [s for s in sections if s.name in only or (not only and not s.opt_in)]

    t_start = time.monotonic()
    doc: dict[str, Any] = {
        "started_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "mode": "quick" if args.quick else "full",
        "command": "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:]),
        "git_commit": _git("rev-parse", "--short", "HEAD"),
        "git_dirty": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "machine": machine(),
        "sections": {},
    }
    for sec in chosen:
        print(f"[bench] {sec.name}: {sec.what} ...", flush=True)
        t0 = time.monotonic()
        try:
            seconds = {"realtime_soak": args.soak_seconds, "realtime_quota": args.quota_seconds}
            status, reason, res = _call(
                sec, args.quick, not args.no_libemg, {**extra, "seconds": seconds.get(sec.name)}
            )
        except ImportError as e:  # an optional dependency (e.g. PyTorch, the train extra)
            status, reason, res = "skipped", f"needs a package that is not installed: {e}", None
        except Exception as e:
            status, reason, res = "error", f"{type(e).__name__}: {e}", None
            traceback.print_exc()
        took = round(time.monotonic() - t0, 1)
        print(f"[bench] {sec.name}: {status} in {took} s {reason}", flush=True)
        standalone = f"python -m bench --only {sec.name}" + (" --quick" if args.quick else "")
        doc["sections"][sec.name] = {
            "status": status,
            "reason": reason,
            "seconds": took,
            "module": sec.module,
            "owner": sec.owner,
            "what": sec.what,
            "command": standalone,
            "result": res,
        }
    doc["total_seconds"] = round(time.monotonic() - t_start, 1)
    doc["machine"]["load_average_at_end"] = machine()["load_average"]
    doc = _clean(doc)

    from bench import report

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "latest.json").write_text(json.dumps(doc, indent=2) + "\n")
    md = report.write(doc, args.out)
    print(f"[bench] done in {doc['total_seconds']} s: {args.out / 'latest.json'}, {md}")
    return 0 if all(s["status"] != "error" for s in doc["sections"].values()) else 1


if __name__ == "__main__":
    raise SystemExit(main())
