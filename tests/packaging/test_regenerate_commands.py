"""The shipped linear model's record says how to make it again; that command, run as written
in an empty folder (shortened only by its own ``--duration`` option), makes the model, its
calibration and its record, and the new record gives the same command.

The network's command (``exoctl/models/network.json``) trains for minutes even shortened; it
is checked to name a module with a command line in ``test_product_text.py``, not run here.
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import onnxruntime as ort

from .conftest import REPO


def test_the_linear_models_regenerate_command_makes_it(tmp_path: Path) -> None:
    shipped = json.loads((REPO / "exoctl" / "models" / "default.json").read_text())
    argv = shlex.split(shipped["regenerate"])
    assert argv[:2] == ["python", "-m"], shipped["regenerate"]
    p = subprocess.run(
        [sys.executable, *argv[1:], "--duration", "20"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr[-2000:]
    out = tmp_path / argv[argv.index("--out") + 1]
    record = json.loads((out / "default.json").read_text())
    assert record["regenerate"] == shipped["regenerate"]
    assert record["config"] == shipped["config"]
    assert (out / record["calibration"]).is_file()
    assert min(record["metrics"]["r2_held_out"].values()) > 0.8  # synthetic data, held-out tail
    session = ort.InferenceSession(str(out / record["model"]))
    assert len(session.get_outputs()) >= 1
