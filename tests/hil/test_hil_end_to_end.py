"""End to end on the HIL bench: EMG over LSL on loopback, firmware on a real pty.

Functional checks only. The achieved rate and latency figures are timing, which belongs in
bench/; here they are held to loose bounds that catch a broken loop, not a slow machine.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from exoctl.hil.runner import run_hil

pytestmark = pytest.mark.hil


@pytest.fixture(scope="module")
def summary(realtime_config):
    return run_hil(5.0, realtime_config)


def test_every_command_reaches_the_firmware_and_none_exceeds_its_limits(summary):
    assert summary["commands_sent"] > 0.8 * 5.0 * summary["target_rate_hz"]
    assert summary["commands_received"] >= 0.99 * summary["commands_sent"]
    assert summary["limit_violations"] == 0


def test_estimate_tracks_the_simulated_patients_torque(summary):
    for joint, r2 in summary["r2"].items():
        assert r2 >= 0.8, (joint, r2)
    assert set(summary["r2"]) == {"hip_l", "hip_r", "knee_l", "knee_r"}


def test_no_faults_and_the_loop_kept_running(summary):
    assert summary["faults"] == []
    assert summary["control_rate_hz"] > 0.9 * summary["target_rate_hz"]
    # The simulator streams from before the controller connects, so compare with the run.
    assert summary["emg_samples"]["received"] > 0.9 * 5.0 * 2000
    for key in ("loop_jitter_us", "latency_ms"):
        assert {"p50", "p99", "max"} <= set(summary[key])


def test_cli_json_summary_has_the_promised_fields():
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "hil", "--duration", "2", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    for key in (
        "duration_s",
        "target_rate_hz",
        "control_rate_hz",
        "commands_sent",
        "commands_received",
        "r2",
        "rmse_nm",
        "loop_jitter_us",
        "deadline_misses",
        "latency_ms",
        "faults",
    ):
        assert key in doc, key
    assert doc["duration_s"] == 2.0 and doc["latency_ms"]["p50"] > 0
