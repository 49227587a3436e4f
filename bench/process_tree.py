"""A process and all its descendants, found by parent pid (never by name): their CPU time,
resident and proportional memory, summed, as the daemon's cost is measured (its control-socket
process and its estimator process count with it)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any


def tree_pids(root: int) -> list[int]:
    """``root`` and every descendant, by parent pid (from /proc, not by name)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            stat = Path(f"/proc/{d}/stat").read_text()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def proc_facts(pid: int) -> dict[str, Any] | None:
    """CPU seconds, PSS (MiB; RSS where smaps_rollup is unreadable), name and cgroup."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    mem, kind = float("nan"), "pss"
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                mem = int(line.split()[1]) / 1024.0
    except OSError:
        kind = "rss"
        mem = int(fields[21]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    words = [c.decode(errors="replace") for c in cmd if c]
    exo = [w for w in words if not w.startswith("-") and "/" not in w and w != "exoctl.cli"]
    name = stat[stat.index("(") + 1 : stat.rindex(")")]
    cg: list[str] = []
    with contextlib.suppress(OSError):
        cg = Path(f"/proc/{pid}/cgroup").read_text().split()
    return {"pid": pid, "name": name, "args": " ".join(exo[-3:]), "cpu_s": cpu_s,
            "mem_mib": mem, "mem_kind": kind, "cgroup": cg}  # fmt: skip


def tree_sample(root: int) -> dict[int, dict[str, Any]]:
    return {p: f for p in tree_pids(root) if (f := proc_facts(p)) is not None}


def tree_window(a: dict[int, dict], b: dict[int, dict], span: float) -> dict[str, Any]:
    """CPU share of one core and memory of a process tree between two samples."""
    procs = []
    for pid, f in b.items():
        d = f["cpu_s"] - a.get(pid, {"cpu_s": 0.0})["cpu_s"]
        procs.append({"pid": pid, "name": f["name"], "args": f["args"],
                      "cpu_share": round(d / span, 4), "mem_mib": round(f["mem_mib"], 1)})  # fmt: skip
    kinds = sorted({f["mem_kind"] for f in b.values()})
    return {
        "cpu_share": round(sum(p["cpu_share"] for p in procs), 4),
        "mem_mib": round(sum(p["mem_mib"] for p in procs), 1),
        "mem_kind": "+".join(kinds),
        "processes": procs,
        "seconds": round(span, 2),
    }


def thread_sample(root: int) -> dict[tuple[int, int], dict[str, Any]]:
    """Every thread of ``root``'s tree: (pid, tid) -> its name, its process's and CPU seconds
    (``/proc/PID/task/TID/stat`` utime + stime); threads that end meanwhile are skipped."""
    out: dict[tuple[int, int], dict[str, Any]] = {}
    tck = os.sysconf("SC_CLK_TCK")
    for pid in tree_pids(root):
        try:
            tids = os.listdir(f"/proc/{pid}/task")
            args = " ".join(
                w.decode(errors="replace")
                for w in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[-3:]
                if w
            )
        except OSError:
            continue
        for tid in tids:
            try:
                stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            f = stat.rsplit(")", 1)[1].split()
            out[(pid, int(tid))] = {
                "name": stat[stat.index("(") + 1 : stat.rindex(")")],
                "process": args,
                "cpu_s": (int(f[11]) + int(f[12])) / tck,
            }
    return out


def thread_window(
    a: dict[tuple[int, int], dict], b: dict[tuple[int, int], dict], span: float, top: int = 12
) -> list[dict[str, Any]]:
    """The ``top`` threads by CPU share of one core between two ``thread_sample``s (threads
    alive at the end), busiest first: where an idle daemon's CPU goes, by thread name."""
    rows = []
    for key, f in b.items():
        d = f["cpu_s"] - a.get(key, {"cpu_s": f["cpu_s"]})["cpu_s"]
        rows.append({"pid": key[0], "tid": key[1], "thread": f["name"],
                     "process": f["process"], "cpu_share": round(d / span, 4)})  # fmt: skip
    rows.sort(key=lambda r: -r["cpu_share"])
    return rows[:top]
