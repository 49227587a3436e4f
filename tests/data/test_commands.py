"""`exoctl data check`, `exoctl data export-sim` and `exoctl calibrate`, through argparse."""

from __future__ import annotations

import argparse
import contextlib
import io

import numpy as np
import pytest
import yaml
from scipy import signal

from exoctl.config.schema import DEFAULT_CONFIG
from exoctl.data.commands import register
from exoctl.data.export import export_recording
from exoctl.signal.calibration import CalibrationError, load_calibration
from exoctl.signal.dsp import design_filters
from exoctl.signal.synergy import OnlineNNLS


def run(argv: list[str]) -> tuple[int, str]:
    parser = argparse.ArgumentParser(prog="exoctl")
    parser.add_argument("--config", default=None)  # as the main CLI may
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    buf = io.StringIO()
    with contextlib.redirect_stderr(buf):  # diagnostics go to stderr (exoctl/cli_policy.py)
        code = args.func(args, out=buf)
    return code, buf.getvalue()


@pytest.fixture(scope="module")
def datasets(tmp_path_factory, recording_factory):
    """The same two simulator sessions exported as .sto, CSV and XDF."""
    recs = [recording_factory(8.0, session=s) for s in (0, 1)]
    out = {}
    for fmt in ("sto", "csv", "xdf"):
        d = tmp_path_factory.mktemp(fmt)
        for i, rec in enumerate(recs):
            desc = export_recording(rec, d, fmt=fmt, trial=f"walk{i}", body_mass_kg=70.0)
        out[fmt] = desc
    return out


@pytest.mark.parametrize("fmt", ["sto", "csv", "xdf"])
def test_data_check_reports_every_trial(datasets, fmt):
    code, text = run(["data", "check", str(datasets[fmt])])
    assert code == 0, text
    assert "trial walk0 (task, EMG raw)" in text and "trial walk1" in text
    assert "2000 Hz" in text and "100 Hz" in text
    assert "rectus_femoris_l<-EMG01" in text
    assert "OK: 2 of 2 trial(s) loaded, 0 error(s)" in text


def test_data_check_fails_clearly_on_a_missing_column(tmp_path, recording):
    desc = export_recording(recording, tmp_path, fmt="csv", trial="w", body_mass_kg=70.0)
    raw = yaml.safe_load(desc.read_text())
    raw["trials"][0]["angle"]["columns"]["knee_r"] = "knee_angle_rr"
    desc.write_text(yaml.safe_dump(raw, sort_keys=False))
    code, text = run(["data", "check", str(desc)])
    assert code == 1
    assert "angle.columns.knee_r" in text and "'knee_angle_rr' not found" in text
    assert "w_angles.csv" in text and "FAILED" in text
    (tmp_path / "w_emg.csv").unlink()
    code, text = run(["data", "check", str(desc)])
    assert code == 1 and "emg.file: w_emg.csv: file not found" in text


def test_data_check_warns_on_clipping_and_nans(tmp_path, recording):
    rec = recording
    emg = rec.emg.copy()
    emg[:, 2] = np.clip(emg[:, 2], -20.0, 20.0)
    emg[100:110, 5] = np.nan
    clipped = type(rec)(**{**rec.__dict__, "emg": emg})
    desc = export_recording(clipped, tmp_path, fmt="sto", trial="w")
    code, text = run(["data", "check", str(desc)])
    assert code == 0
    assert "clipping" in text and "vastus_medialis_l" in text
    assert "NaN samples {'gluteus_maximus_l': 10}" in text


@pytest.mark.parametrize("fmt", ["sto", "csv", "xdf"])
def test_calibrate_writes_a_calibration_the_estimator_accepts(datasets, tmp_path, fmt):
    out = tmp_path / "cal.yaml"
    code, text = run(
        [
            "calibrate",
            "--data",
            str(datasets[fmt]),
            "--out",
            str(out),
            "--config",
            str(DEFAULT_CONFIG),
        ]
    )
    assert code == 0, text
    assert "WARNING: no MVC trial" in text and "K=1:" in text and "<- chosen" in text
    cal = load_calibration(out)
    from exoctl.config.schema import load_config

    cfg = load_config(DEFAULT_CONFIG)
    cal.check_muscles(cfg.emg.muscles)
    assert cal.vaf >= 0.9
    assert all(cal.source["vaf_by_k"][k] < 0.9 for k in range(1, cal.k))
    assert cal.source["mvc_method"] == "robust-max"
    OnlineNNLS(cal.W)  # usable online


def test_formats_give_the_same_calibration(datasets, tmp_path):
    cals = []
    for fmt in ("sto", "xdf"):
        out = tmp_path / f"{fmt}.yaml"
        assert (
            run(["calibrate", "--data", str(datasets[fmt]), "--out", str(out), "--k", "3"])[0] == 0
        )
        cals.append(load_calibration(out))
    np.testing.assert_allclose(cals[0].mvc, cals[1].mvc, rtol=1e-5)
    np.testing.assert_allclose(cals[0].W, cals[1].W, atol=1e-3)
    assert cals[0].k == 3


