"""``exoctl evaluate --from S --to S``: only the ticks in the window are scored, on the trial's
own time axis (how ``exoctl hil --replay`` is compared with the offline evaluation)."""

from __future__ import annotations

import json
from pathlib import Path

from exoctl.cli import main

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ceinms-s06-walk36" / "dataset.yaml"


def test_evaluate_scores_only_the_ticks_between_from_and_to(tmp_path, capsys):
    model = tmp_path / "ridge.onnx"
    assert (
        main(["train", "--data", str(FIXTURE), "--model-type", "ridge", "--out", str(model)]) == 0
    )
    capsys.readouterr()
    assert main(["evaluate", "--model", str(model), "--data", str(FIXTURE), "--json"]) == 0
    whole = json.loads(capsys.readouterr().out)
    args = ["--from", "24", "--to", "26"]
    assert main(["evaluate", "--model", str(model), "--data", str(FIXTURE), "--json", *args]) == 0
    part = json.loads(capsys.readouterr().out)
    # the excerpt starts at t = 20 s; ticks at 500 Hz: 24.000 .. 26.000 s inclusive
    assert part["scored_ticks"] == 1001
    assert whole["scored_ticks"] > 3000
    assert part["joints"]["hip_r"]["r2"] != whole["joints"]["hip_r"]["r2"]
    # a window with no tick in it is an input error, not a traceback
    bad = ["--from", "40", "--to", "41"]
    assert main(["evaluate", "--model", str(model), "--data", str(FIXTURE), *bad]) == 1
