"""One scalar policy for every file exoctl loads: YAML 1.2 core types, strict numbers.

Each configuration below loaded without error before, with a value its writer did not mean:
``on`` and ``yes`` as 1.0, ``true`` as 1 s, ``1:20`` as 80 (base 60), ``1_20`` as 120, text
``"40"`` as 40. Each is now refused in one line naming the file, the line, the key and the
form that is allowed.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, MODELS_DIR, ConfigError, load_config
from exoctl.config.yamlfile import read_yaml
from exoctl.data.dataset import load_dataset
from exoctl.data.spec import DatasetError
from exoctl.hil.scenarios import load_scenario
from exoctl.signal.calibration import CalibrationError, load_calibration

LOCATED = re.compile(r"^(?P<file>[^\n]+?):(?P<line>\d+): (?P<key>[^\n =]+?)(?: = [^\n]*)?: .+$")


def _config(tmp_path: Path, old: str, new: str) -> Path:
    text = DEFAULT_CONFIG.read_text().replace("exoctl:models", str(MODELS_DIR))
    assert text.count(old) >= 1, old
    p = tmp_path / "exoctl.yaml"
    p.write_text(text.replace(old, new, 1))
    return p


def _refused(p: Path) -> tuple[re.Match[str], str]:
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert "\n" not in msg, msg
    m = LOCATED.match(msg)
    assert m and m["file"] == str(p), msg
    line = p.read_text().splitlines()[int(m["line"]) - 1]
    return m, line


@pytest.mark.parametrize("word", ["yes", "on", "On", "NO", "off"])
def test_yaml11_boolean_words_as_an_assist_gain_are_refused(tmp_path, word):
    p = _config(tmp_path, "assist_gain: {hip_l: 0.3,", f"assist_gain: {{hip_l: {word},")
    m, line = _refused(p)
    assert m["key"] == "control.assist_gain.hip_l" and "assist_gain" in line
    assert "true or false" in m.string and "YAML 1.1" in m.string


def test_boolean_as_a_timeout_is_refused(tmp_path):
    m, line = _refused(_config(tmp_path, "emg_timeout_s: 0.2", "emg_timeout_s: true"))
    assert m["key"] == "safety.emg_timeout_s" and "emg_timeout_s" in line
    assert "must be a number, written without quotes" in m.string


@pytest.mark.parametrize(
    ("written", "why"),
    [
        ("1:20", "base-60"),
        ("1_20", "grouped with '_'"),
        ("040", "leading zero"),
        ("0b101", "binary"),
        ("yes", "true or false"),
        ('"40"', "must be a number, written without quotes"),
        ("'40.0'", "must be a number, written without quotes"),
    ],
)
def test_torque_limit_written_in_a_guessed_form_is_refused(tmp_path, written, why):
    p = _config(tmp_path, "torque_limit_nm: 40.0,", f"torque_limit_nm: {written},")
    m, line = _refused(p)
    assert m["key"] == "device.joints[0].torque_limit_nm" and "torque_limit_nm" in line
    assert why in m.string


def test_text_for_an_integer_and_a_boolean_is_refused(tmp_path):
    m, _ = _refused(_config(tmp_path, "max_overrun_streak: 20", 'max_overrun_streak: "20"'))
    assert m["key"] == "safety.max_overrun_streak" and "whole number" in m.string
    m, _ = _refused(_config(tmp_path, "low_latency: true", 'low_latency: "true"'))
    assert m["key"] == "device.serial.low_latency" and "true or false" in m.string


def test_yaml12_forms_are_read(tmp_path):
    """What YAML 1.2 calls a number is one; quoted words stay text."""
    p = tmp_path / "f.yaml"
    p.write_text("a: 1e-3\nb: 0o17\nc: 0x1f\nd: .5\ne: 'yes'\nf: 2024-01-02\ng: 0\nh: True\n")
    assert read_yaml(p, "x").data == {
        "a": 0.001,
        "b": 15,
        "c": 31,
        "d": 0.5,
        "e": "yes",
        "f": "2024-01-02",
        "g": 0,
        "h": True,
    }


@pytest.mark.parametrize("tagged", ["!!bool yes", "!!int 1_20", "!!float 1:20"])
def test_explicit_tags_take_only_yaml12_forms(tmp_path, tagged):
    m, _ = _refused(_config(tmp_path, "torque_limit_nm: 40.0,", f"torque_limit_nm: {tagged},"))
    assert m["key"] == "device.joints[0].torque_limit_nm"


def test_calibration_numbers_given_as_text_are_refused(tmp_path):
    src = MODELS_DIR / "sim_calibration.yaml"
    raw = yaml.safe_load(src.read_text())
    raw["mvc"][2] = "40"
    p = tmp_path / "cal.yaml"
    p.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(CalibrationError, match=r"mvc\[2\] = '40': must be a number"):
        load_calibration(p)
    p.write_text(src.read_text().replace("mvc: [", "mvc: [on, ", 1))
    with pytest.raises(CalibrationError, match=r":\d+: mvc\[0\]: on: not a boolean"):
        load_calibration(p)


def test_scenario_duration_in_base_60_is_refused(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("description: x\nduration_s: 1:20\n")
    with pytest.raises(ConfigError, match=r"s\.yaml:2: duration_s: 1:20: a base-60"):
        load_scenario(str(p))


def test_dataset_description_number_as_text_is_refused(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text(
        "format: exoctl-dataset/1\nbody_mass_kg: '70'\ntrials:\n"
        "  - name: t\n    emg: {file: e.csv, kind: raw, channels: {m: 1}}\n"
    )
    with pytest.raises(DatasetError, match=r"body_mass_kg = '70': must be a number"):
        load_dataset(p)


def test_scenario_injection_parameter_as_text_is_refused(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("duration_s: 5\ninject:\n  - {at_s: 1, kind: emg_flat, channel: '5'}\n")
    with pytest.raises(
        ConfigError, match=r"s\.yaml:3: inject\[0\]\.channel: '5': must be a finite number"
    ):
        load_scenario(str(p))