def test_mvc_trial_sets_the_normalisation(tmp_path, recording):
    """With an MVC trial the MVC is its envelope peak, computed here independently."""
    strong = type(recording)(**{**recording.__dict__, "emg": recording.emg * 3.0})
    export_recording(recording, tmp_path, fmt="sto", trial="walk")
    desc = export_recording(strong, tmp_path, fmt="sto", trial="mvc", role="mvc")
    out = tmp_path / "cal.yaml"
    code, text = run(["calibrate", "--data", str(desc), "--out", str(out)])
    assert code == 0, text
    assert "no MVC trial" not in text
    cal = load_calibration(out)
    assert cal.source["mvc_trials"] == ["mvc"] and cal.source["task_trials"] == ["walk"]
    pre, post = design_filters(2000.0)
    x = strong.emg.astype(np.float64)[100:]  # the common span starts with the kinematics
    zi = signal.sosfilt_zi(pre)[:, :, None] * x[0]
    env = signal.sosfilt(post, np.abs(signal.sosfilt(pre, x, axis=0, zi=zi)[0]), axis=0)
    np.testing.assert_allclose(cal.mvc, env[1000:].max(axis=0), rtol=1e-6)


def test_calibrate_refuses_a_config_with_other_muscles(datasets, tmp_path):
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["emg"]["muscles"] = raw["emg"]["muscles"][:8] + ["soleus_l"]
    raw["estimator"]["calibration"] = str(tmp_path / "x.yaml")
    raw["model"]["path"] = str(tmp_path / "x.onnx")
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(yaml.safe_dump(raw))
    code, text = run(
        [
            "calibrate",
            "--data",
            str(datasets["sto"]),
            "--out",
            str(tmp_path / "c.yaml"),
            "--config",
            str(cfg),
        ]
    )
    assert code == 1
    assert "configured:" in text and "soleus_l" in text and "rectus_femoris_r" in text
    assert not (tmp_path / "c.yaml").exists()


def test_calibration_for_other_muscles_is_refused_by_check(datasets, tmp_path):
    out = tmp_path / "cal.yaml"
    assert run(["calibrate", "--data", str(datasets["csv"]), "--out", str(out), "--k", "2"])[0] == 0
    with pytest.raises(CalibrationError, match="gluteus_medius_l"):
        load_calibration(out).check_muscles(["gluteus_medius_l"])


def test_global_config_option_is_not_overwritten():
    parser = argparse.ArgumentParser()
    parser.add_argument("--config", default="main-default")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["--config", "given.yaml", "calibrate", "--data", "d", "--out", "o"])
    assert args.config == "given.yaml"


def test_export_sim_then_check(tmp_path):
    out = tmp_path / "sim"
    code, text = run(
        [
            "data",
            "export-sim",
            "--out",
            str(out),
            "--duration",
            "3",
            "--format",
            "xdf",
            "--config",
            str(DEFAULT_CONFIG),
        ]
    )
    assert code == 0, text
    code, text = run(["data", "check", str(out / "dataset.yaml")])
    assert code == 0 and "trial walk_s0" in text


@pytest.mark.parametrize("normalised", [True, False])
def test_enveloped_input_skips_the_filters(tmp_path, recording, normalised):
    """A lab that exports envelopes: no filtering; MVC 1 when they are normalised already."""
    from exoctl.data.export import write_csv

    env = recording.activation * 0.8
    write_csv(tmp_path / "env.csv", recording.t, env, [f"c{i}" for i in range(env.shape[1])])
    spec = {
        "file": "env.csv",
        "kind": "enveloped",
        "normalised": normalised,
        "channels": {m: f"c{i}" for i, m in enumerate(recording.muscles)},
    }
    desc = tmp_path / "d.yaml"
    desc.write_text(
        yaml.safe_dump({"format": "exoctl-dataset/1", "trials": [{"name": "w", "emg": spec}]})
    )
    out = tmp_path / "cal.yaml"
    code, text = run(["calibrate", "--data", str(desc), "--out", str(out), "--k", "3"])
    assert code == 0, text
    cal = load_calibration(out)
    if normalised:
        np.testing.assert_array_equal(cal.mvc, np.ones(len(recording.muscles)))
        assert "WARNING" not in text and cal.source["mvc_method"] == "pre-normalised"
    else:
        # the description's mapping was written with sorted keys: compare by muscle name
        idx = [recording.muscles.index(m) for m in cal.muscles]
        assert idx != list(range(len(idx)))
        np.testing.assert_allclose(cal.mvc, np.percentile(env, 99.5, axis=0)[idx], rtol=1e-7)
        assert "no MVC trial" in text


def test_through_the_main_cli(datasets, tmp_path, capsys):
    """exoctl.cli registers these commands; a global --config reaches calibrate."""
    cli = pytest.importorskip("exoctl.cli")
    assert cli.main(["data", "check", str(datasets["csv"])]) == 0
    assert "OK: 2 of 2" in capsys.readouterr().out
    out = tmp_path / "cal.yaml"
    argv = ["--config", str(DEFAULT_CONFIG), "calibrate", "--data", str(datasets["sto"])]
    assert cli.main([*argv, "--out", str(out), "--k", "2"]) == 0
    assert f"settings and muscle order from {DEFAULT_CONFIG}" in capsys.readouterr().out
    assert load_calibration(out).k == 2
