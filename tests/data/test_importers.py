"""Readers for .sto/.mot, CSV and XDF, on files written here (and by our writers)."""

from __future__ import annotations

import numpy as np
import pytest

from exoctl.data.export import XdfStream, write_csv, write_sto, write_xdf
from exoctl.data.importers import (
    ImportErrorWithPath,
    read_csv,
    read_sto,
    read_table,
    read_xdf,
    timing_summary,
)

OPENSIM_MOT = """Coordinates
version=1
nRows=3
nColumns=3
inDegrees=yes

Units are S.I. units (second, meters, Newtons, ...)
If the header above contains a line with 'inDegrees', this indicates whether rotational values are in degrees (yes) or radians (no).

endheader
time\thip_flexion_r\tknee_angle_r
0.00\t10.5\t-5.0
0.01\t11.0\t-6.0
0.02\t11.5\tnan
"""


def test_read_opensim_mot_as_written_by_opensim(tmp_path):
    p = tmp_path / "ik.mot"
    p.write_text(OPENSIM_MOT)
    tab = read_sto(p)
    assert tab.columns == ("hip_flexion_r", "knee_angle_r")
    assert tab.meta["inDegrees"] is True
    np.testing.assert_allclose(tab.t, [0.0, 0.01, 0.02])
    assert tab.data[1, 1] == -6.0 and np.isnan(tab.data[2, 1])
    assert tab.index("KNEE_ANGLE_R") == 1  # case-insensitive fallback
    with pytest.raises(ImportErrorWithPath, match="'ankle' not found; columns there"):
        tab.index("ankle")


def test_sto_round_trip_and_errors(tmp_path):
    t = np.arange(50) / 100.0
    x = np.random.default_rng(0).normal(size=(50, 3))
    tab = read_sto(write_sto(tmp_path / "a.sto", t, x, ["a", "b", "c"]))
    np.testing.assert_allclose(tab.data, x, rtol=1e-8)
    assert tab.meta["inDegrees"] is False
    bad = tmp_path / "bad.sto"
    bad.write_text("version=1\ntime\ta\n0\t1\n")
    with pytest.raises(ImportErrorWithPath, match="endheader"):
        read_sto(bad)
    ragged = tmp_path / "ragged.sto"
    ragged.write_text("endheader\ntime\ta\tb\n0\t1\t2\n0.1\t1\n")
    with pytest.raises(ImportErrorWithPath, match=r"ragged.sto:4: 2 values, expected 3"):
        read_sto(ragged)


def test_csv_delimiters_blanks_and_time_column(tmp_path):
    p = tmp_path / "e.csv"
    p.write_text("Time;RF;VL\n0.0;1.5;2\n0.5;;3\n1.0;2.5;4\n")
    tab = read_csv(p, time_column="time")
    assert tab.columns == ("RF", "VL")
    assert np.isnan(tab.data[1, 0])
    np.testing.assert_allclose(tab.t, [0.0, 0.5, 1.0])
    with pytest.raises(ImportErrorWithPath, match="time column 'seconds' not found"):
        read_csv(p, time_column="seconds")
    t = np.arange(10) / 10.0
    tab2 = read_csv(write_csv(tmp_path / "w.csv", t, np.ones((10, 2)), ["x", "y"]))
    assert tab2.columns == ("x", "y") and tab2.data.shape == (10, 2)


def test_xdf_written_by_our_writer_is_read_by_pyxdf(tmp_path):
    rng = np.random.default_rng(1)
    t = 5000.0 + np.arange(3000) / 1000.0
    emg = rng.normal(size=(3000, 4)).astype(np.float32)
    tk = 5000.02 + np.arange(250) / 100.0
    kin = rng.normal(size=(250, 2))
    p = write_xdf(
        tmp_path / "rec.xdf",
        [
            XdfStream("amp", "EMG", t, emg, ["RF", "VL", "BF", "ST"], 1000.0, "microvolts"),
            XdfStream("mocap", "MoCap", tk, kin, ["hip", "knee"], 100.0, channel_format="double64"),
        ],
    )
    cache: dict = {}
    tab = read_xdf(p, "EMG", cache=cache)  # by type
    assert tab.columns == ("RF", "VL", "BF", "ST")
    assert tab.nominal_rate_hz == 1000.0 and tab.meta["unit"] == "microvolts"
    np.testing.assert_array_equal(tab.data, emg)
    np.testing.assert_allclose(tab.t, t, atol=1e-9)
    kin_tab = read_table(p, stream="mocap", xdf_cache=cache)  # by name, from the cache
    np.testing.assert_array_equal(kin_tab.data, kin)
    assert len(cache) == 1
    with pytest.raises(
        ImportErrorWithPath, match=r"no stream named or typed 'EEG'.*amp \(type EMG\)"
    ):
        read_xdf(p, "EEG")
    with pytest.raises(ImportErrorWithPath, match="needs `stream:`"):
        read_table(p)


