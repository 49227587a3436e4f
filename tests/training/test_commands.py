"""`exoctl train`, `evaluate`, `adapt` on imported OpenSim .sto trials: one leg, nine muscles."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest

from exoctl.cli import main
from exoctl.data.export import export_recording
from exoctl.estimation.torque_model import TorqueModel
from exoctl.hil.drift import DriftedPatient, drift_for_session

LEG = [
    "rectus_femoris_l", "vastus_lateralis_l", "vastus_medialis_l", "biceps_femoris_l",
    "semitendinosus_l", "gluteus_maximus_l", "tensor_fasciae_latae_l", "gastrocnemius_medialis_l",
]  # fmt: skip
NINTH = "vastus_intermedius_l"  # not in the simulator: recorded as crosstalk of VL and VM


def _leg_recording(seed, session, index, duration):
    drift = drift_for_session(LEG, seed, index)
    rec = DriftedPatient(LEG, ["hip_l", "knee_l"], drift=drift, seed=seed, session=session)
    rec = rec.generate(duration)
    rng = np.random.default_rng(session)
    ninth = 0.5 * rec.emg[:, 1] + 0.4 * rec.emg[:, 2] + 5.0 * rng.standard_normal(len(rec.t))
    return dataclasses.replace(
        rec,
        emg=np.column_stack([rec.emg, ninth]).astype(np.float32),
        muscles=(*LEG, NINTH),
    )


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    d = tmp_path_factory.mktemp("sto")
    for name, session, index in (("walk_1", 1, 0), ("walk_2", 2, 0), ("later", 3, 4)):
        desc = export_recording(
            _leg_recording(7, session, index, 14.0), d, fmt="sto", trial=name, body_mass_kg=70.0
        )
    return desc


def _run(capsys, *argv):
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_ridge_and_network_train_and_evaluate_on_sto(dataset, tmp_path, capsys):
    ridge = tmp_path / "ridge.onnx"
    code, out = _run(capsys, "train", "--data", str(dataset), "--trials", "walk_1", "walk_2",
                     "--out", str(ridge), "--model-type", "ridge")  # fmt: skip
    assert code == 0, out
    assert (tmp_path / "ridge.calibration.yaml").is_file()
    info = TorqueModel(ridge).info
    assert info.input_kind == "window" and info.joints == ("hip_l", "knee_l")
    assert len(info.muscles) == 9 and info.extra["training_data"][0]["trials"] == [
        "walk_1",
        "walk_2",
    ]

    net = tmp_path / "net.onnx"
    code, out = _run(capsys, "train", "--data", str(dataset), "--trials", "walk_1", "walk_2",
                     "--out", str(net), "--epochs", "2", "--samples-per-epoch", "3000")  # fmt: skip
    assert code == 0, out
    assert "epoch 2/2" in out and "held-out tail" in out
    info = TorqueModel(net).info
    assert "angle:knee_l" in info.features and "velocity:hip_l" in info.features
    assert info.extra["metrics"]["held_out"]["knee_l"]["r2"] > 0.5

    png = tmp_path / "fit.png"
    code, out = _run(capsys, "evaluate", "--model", str(net), "--data", str(dataset),
                     "--trials", "walk_2", "--json", "--plot", str(png))  # fmt: skip
    assert code == 0, out
    res = json.loads(out.strip().splitlines()[-1])
    for j in ("hip_l", "knee_l"):
        m = res["joints"][j]
        assert m["r2"] > 0.8 and m["rmse_nm"] > 0
        assert m["rmse_nm_per_kg"] == pytest.approx(m["rmse_nm"] / 70.0, rel=1e-3)
        assert 0 < m["nrmse"] < 0.2
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 2000

    code, out = _run(capsys, "evaluate", "--model", str(ridge), "--data", str(dataset),
                     "--trials", "walk_2")  # fmt: skip
    assert code == 0 and "R^2" in out and "knee_l" in out

    # adaptation to the later (drifted) trial: only its EMG and angles are read
    adapted = tmp_path / "adapted.onnx"
    code, out = _run(capsys, "adapt", "--model", str(net), "--data", str(dataset),
                     "--trials", "later", "--out", str(adapted), "--epochs", "1",
                     "--samples-per-epoch", "1000", "--adversarial")  # fmt: skip
    assert code == 0, out
    info = TorqueModel(adapted).info
    meta = info.extra
    assert meta["adaptation"]["target"]["trials"] == ["later"]
    assert meta["adaptation"]["renormalised"] == "floor" and meta["adaptation"]["adversarial"]
    assert len(meta["adaptation"]["amplitude_factors"]) == info.n_synergies + len(info.muscles)
    plain = tmp_path / "floor_only.onnx"
    # the adversarial step is off by default
    code, out = _run(capsys, "adapt", "--model", str(net), "--data", str(dataset),
                     "--trials", "later", "--out", str(plain))  # fmt: skip
    assert code == 0, out
    assert TorqueModel(plain).info.extra["adaptation"]["adversarial"] is False
    code, out = _run(capsys, "evaluate", "--model", str(adapted), "--data", str(dataset),
                     "--trials", "later", "--compare", str(net), str(ridge))  # fmt: skip
    assert code == 0, out
    assert "side by side" in out and "ridge.onnx" in out and "net.onnx" in out


def test_bad_inputs_give_clear_errors(dataset, tmp_path, capsys):
    code, out = _run(capsys, "train", "--data", str(dataset), "--trials", "nope",
                     "--out", str(tmp_path / "x.onnx"), "--model-type", "ridge")  # fmt: skip
    assert code == 1 and "no trial named 'nope'" in out
    code, out = _run(capsys, "evaluate", "--model", str(tmp_path / "absent.onnx"),
                     "--data", str(dataset))  # fmt: skip
    assert code == 1 and "model file not found" in out


def test_commands_module_does_not_import_torch_and_says_how_to_get_it(dataset, tmp_path):
    code = (
        "import sys; import exoctl.cli as c; c.build_parser(); "
        "assert 'torch' not in sys.modules, 'torch imported at CLI start'; "
        "sys.modules['torch'] = None; "  # as if the train extra were not installed
        f"sys.exit(c.main(['train', '--data', {str(dataset)!r}, '--out', {str(tmp_path / 'm.onnx')!r}]))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2, p.stdout + p.stderr
    assert "pip install -e '.[train]'" in p.stderr


def test_compare_finds_the_calibration_of_a_model_that_does_not_name_it(tmp_path):
    """The shipped linear baseline records no calibration_file in its metadata: its provenance
    file names it, else the configuration's is used; a model with none found is refused
    before any scoring (it used to fail after scoring the first model, 45 s in)."""
    import shutil

    from exoctl.config.schema import DEFAULT_CONFIG, MODELS_DIR, load_config
    from exoctl.training.command_common import _calibration_path

    cfg = load_config(DEFAULT_CONFIG)
    models = MODELS_DIR
    assert TorqueModel(models / "default.onnx").info.extra.get("calibration_file") is None
    assert _calibration_path(models / "default.onnx", None, cfg) == models / "sim_calibration.yaml"
    lone = tmp_path / "lone.onnx"
    shutil.copy2(models / "default.onnx", lone)
    assert _calibration_path(lone, None, cfg) == cfg.estimator.calibration
    nowhere = cfg.with_overrides(estimator={"calibration": str(tmp_path / "none.yaml")})
    with pytest.raises(ValueError, match="no calibration found .*give --calibration"):
        _calibration_path(lone, None, nowhere)
