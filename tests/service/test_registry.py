"""The per-patient model registry: history, roll-back, and durability under ``kill -9``."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from exoctl.service.registry import REGISTRY_FILE, Registry

REPO = Path(__file__).resolve().parents[2]
MODELS = REPO / "exoctl" / "models"


def test_accept_show_and_roll_back_from_the_cli(tmp_path, write_config, run_cli, capsys):
    cfg = write_config(tmp_path)
    c = ["--config", str(cfg)]
    net, lin = MODELS / "network.onnx", MODELS / "default.onnx"
    cal = MODELS / "sim_calibration.yaml"
    scores = tmp_path / "scores.json"
    scores.write_text(json.dumps({"gain": {"soleus_r": 1.3}, "verdict": {"accepted": True}}))
    assert run_cli([*c, "patients", "accept", "P01", "--model", str(lin),
                    "--calibration", str(cal), "--source", "dataset walk36", "--json"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert run_cli([*c, "patients", "accept", "P01", "--model", str(net),
                    "--calibration", str(cal), "--scores", str(scores)]) == 0  # fmt: skip
    capsys.readouterr()
    assert run_cli([*c, "patients", "show", "P01", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["current"] == 2 and [m["version"] for m in doc["models"]] == [1, 2]
    assert doc["models"][1]["gain"] == {"soleus_r": 1.3}
    assert doc["models"][0]["sources"] == ["dataset walk36"]
    assert doc["models"][0]["model_path"].endswith("default.onnx")
    assert f"uid {os.getuid()}" in doc["models"][0]["accepted_by"]

    assert run_cli([*c, "patients", "rollback", "P01", "--to", "1"]) == 0
    assert "version 1 is current again" in capsys.readouterr().out
    assert run_cli([*c, "patients", "show", "P01"]) == 0
    out = capsys.readouterr().out
    assert "current model version 1" in out and "rolled back" in out and "soleus_r x1.30" in out
    reg = Registry(tmp_path / "data")
    assert reg.current("P01")["model_path"].endswith("default.onnx")
    assert [s["reason"] for s in reg.history("P01")["selections"]] == [
        "accepted", "accepted", "rolled back",
    ]  # fmt: skip

    # a version that does not exist: a clear error, nothing changes
    assert run_cli([*c, "patients", "rollback", "P01", "--to", "7"]) == 1
    assert "no model version 7; versions: [1, 2]" in capsys.readouterr().err
    assert reg.current("P01")["version"] == 1
    assert reg.current("P02") is None
    assert (tmp_path / "data" / REGISTRY_FILE).stat().st_mode & 0o777 == 0o600


WRITER = """
import sys
from exoctl.service.registry import Registry
reg = Registry(sys.argv[1])
for i in range(10000):
    reg.accept("P01", sys.argv[2], sys.argv[3], sources=[f"session {i}"], by="writer")
    if i % 2:
        reg.roll_back("P01", 1, by="writer")
    print(i, flush=True)
"""


def test_the_registry_survives_kill_9_mid_write(tmp_path):
    data = tmp_path / "data"
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(data), str(MODELS / "default.onnx"),
         str(MODELS / "sim_calibration.yaml")],
        stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert proc.stdout is not None
    done = -1
    deadline = time.monotonic() + 60
    while done < 20 and time.monotonic() < deadline:
        done = int(proc.stdout.readline().split()[0])
    proc.send_signal(signal.SIGKILL)  # in the middle of a later write
    proc.wait()
    conn = sqlite3.connect(data / REGISTRY_FILE)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    conn.close()
    reg = Registry(data)
    hist = reg.history("P01")
    versions = [m["version"] for m in hist["models"]]
    # every write that was reported done is there, and versions have no gap
    assert len(versions) >= done + 1 and versions == list(range(1, len(versions) + 1))
    # every model has its "accepted" selection (one transaction each), and the current one
    # is the newest selection's
    accepted = [s["version"] for s in hist["selections"] if s["reason"] == "accepted"]
    assert accepted == versions
    assert reg.current("P01")["version"] == hist["selections"][-1]["version"]
    # and it keeps working after the crash
    v = reg.accept("P01", MODELS / "network.onnx", MODELS / "sim_calibration.yaml")
    assert v == versions[-1] + 1 and reg.current("P01")["version"] == v