def test_read_table_refuses_unknown_and_missing(tmp_path):
    with pytest.raises(ImportErrorWithPath, match="file not found"):
        read_table(tmp_path / "x.sto")
    (tmp_path / "x.dat").write_text("1")
    with pytest.raises(ImportErrorWithPath, match="cannot tell the format"):
        read_table(tmp_path / "x.dat")
    (tmp_path / "junk.xdf").write_bytes(b"NOPE")
    with pytest.raises(ImportErrorWithPath, match="cannot read as XDF"):
        read_table(tmp_path / "junk.xdf", stream="EMG")


def test_timing_summary_finds_gaps_and_rate():
    t = np.concatenate([np.arange(100) / 200.0, 0.6 + np.arange(100) / 200.0])
    tm = timing_summary(t)
    assert tm.rate_hz == pytest.approx(200.0)
    assert tm.gaps == 1
    assert tm.longest_gap_s == pytest.approx(0.6 - 99 / 200.0 - 1 / 200.0)
    assert tm.non_increasing == 0


def test_csv_units_row_can_be_skipped(tmp_path):
    p = tmp_path / "amp.csv"
    p.write_text("time,RF\ns,mV\n0.0,0.1\n0.001,0.2\n")
    with pytest.raises(ImportErrorWithPath, match="not a number"):
        read_csv(p)
    tab = read_csv(p, skip_rows=1)
    np.testing.assert_allclose(tab.data[:, 0], [0.1, 0.2])


def test_sto_as_real_labs_write_it(tmp_path):
    """Trailing tabs, padded cells, CRLF, blank lines, NaN cells and a wrong nRows all load."""
    p = tmp_path / "emgFilt.sto"
    lines = [
        "Normalized EMG Linear Envelopes",
        "nRows=4",  # the file has 3 rows: a warning, not an error
        "nColumns=3",
        "",
        "endheader",
        "time\t  soleus_r\t tib_ant_r\t",
        "0\t  0.070021\t  0.022299\t",
        "",
        "0.01\t  NaN\t\t",  # NaN cell, empty cell
        "0.02\t  0.068455\t  -nan(ind)\t",
        "",
    ]
    p.write_bytes("\r\n".join(lines).encode())
    tab = read_sto(p)
    assert tab.columns == ("soleus_r", "tib_ant_r")
    np.testing.assert_allclose(tab.t, [0.0, 0.01, 0.02])
    assert tab.data[0, 0] == 0.070021 and np.isnan(tab.data[1]).all() and np.isnan(tab.data[2, 1])
    assert len(tab.warnings) == 1 and "nRows=4, the file has 3 data rows" in tab.warnings[0]
    assert str(p) in tab.warnings[0]


def test_sto_header_counts_missing_or_right_give_no_warning(tmp_path):
    p = tmp_path / "a.sto"
    p.write_text("version=1\nnRows=2\nnColumns=2\ninDegrees=no\nendheader\ntime\ta\n0\t1\n1\t2\n")
    assert read_sto(p).warnings == ()
    q = tmp_path / "b.sto"
    q.write_text("endheader\ntime a\n0 1\n1 2\n")  # whitespace-separated, no counts at all
    tab = read_sto(q)
    assert tab.warnings == () and tab.columns == ("a",) and tab.meta == {}
    r = tmp_path / "c.mot"
    r.write_text("name c\ndatacolumns 3\ndatarows 2\nendheader\ntime\ta\n0\t1\n1\t2\n")
    assert "nColumns=3, the file has 2 columns" in read_sto(r).warnings[0]


def test_mat_gait_cycles_on_a_stated_stride(tmp_path):
    from scipy.io import savemat

    rng = np.random.default_rng(0)
    allv = rng.random((100, 3, 4))
    allv[:, 1, 2] = np.nan
    savemat(
        tmp_path / "x.mat",
        {"D": {"EMG": {"s1": {"all": allv, "colheaders": np.array(["A", "B", "C"], object)}}}},
    )
    tab = read_table(tmp_path / "x.mat", variable="D.EMG.s1", cycle=2, stride_s=1.25)
    assert tab.columns == ("A", "B", "C")
    np.testing.assert_array_equal(tab.data[:, 0], allv[:, 0, 2])
    assert np.isnan(tab.data[:, 1]).all()
    np.testing.assert_allclose(tab.t, np.arange(100) * 0.0125)
    assert tab.nominal_rate_hz == pytest.approx(80.0)
    with pytest.raises(ImportErrorWithPath, match="cycle 4 out of range"):
        read_table(tmp_path / "x.mat", variable="D.EMG.s1", cycle=4, stride_s=1.0)
    with pytest.raises(ImportErrorWithPath, match="D.EMG has no field 'S1'; fields: \\['s1'\\]"):
        read_table(tmp_path / "x.mat", variable="D.EMG.S1", cycle=0, stride_s=1.0)
    with pytest.raises(ImportErrorWithPath, match="needs `variable:`, `cycle:` and `stride_s:`"):
        read_table(tmp_path / "x.mat")
