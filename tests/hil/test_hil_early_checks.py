"""`exoctl hil` and `exoctl bench up` check the model and the calibration before any child
process starts.

Before, a bad model or calibration was found by the controller's process once the simulator
was up (8.7-30 s later, as a ChildError). Now the parent loads both, as the controller will,
and refuses with the model's or the calibration's own error; no process is started.
"""

from __future__ import annotations

import multiprocessing as mp
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, MODELS_DIR
from exoctl.errors import DataError
from exoctl.hil.runner import run_hil

pytestmark = pytest.mark.hil


def _config(tmp_path: Path, *, model: Path | None = None, calibration: Path | None = None) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["estimator"]["calibration"] = str(calibration or MODELS_DIR / "sim_calibration.yaml")
    raw["model"]["path"] = str(model or MODELS_DIR / "network.onnx")
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    return p


def _not_onnx(tmp_path: Path) -> Path:
    m = tmp_path / "m.onnx"
    m.write_text("not a model\n")
    return _config(tmp_path, model=m)


def _reordered_calibration(tmp_path: Path) -> Path:
    cal = yaml.safe_load((MODELS_DIR / "sim_calibration.yaml").read_text())
    cal["muscles"] = list(reversed(cal["muscles"]))
    (tmp_path / "cal.yaml").write_text(yaml.safe_dump(cal))
    return _config(tmp_path, calibration=tmp_path / "cal.yaml")


@pytest.mark.parametrize(
    ("make", "expected"),
    [(_not_onnx, "onnxruntime cannot load it"), (_reordered_calibration, "Recalibrate")],
)
def test_run_hil_refuses_a_bad_model_or_calibration_before_any_child(tmp_path, make, expected):
    path = make(tmp_path)
    with pytest.raises(DataError, match=expected):  # the loader's own error, not a ChildError
        run_hil(3.0, path)
    assert mp.active_children() == []


def test_hil_command_fails_with_one_line_naming_the_model(tmp_path):
    path = _not_onnx(tmp_path)
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(path), "hil", "--duration", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"exoctl: {tmp_path / 'm.onnx'}: "), lines
    assert "HIL simulator" not in lines[0] and "controller" not in lines[0]


def test_bench_up_refuses_a_bad_model_before_starting_anything(tmp_path):
    path = _not_onnx(tmp_path)
    bench = tmp_path / "b"
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(path), "bench", "up",
         "--dir", str(bench), "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "onnxruntime cannot load it" in proc.stderr, proc.stderr
    assert not list(bench.glob("*.log")), "a child process was started"
