"""The HIL bench with the reference firmware (firmware/, C) on QEMU's lm3s6965evb in place of
the Python emulator: `exoctl hil --firmware qemu`, a plain run and the fault scenarios that
concern the device (host timeout by a killed controller, cable pull, the e-stop button,
firmware reset), held to
the same expectations as with the emulator (tests/hil/test_scenarios.py).

Skips where gcc-arm-none-eabi or qemu-system-arm is missing, except in CI (CI=true): fails.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from firmware_bridge.qemu_firmware import missing_tools

from .test_scenarios import check_summary

MISSING = missing_tools()
if MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(
        "CI must run the QEMU firmware tests, but these tools are missing: " + ", ".join(MISSING)
    )
pytestmark = [
    pytest.mark.hil,
    pytest.mark.skipif(bool(MISSING), reason="QEMU firmware tools missing: " + ", ".join(MISSING)),
]
DEVICE_SCENARIOS = ["cable_pull", "controller_kill", "estop_button", "firmware_reset"]


def _hil(config, *args: str) -> dict:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "exoctl.cli",
            "--config",
            str(config),
            "hil",
            "--firmware",
            "qemu",
            *args,
            "--json",
        ],  # fmt: skip
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def test_hil_run_against_the_firmware_in_qemu(realtime_config) -> None:
    """The issue's "done" run: every command received, no host timeout, no limit violation."""
    s = _hil(realtime_config, "--duration", "10")
    assert s["commands_sent"] > 1000
    assert s["commands_received"] == s["commands_sent"]
    assert s["limit_violations"] == 0
    assert not [f for f in s["faults"] if f["kind"] == "firmware:host_timeout"], s["faults"]


@pytest.mark.parametrize("name", DEVICE_SCENARIOS)
def test_device_scenario_against_the_firmware_in_qemu(name, realtime_config) -> None:
    check_summary(_hil(realtime_config, "--scenario", name), name)
