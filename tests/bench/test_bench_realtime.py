"""bench_realtime's argument handling and its measuring parts that need no HIL session: the
process tree by parent pid, the CPU-quota cgroup, the target check. Timing is not asserted
here (it belongs to the benchmark)."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from bench import __main__ as aggregator
from bench import bench_realtime as B
from bench import cpu_quota, process_tree


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["quota", "--seconds", "0"], "positive number of seconds"),
        (["soak", "--seconds", "-5"], "positive number of seconds"),
        (["forever"], "invalid choice"),
        (["--only", "tick_cpu,speed"], "--only: speed: give some of"),
        (["--only", ","], "--only: nothing given"),
    ],
)
def test_bad_arguments_are_one_line_errors(argv, words, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        B.main(argv)
    assert e.value.code == 2 and words in capsys.readouterr().err


def test_aggregator_keeps_long_sections_opt_in(capsys) -> None:
    with pytest.raises(SystemExit) as e:
        aggregator.main(["--only", "realtime_quota", "--quota-seconds", "soon"])
    assert e.value.code == 2 and "'soon': give a positive number" in capsys.readouterr().err
    opt_in = {s.name for s in aggregator.all_sections() if s.opt_in}
    assert opt_in == {"realtime_soak", "realtime_quota"}


def test_tree_pids_finds_grandchildren_by_parent_pid() -> None:
    code = "import subprocess, sys, time; subprocess.Popen(['sleep', '30']); time.sleep(30)"
    p = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 10
        while len(pids := process_tree.tree_pids(p.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert pids[0] == p.pid and len(pids) == 2
        facts = process_tree.tree_sample(p.pid)
        assert {f["name"] for f in facts.values()} >= {"sleep"}
        assert all(f["mem_mib"] > 0 and f["cpu_s"] >= 0 for f in facts.values())
    finally:
        for pid in process_tree.tree_pids(p.pid)[1:]:
            subprocess.run(["kill", str(pid)], check=False)
        p.kill()
        p.wait(10)


def test_quota_cgroup_holds_half_a_core_or_says_why() -> None:
    cg = cpu_quota.QuotaCgroup()
    try:
        if cg.path is None:
            assert cg.problems and all(p for p in cg.problems)
            return
        if (cg.path / "cpu.max").exists():
            assert (cg.path / "cpu.max").read_text().split() == ["5000", "10000"]
        else:
            assert (cg.path / "cpu.cfs_quota_us").read_text().strip() == "5000"
            assert (cg.path / "cpu.cfs_period_us").read_text().strip() == "10000"
        p = subprocess.Popen(["sleep", "30"])
        try:
            cg.add(p.pid)
            assert str(p.pid) in (cg.path / "cgroup.procs").read_text().split()
        finally:
            p.kill()
            p.wait(10)
    finally:
        cg.remove()
    assert not cg.path.exists()


def test_check_compares_each_figure_with_its_target() -> None:
    def session(rate: float, misses: int, faults: list[str]) -> dict:
        return {"session": {"rate_hz": rate, "miss_pct": 100 * misses / 150000, "faults": faults,
                            "cpu_share": 0.5, "load_average_1min": [1.0, 1.2]}}  # fmt: skip

    out = {"quota": {"today": session(470.0, 900, ["overrun"]), "this": session(499.5, 3, [])}}
    rows = {r["figure"]: r for r in B.check(out)}
    assert rows["quota_rate_hz"]["met"] is True and rows["quota_faults"]["met"] is True
    assert rows["quota_miss_pct"]["this"] == pytest.approx(0.002)
    out["quota"]["this"] = session(497.0, 300, ["overrun"])
    rows = {r["figure"]: r for r in B.check(out)}
    assert [rows[k]["met"] for k in ("quota_rate_hz", "quota_miss_pct", "quota_faults")] == [
        False,
        False,
        False,
    ]
    assert rows["quota_rate_hz"]["ratio_today_over_this"] == pytest.approx(470 / 497, abs=0.01)
