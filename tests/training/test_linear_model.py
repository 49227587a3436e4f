"""The default-model script makes a model the estimator accepts and that fits its data."""

from __future__ import annotations

import json

from exoctl.config.schema import load_config
from exoctl.estimation.estimator import build_estimator
from exoctl.training.linear_model import make_default_model


def test_regenerates_model_calibration_and_provenance(tmp_path):
    cfg = load_config()
    prov = make_default_model(cfg, tmp_path, duration_s=20.0, session=5)
    assert (tmp_path / "default.onnx").is_file() and (tmp_path / "sim_calibration.yaml").is_file()
    assert json.loads((tmp_path / "default.json").read_text())["sha256"] == prov["sha256"]
    assert all(v > 0.9 for v in prov["metrics"]["r2_held_out"].values()), prov["metrics"]
    fresh = cfg.with_overrides(
        model={"path": str(tmp_path / "default.onnx")},
        estimator={"calibration": str(tmp_path / "sim_calibration.yaml")},
    )
    est = build_estimator(fresh)
    assert est.k == prov["n_synergies"]
