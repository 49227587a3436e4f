"""`exoctl hil` ends every bad input with one line and exit 1, and --json is always JSON.

The bench once printed a Python traceback for every start-up failure of its child processes
(13 of 16 bad-but-valid configurations), and `hil --duration 1 --json` printed NaN.
Each configuration here passes the schema and fails only once the model and calibration are
loaded (before any child starts, tests/hil/test_hil_early_checks.py) or when a child starts:
the file it names is missing or wrong, or it does not match the model or the patient.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, MODELS_DIR

pytestmark = pytest.mark.hil

MODELS = MODELS_DIR


def _config(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["estimator"]["calibration"] = str(MODELS / "sim_calibration.yaml")
    raw["model"]["path"] = str(MODELS / "network.onnx")
    mutate(raw, tmp_path)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _reordered_calibration(raw: dict, tmp: Path) -> None:
    cal = yaml.safe_load((MODELS / "sim_calibration.yaml").read_text())
    cal["muscles"] = list(reversed(cal["muscles"]))
    (tmp / "cal.yaml").write_text(yaml.safe_dump(cal))
    raw["estimator"]["calibration"] = str(tmp / "cal.yaml")


def _not_onnx(raw: dict, tmp: Path) -> None:
    (tmp / "m.onnx").write_text("not a model\n")
    raw["model"]["path"] = str(tmp / "m.onnx")


def _two_joints(raw: dict, tmp: Path) -> None:
    raw["device"]["joints"] = raw["device"]["joints"][:2]
    raw["control"]["assist_gain"] = {"hip_l": 0.3, "hip_r": 0.3}


BAD_BUT_VALID = {
    # the controller child cannot start
    "calibration_missing": (
        lambda r, t: r["estimator"].update(calibration=str(t / "nope.yaml")),
        "cannot read calibration",
    ),
    "calibration_other_muscle_order": (_reordered_calibration, "Recalibrate"),
    "model_not_onnx": (_not_onnx, "onnxruntime cannot load it"),
    "model_for_other_joints": (_two_joints, "model does not match"),
    "model_for_another_rate": (lambda r, t: r["control"].update(rate_hz=250), "500 Hz"),
    # muscles the patient (and the calibration) lacks: refused by the check of the model and
    # calibration that runs before any child starts (it was the simulator child's failure)
    "muscle_names_the_patient_lacks": (
        lambda r, t: r["emg"].update(muscles=[f"m{i}" for i in range(16)]),
        "does not match the configured muscles",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_BUT_VALID))
def test_start_up_failure_of_a_child_is_one_line_and_exit_1(tmp_path, name):
    mutate, expected = BAD_BUT_VALID[name]
    path = _config(tmp_path, mutate)
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(path), "hil", "--duration", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("exoctl: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert proc.stdout == ""


def test_json_of_a_run_too_short_to_score_is_strict_json_with_null():
    """`hil --duration 1 --json` printed NaN (the 2 s warm-up is unscored)."""
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "hil", "--duration", "1", "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]

    def refuse(constant: str) -> None:
        raise AssertionError(f"not JSON: {constant}")

    doc = json.loads(proc.stdout, parse_constant=refuse)
    assert set(doc["r2"].values()) == {None} and set(doc["rmse_nm"].values()) == {None}
    assert doc["ticks"] > 0 and doc["scored_after_s"] > doc["duration_s"]
