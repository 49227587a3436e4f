"""Dataset descriptions: simulator recordings exported as lab files and read back."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from exoctl.data.dataset import DatasetError, load_dataset
from exoctl.data.export import XdfStream, export_recording, write_sto, write_xdf


@pytest.mark.parametrize("fmt", ["sto", "csv", "xdf"])
def test_export_and_load_recover_the_recording(tmp_path, recording, fmt):
    desc = export_recording(recording, tmp_path, fmt=fmt, trial="walk", body_mass_kg=70.0)
    ds = load_dataset(desc)
    assert ds.muscles == recording.muscles and ds.joints == recording.joints
    tr = ds.load_trial("walk")
    assert tr.fs_hz == pytest.approx(2000.0)
    # the kinematics start 50 ms late and end before the EMG: the common span is theirs
    emg_start = tr.files[0].timing.start_s  # XDF: LSL clock, not 0
    assert tr.t[0] - emg_start == pytest.approx(0.05, abs=1e-9)
    assert not tr.interpolated_emg
    k0 = int(round((tr.t[0] - emg_start) * 2000))
    n = tr.t.size
    np.testing.assert_allclose(tr.emg, recording.emg[k0 : k0 + n], rtol=1e-6, atol=1e-6)
    # moments and angles are back in our convention (flexion +, N m, rad), interpolated
    # from 100 Hz: exact at the kinematic samples, close in between
    np.testing.assert_allclose(tr.torque[::20], recording.torque[k0 : k0 + n : 20], atol=1e-5)
    np.testing.assert_allclose(tr.angles[::20], recording.angles[k0 : k0 + n : 20], atol=1e-6)
    span = np.ptp(recording.torque, axis=0)
    err = np.abs(tr.torque - recording.torque[k0 : k0 + n])
    assert np.all(np.percentile(err, 99, axis=0) < 0.01 * span)


def test_jittered_emg_is_resampled_and_gaps_reported(tmp_path, recording):
    rng = np.random.default_rng(0)
    n = 4000
    t = recording.t[:n] + rng.normal(0, 2e-5, n)
    t[2000:] += 0.02  # a 20 ms hole
    emg = recording.emg[:n, :2]
    write_sto(tmp_path / "e.sto", t, emg, ["a", "b"])
    (tmp_path / "d.yaml").write_text(
        yaml.safe_dump(
            {
                "format": "exoctl-dataset/1",
                "trials": [
                    {
                        "name": "x",
                        "emg": {
                            "file": "e.sto",
                            "kind": "raw",
                            "units": "mV",
                            "channels": {"m1": "a", "m2": "b"},
                        },
                    }
                ],
            }
        )
    )
    tr = load_dataset(tmp_path / "d.yaml").load_trial("x")
    assert tr.interpolated_emg
    assert tr.fs_hz == 2000.0
    assert np.allclose(np.diff(tr.t), 1 / 2000.0)
    assert tr.files[0].timing.gaps == 1
    # units: mV -> uV
    assert np.abs(tr.emg).max() == pytest.approx(1000 * np.abs(emg).max(), rel=0.05)
    assert tr.torque is None and tr.joints == ()


def _desc(tmp_path, recording, **edit):
    desc = export_recording(recording, tmp_path, fmt="sto", trial="walk")
    raw = yaml.safe_load(desc.read_text())
    for key, value in edit.items():
        node = raw["trials"][0]
        *path, last = key.split("__")
        for p in path:
            node = node[p]
        if value is None:
            node.pop(last)
        else:
            node[last] = value
    desc.write_text(yaml.safe_dump(raw, sort_keys=False))
    return desc


def test_missing_file_names_file_and_key(tmp_path, recording):
    desc = _desc(tmp_path, recording, moment__file="nowhere.sto")
    with pytest.raises(DatasetError) as ei:
        load_dataset(desc).load_trial("walk")
    msg = str(ei.value)
    assert str(desc) in msg and "trials[0] (walk).moment.file: nowhere.sto: file not found" in msg


def test_missing_column_names_file_key_and_columns(tmp_path, recording):
    desc = _desc(tmp_path, recording)
    raw = yaml.safe_load(desc.read_text())
    raw["trials"][0]["emg"]["channels"]["vastus_medialis_r"] = "EMG99"
    desc.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(DatasetError) as ei:
        load_dataset(desc).load_trial("walk")
    msg = str(ei.value)
    assert "emg.channels.vastus_medialis_r" in msg and "'EMG99' not found" in msg
    assert "walk_emg.sto" in msg and "EMG16" in msg


def test_description_errors_are_named(tmp_path, recording):
    desc = _desc(tmp_path, recording, moment__units="lbft")
    with pytest.raises(DatasetError, match=r"trials\[0\]\.moment\.units = 'lbft'"):
        load_dataset(desc)
    desc = _desc(tmp_path, recording, moment__units="Nm/kg")
    with pytest.raises(DatasetError, match="Nm/kg but no body_mass_kg"):
        load_dataset(desc).load_trial("walk")
    desc = _desc(tmp_path, recording, angle__columns={"ankle_l": "x"})
    with pytest.raises(DatasetError, match="ankle_l"):
        load_dataset(desc)
    with pytest.raises(DatasetError, match="no trial named 'run'"):
        load_dataset(_desc(tmp_path, recording)).load_trial("run")


def test_trials_must_map_the_same_muscles(tmp_path, recording):
    desc = export_recording(recording, tmp_path, fmt="sto", trial="a")
    export_recording(recording, tmp_path, fmt="sto", trial="b")
    raw = yaml.safe_load(desc.read_text())
    raw["trials"][1]["emg"]["channels"].pop("gluteus_maximus_r")
    desc.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(DatasetError, match=r"trials\[1\] \(b\)\.emg\.channels maps muscles"):
        load_dataset(desc)


def test_one_leg_subset_and_column_indices(tmp_path, recording_factory):
    """A lab with one leg and a few muscles: only what the description names is used."""
    rec = recording_factory(
        3.0, muscles=["rectus_femoris_r", "biceps_femoris_r"], joints=["knee_r"]
    )
    t = rec.t + 100.0
    write_xdf(
        tmp_path / "one.xdf",
        [XdfStream("amp", "EMG", t, rec.emg, ["c0", "c1"], 2000.0)],
    )
    (tmp_path / "d.yaml").write_text(
        yaml.safe_dump(
            {
                "format": "exoctl-dataset/1",
                "muscles": ["biceps_femoris_r", "rectus_femoris_r"],
                "trials": [
                    {
                        "name": "t",
                        "emg": {
                            "file": "one.xdf",
                            "stream": "amp",
                            "kind": "raw",
                            "channels": {"rectus_femoris_r": 0, "biceps_femoris_r": 1},
                        },
                    }
                ],
            }
        )
    )
    tr = load_dataset(tmp_path / "d.yaml").load_trial("t")
    assert tr.muscles == ("biceps_femoris_r", "rectus_femoris_r")
    np.testing.assert_allclose(tr.emg[:, 0], rec.emg[:, 1], rtol=1e-6)


def test_nan_time_stamps_are_refused(tmp_path):
    (tmp_path / "e.csv").write_text("time,a\n0.0,1\n,2\n0.002,3\n")
    (tmp_path / "d.yaml").write_text(
        yaml.safe_dump(
            {
                "format": "exoctl-dataset/1",
                "trials": [
                    {"name": "x", "emg": {"file": "e.csv", "kind": "raw", "channels": {"m": "a"}}}
                ],
            }
        )
    )
    with pytest.raises(DatasetError, match=r"trials\[0\] \(x\)\.emg: .*e.csv: 1 time stamp"):
        load_dataset(tmp_path / "d.yaml").load_trial("x")
