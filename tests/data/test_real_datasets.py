"""The shared real data sets load exactly as shipped, through the descriptions in datasets/.

The files live in ``../shared/data`` beside the repository (CI puts ``shared/`` beside the
clone); they are never copied here. Without that folder these tests skip, saying so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from exoctl.cli import main
from exoctl.data.dataset import load_dataset

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared" / "data"
DATASETS = REPO / "datasets"

pytestmark = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"the shared real data is not beside the repository ({SHARED})"
)


@pytest.mark.parametrize(
    "name", ["ceinms-lowerlimb-s06.yaml", "moco-3dwalking.yaml", "falisse2019.yaml"]
)
def test_data_check_passes_on_each_shipped_description(name, capsys):
    code = main(["data", "check", str(DATASETS / name)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "OK:" in out and "0 error(s)" in out


def test_ceinms_walk_and_run_as_shipped():
    ds = load_dataset(DATASETS / "ceinms-lowerlimb-s06.yaml")
    assert ds.trial_names == ["walk36", "run81"] and ds.joints == ("hip_r", "knee_r")
    walk = ds.load_trial("walk36")
    assert walk.fs_hz == 100.0 and walk.t.size == 6097 and not walk.interpolated_emg
    assert walk.emg_kind == "enveloped" and walk.emg_normalised
    # first row of emgFilt.sto (rows end with a tab; cells padded with spaces)
    np.testing.assert_array_equal(walk.emg[0, :3], [0.070021, 0.195391, 0.069192])
    # id.sto row 0: hip_flexion_r_moment 21.69478149; knee negated (OpenSim: flexion negative)
    assert walk.torque[0, 0] == pytest.approx(21.69478149)
    ik = walk.files[2]
    assert ik.units.startswith("deg")  # from the inDegrees=yes header
    assert walk.angles[0, 0] == pytest.approx(np.radians(-12.73088893))
    assert walk.angles[:, 1].min() > -0.05  # knee flexion positive after the sign change
    assert all(not f.warnings for f in walk.files)
    run = ds.load_trial("run81")
    assert run.t.size == 5838 and np.isfinite(run.emg).all()
    assert run.emg.max() == pytest.approx(1.003909, abs=1e-6)


def test_moco_rates_spans_and_header_warning():
    ds = load_dataset(DATASETS / "moco-3dwalking.yaml")
    tr = ds.load_trial("walk")
    emg, moment, angle = tr.files
    assert emg.timing.rate_hz == pytest.approx(2000.0) and moment.timing.rate_hz == pytest.approx(
        1000.0
    )
    # a trial is the span all files cover: the moments' 0.45..1.799 s, on the EMG's 2 kHz grid
    assert (
        tr.fs_hz == 2000.0 and tr.t[0] == pytest.approx(0.45) and tr.t[-1] == pytest.approx(1.799)
    )
    assert not tr.interpolated_emg and tr.emg.max() <= 1.0
    assert any("nColumns=40, the file has 32 columns" in w for w in angle.warnings)
    assert tr.envelope is not None and tr.envelope.lowpass_hz == 7.5


def test_falisse_cycles_on_the_stated_stride():
    ds = load_dataset(DATASETS / "falisse2019.yaml")
    assert len(ds.trial_names) == 11 and len(ds.muscles) == 14
    full = []
    for name in ds.trial_names:
        tr = ds.load_trial(name)
        assert tr.t.size == 100 and tr.fs_hz == pytest.approx(100 / 1.1)
        if np.isfinite(tr.emg).all():
            full.append(name)
    assert full == ["cycle01", "cycle03", "cycle05", "cycle07", "cycle08", "cycle10"]
    c2 = ds.load_trial("cycle02")
    assert c2.files[0].nans and np.isfinite(c2.emg[:, ds.muscles.index("soleus_r")]).all()
