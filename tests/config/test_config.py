"""Configuration errors name the file, the key, the bad value and what is allowed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, ConfigError, load_config


def _write(tmp_path: Path, mutate) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    mutate(raw)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_default_config_loads_and_resolves_paths():
    cfg = load_config()
    assert cfg.joint_names == ("hip_l", "hip_r", "knee_l", "knee_r")
    assert cfg.model.path.is_absolute() and cfg.model.path.is_file()
    assert cfg.estimator.calibration.is_file()
    assert len(cfg.emg.muscles) == 16


def test_out_of_range_value_names_file_key_value_and_bound(tmp_path):
    path = _write(tmp_path, lambda r: r["device"]["joints"][2].update(torque_limit_nm=-5))
    with pytest.raises(ConfigError) as e:
        load_config(path)
    msg = str(e.value)
    assert str(path) in msg
    assert "device.joints[2].torque_limit_nm" in msg
    assert "-5" in msg
    assert "greater than 0" in msg


def test_enum_value_lists_allowed_values(tmp_path):
    path = _write(tmp_path, lambda r: r["emg"].update(source="bluetooth"))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "emg.source" in msg and "'bluetooth'" in msg
    assert "'lsl'" in msg and "'replay'" in msg


def test_unknown_key_lists_allowed_keys(tmp_path):
    path = _write(tmp_path, lambda r: r["control"].update(rate_hzz=500))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "control.rate_hzz" in msg
    assert "rate_hz" in msg and "assist_gain" in msg


def test_missing_key_and_cross_check(tmp_path):
    def mutate(r):
        del r["model"]["path"]
        r["control"]["assist_gain"].pop("knee_r")

    msg = str(pytest.raises(ConfigError, load_config, _write(tmp_path, mutate)).value)
    assert "model.path: required key is missing" in msg


def test_assist_gain_must_name_device_joints(tmp_path):
    path = _write(tmp_path, lambda r: r["control"]["assist_gain"].pop("knee_r"))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert "assist_gain" in msg and "knee_r" in msg


def test_baudrate_and_angle_range(tmp_path):
    def mutate(r):
        r["device"]["serial"]["baudrate"] = 12345
        r["device"]["joints"][0]["angle_min_rad"] = 2.0

    msg = str(pytest.raises(ConfigError, load_config, _write(tmp_path, mutate)).value)
    assert "device.serial.baudrate = 12345" in msg and "1000000" in msg
    assert "device.joints[0]" in msg and "angle_min_rad" in msg


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("device: [unclosed\n")
    assert str(p) in str(pytest.raises(ConfigError, load_config, p).value)
    missing = tmp_path / "nope.yaml"
    assert "cannot read" in str(pytest.raises(ConfigError, load_config, missing).value)


def test_cli_reports_config_error_and_exits_2(tmp_path):
    path = _write(tmp_path, lambda r: r["control"].update(rate_hz=5000))
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(path), "hil", "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert str(path) in proc.stderr and "control.rate_hz = 5000" in proc.stderr
    assert "less than or equal to 1000" in proc.stderr
