"""The ONNX torque model through onnxruntime: its numbers, its metadata and its refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

import exoctl
from exoctl.config.schema import load_config
from exoctl.estimation.torque_model import MODEL_FORMAT, ModelError, TorqueModel, feature_names
from exoctl.training.linear_model import write_onnx

LINEAR = Path(exoctl.__file__).parent / "models" / "default.onnx"


def test_linear_model_matches_its_own_weights():
    cfg = load_config()
    model = TorqueModel(LINEAR)
    proto = onnx.load(str(LINEAR))
    w = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    rng = np.random.default_rng(0)
    for _ in range(20):
        x = rng.random(len(model.info.features)).astype(np.float32)
        model.features[0] = x  # the bound input buffer
        got = model.run().copy()
        want = x @ w["coef"] + w["intercept"][0]
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    assert model.info.joints == cfg.joint_names


def _meta(**kw):
    doc = {
        "format": MODEL_FORMAT,
        "features": list(feature_names(["m1", "m2"], 1)),
        "joints": ["hip_l"],
        "muscles": ["m1", "m2"],
        "n_synergies": 1,
    }
    doc.update(kw)
    return doc


def test_layout_mismatch_is_refused_with_both_sides(tmp_path):
    path = tmp_path / "m.onnx"
    write_onnx(path, np.ones((3, 1)), np.zeros(1), _meta())
    model = TorqueModel(path)
    with pytest.raises(ModelError) as e:
        model.check_layout(["hip_l", "knee_l"], ["m1", "m2"], 1, "the configuration")
    assert "joints ['hip_l'] vs configured ['hip_l', 'knee_l']" in str(e.value)
    with pytest.raises(ModelError, match="1 synergies vs 2 in the calibration"):
        model.check_layout(["hip_l"], ["m1", "m2"], 2, "the calibration")
    model.check_layout(["hip_l"], ["m1", "m2"], 1, "ok")


def test_width_disagreeing_with_metadata_is_refused(tmp_path):
    path = tmp_path / "m.onnx"
    write_onnx(path, np.ones((4, 1)), np.zeros(1), _meta())  # 4 inputs, metadata says 3
    with pytest.raises(ModelError, match="width 4, metadata says 3"):
        TorqueModel(path)


def test_foreign_and_missing_models_are_refused(tmp_path):
    path = tmp_path / "m.onnx"
    write_onnx(path, np.ones((3, 1)), np.zeros(1), _meta())
    proto = onnx.load(str(path))
    del proto.metadata_props[:]
    foreign = tmp_path / "foreign.onnx"
    foreign.write_bytes(proto.SerializeToString())
    with pytest.raises(ModelError, match="not an exoctl model"):
        TorqueModel(foreign)
    with pytest.raises(ModelError, match="not found"):
        TorqueModel(tmp_path / "absent.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(ModelError, match="cannot load"):
        TorqueModel(junk)
    bad_meta = tmp_path / "badmeta.onnx"
    write_onnx(bad_meta, np.ones((3, 1)), np.zeros(1), {"format": "other/9"})
    with pytest.raises(ModelError, match="metadata format"):
        TorqueModel(bad_meta)
    assert json.loads(onnx.load(str(path)).metadata_props[0].value)["n_synergies"] == 1
