"""Smoke test of `make bench`: the aggregator runs end to end in --quick mode and its report
holds every section, figure and ratio (or says why one is missing). No timing is asserted:
figures belong to the benchmark, not to tests on a shared machine."""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

pytestmark = pytest.mark.hil  # runs HIL sessions and the daemon against the simulator
REPO = Path(__file__).resolve().parents[2]
# the loop and inference benchmarks bring their own HIL/training runs (their owners test them);
# every other section runs here in --quick mode
SECTIONS = ("signal_chain", "protocol", "pipeline", "session", "daemon", "scaling", "accuracy")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory) -> tuple[dict, str, Path]:
    out = tmp_path_factory.mktemp("bench")
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-libemg", "--only", ",".join(SECTIONS)]
        + ["--out", str(out)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    doc = json.loads((out / "latest.json").read_text())
    return doc, (out / "latest.md").read_text(), out


def test_every_own_section_ran_and_others_are_accounted_for(quick_run):
    doc, md, _ = quick_run
    secs = doc["sections"]
    for name in ("pipeline", "session", "daemon", "scaling", "accuracy"):
        assert secs[name]["status"] == "ok", (name, secs[name]["reason"])
    assert set(secs) == set(SECTIONS)
    for name in ("signal_chain", "protocol"):
        assert secs[name]["status"] in ("ok", "skipped"), (name, secs[name])
        if secs[name]["status"] == "skipped":
            assert secs[name]["reason"] and secs[name]["reason"] in md
    for name, s in secs.items():
        assert s["command"].startswith(f"python -m bench --only {name}")


def test_pipeline_figures_and_ratios(quick_run):
    doc, md, _ = quick_run
    p = doc["sections"]["pipeline"]["result"]
    ex, nv = p["exoctl"], p["naive"]
    assert ex["n"] > 1000 and nv["n"] > 50
    assert 0 < ex["median_us"] <= ex["p99_us"] <= ex["max_us"]
    assert p["ratio_naive_vs_exoctl"]["median"] == pytest.approx(
        nv["median_us"] / ex["median_us"], rel=0.02
    )
    for stage in ("dsp", "activation", "nnls", "onnx_linear"):
        assert p["exoctl_stages"][stage]["median_us"] > 0
    # the streaming estimator really estimates: R^2 on an unseen session of the patient
    assert min(p["exoctl_r2_test_session"].values()) > 0.8
    assert "skipped" in p["libemg"] and "--no-libemg" in p["libemg"]["skipped"]
    assert "LibEMG peer not run" in md


def test_session_measures_the_controller_process(quick_run):
    doc, md, _ = quick_run
    r = doc["sections"]["session"]["result"]["500Hz"]
    assert r["ticks"] > 100 and r["commands_received"] > 100
    pr = r["process"]
    assert 20 < pr["peak_rss_mib"] < 4000
    assert 0 < pr["cpu_share_of_one_core"] <= 1.5
    d = doc["sections"]["daemon"]["result"]
    assert 20 < d["peak_rss_mib"] < 4000 and d["recorder"]["written_chunks"] > 0
    assert d["loop"]["control_rate_hz"] > 100
    assert "daemon session" in md
    assert "EMG sample arrival -> command on the wire" in md
    assert "tick start error at 500Hz" in md


def test_scaling_and_accuracy_cover_the_issue(quick_run):
    doc, md, _ = quick_run
    s = doc["sections"]["scaling"]["result"]
    assert list(s["channels"]) == ["8", "16", "32", "64"]
    assert list(s["rates"]) == ["250", "500", "1000"]
    assert len(s["synergies"]) >= 3
    a = doc["sections"]["accuracy"]["result"]
    lin = a["models"]["exoctl linear"]
    assert len(a["patients"]) >= 2
    for per_session in lin.values():
        assert len(per_session["per_patient"]) == len(a["patients"])
        for j in per_session["across_patients"].values():
            assert j["min"] <= j["mean"] <= j["max"]
    assert "pending" in md  # the network's accuracy is marked, not silently absent


def test_report_and_plots_are_well_formed(quick_run):
    _, md, out = quick_run
    for heading in (
        "## exoctl against its peers",
        "## Per stage and end to end",
        "## Accuracy",
        "## Scaling",
        "## Sections",
    ):
        assert heading in md
    svgs = sorted(out.glob("*.svg"))
    assert {p.name for p in svgs} >= {"pipeline.svg", "scaling_channels.svg"}
    for p in svgs:
        root = ET.fromstring(p.read_text())
        assert root.tag.endswith("svg")
        assert len(list(root.iter())) > 5


def test_unknown_section_is_refused():
    p = subprocess.run(
        [sys.executable, "-m", "bench", "--only", "nope"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "unknown section" in p.stderr


def test_missing_or_runless_benchmarks_are_skipped_with_a_reason(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(REPO))
    from bench.__main__ import Section, _call

    status, reason, res = _call(Section("nope", "bench.bench_does_not_exist"), True, False)
    assert (status, res) == ("skipped", None) and "does not exist" in reason
    # a module that exists but has no run()
    status, reason, _ = _call(Section("x", "bench.common"), True, False)
    assert status == "skipped" and "has no run()" in reason
