"""Calibration file round trip, muscle check, and errors that name the file and key."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from exoctl.signal.calibration import Calibration, CalibrationError, load_calibration

MUSCLES = ("rectus_femoris_l", "vastus_lateralis_l", "biceps_femoris_l")


def _cal() -> Calibration:
    W = np.array([[0.9, 0.1], [0.4, 0.0], [0.1, 0.99]])
    return Calibration(MUSCLES, np.array([12.5, 30.0, 7.25]), W, 0.93, {"dataset": "x.yaml"})


def test_round_trip(tmp_path):
    p = _cal().save(tmp_path / "cal.yaml")
    raw = yaml.safe_load(p.read_text())
    assert raw["format"] == "exoctl-calibration/1"
    assert raw["synergies"]["k"] == 2
    got = load_calibration(p)
    assert got.muscles == MUSCLES
    np.testing.assert_array_equal(got.mvc, _cal().mvc)
    np.testing.assert_array_equal(got.W, _cal().W)
    assert got.vaf == pytest.approx(0.93)
    assert got.source["dataset"] == "x.yaml"
    assert got.k == 2


def test_check_muscles_names_both_lists():
    cal = _cal()
    cal.check_muscles(list(MUSCLES))
    with pytest.raises(CalibrationError) as ei:
        cal.check_muscles(["rectus_femoris_l", "gluteus_maximus_l"])
    msg = str(ei.value)
    assert "gluteus_maximus_l" in msg and "vastus_lateralis_l" in msg
    assert "configured" in msg and "calibration" in msg
    with pytest.raises(CalibrationError, match="different order"):
        cal.check_muscles(list(reversed(MUSCLES)))


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda d: d.pop("mvc"), "mvc: required key is missing"),
        (lambda d: d["synergies"].pop("W"), "synergies.W: required key is missing"),
        (lambda d: d.update(format="other/2"), "format"),
        (lambda d: d["mvc"].append(1.0), "mvc: must be a list of 3"),
        (lambda d: d["synergies"]["W"][1].append(0.3), r"synergies.W\[1\] \(vastus_lateralis_l\)"),
        (lambda d: d["synergies"].update(k=0), "synergies.k"),
        (lambda d: d.update(extra=1), "unknown key"),
        (lambda d: d["mvc"].__setitem__(0, -1.0), "positive"),
    ],
)
def test_load_errors_name_file_and_key(tmp_path, edit, match):
    d = _cal().to_dict()
    edit(d)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(d))
    with pytest.raises(CalibrationError, match=match) as ei:
        load_calibration(p)
    assert str(p) in str(ei.value)


def test_missing_file(tmp_path):
    with pytest.raises(CalibrationError, match="cannot read"):
        load_calibration(tmp_path / "nope.yaml")


def test_arrays_are_frozen():
    cal = _cal()
    with pytest.raises(ValueError):
        cal.W[0, 0] = 2.0
