"""The clinic's adaptation workflow on the HIL bench, nothing mocked: the daemon records a
reference and a warm-up of the simulated patient (EMG over LSL on loopback, the firmware on a
pty), ``exoctl adapt --session`` runs on the recording (numpy only), the accepted result goes
into the registry, and after a ``kill -9`` of the daemon and a restart, ``session start
--patient`` runs the registry's model and the recording names it."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from exoctl.cli import main as exoctl_main
from exoctl.recordings import recorder as R
from exoctl.service.registry import Registry
from tests.service.test_daemon import Daemon, Sim, _cli, _start_session

pytestmark = pytest.mark.hil


def _record(run_cli, capsys, d: Daemon, seconds: float) -> str:
    sid = _start_session(run_cli, capsys, d, "--patient", "P7", "--assist", "0")
    time.sleep(seconds)
    code, _, err = _cli(run_cli, capsys, d, "session", "stop")
    assert code == 0, err
    return sid


def test_adapt_a_recorded_warm_up_accept_it_and_survive_kill_9(
    tmp_path, realtime_config, write_config, run_cli, capsys
) -> None:
    sim = Sim(tmp_path, realtime_config)
    d = Daemon(tmp_path, sim.endpoints, write_config)
    try:
        d.wait_for("READY=1")
        ref = _record(run_cli, capsys, d, 20.0)
        model, cal = str(d.cfg.model.path), str(d.cfg.estimator.calibration)
        c = ["--config", str(d.cfg_path)]
        assert run_cli([*c, "patients", "accept", "P7", "--model", model,
                        "--calibration", cal, "--reference", ref]) == 0  # fmt: skip
        capsys.readouterr()
        warm = _record(run_cli, capsys, d, 20.0)

        out = tmp_path / "P7_gain.calibration.yaml"
        t0 = time.monotonic()
        code = exoctl_main([*c, "adapt", "--session", warm, "--out", str(out), "--accept",
                            "--json"])  # fmt: skip
        seconds = time.monotonic() - t0
        rep = json.loads(capsys.readouterr().out)
        assert code == 0, (rep["verdict"], rep["estimate"])
        assert rep["reference"] == ref and rep["session"] == warm  # from the registry
        assert rep["verdict"]["accepted"], rep["verdict"]
        assert rep["estimate"]["coverage"] > 0.6
        # the same simulated patient and electrodes: every gain within 20 % of 1
        f = np.array(rep["estimate"]["raw_factors"])
        assert np.all(np.abs(f - 1.0) < 0.2), f
        assert rep["not_checked"]  # says what the guard did not check
        print(f"adapt --session: {seconds:.1f} s wall, the step {rep['seconds']:.1f} s")
        assert rep["registry_version"] == 2
        doc = yaml.safe_load(out.read_text())
        assert doc["source"]["gain_from"]["warm_up_session"] == warm

        # the daemon dies mid-idle; the registry is read afresh by the next one
        d.proc.send_signal(signal.SIGKILL)
        assert d.proc.wait(10) == -signal.SIGKILL
        d.messages.clear()
        d._spawn()
        d.wait_for("READY=1")
        sid = _start_session(run_cli, capsys, d, "--patient", "P7", "--assist", "0")
        time.sleep(1.0)
        assert _cli(run_cli, capsys, d, "session", "stop")[0] == 0
    finally:
        d.close()
        sim.close()
    cur = Registry(d.cfg.service.data_dir).current("P7")
    assert cur is not None and cur["version"] == 2
    db = R.find_session(d.cfg.service.data_dir, sid)
    with R.open_session_db(db) as conn:
        info = R.session_info(conn, sid)
        starts = [e for e in R.read_events(conn) if e["kind"] == "session_start"]
    # the recording names the model and calibration it ran with: the registry's version 2
    assert Path(info["calibration_path"]) == out.resolve()
    assert info["calibration_sha256"] == cur["calibration_sha256"]
    assert info["model_sha256"] == cur["model_sha256"]
    assert starts and starts[0]["detail"]["registry_version"] == 2


SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
CEINMS = Path(__file__).resolve().parents[2] / "datasets" / "ceinms-lowerlimb-s06.yaml"


def _store_recording(data_dir: Path, trial, lo: float, hi: float, cal, cal_path: Path,
                     gain: np.ndarray | None = None) -> str:  # fmt: skip
    """Walk or run excerpt as the controller records it: activations (the static shape of the
    normalised envelope) and joint angles per tick, the calibration named."""
    from exoctl.recordings.recorder import Recorder
    from exoctl.recordings.store import Artifact

    n = trial.t.size
    sl = slice(int(lo * n), int(hi * n))
    u = np.clip(trial.emg[sl] / cal.mvc * (1.0 if gain is None else gain), 0.0, 1.0)
    a = np.expm1(-1.0 * u) / np.expm1(-1.0)
    tel = np.hstack([trial.angles[sl], np.zeros_like(trial.angles[sl])])
    rec = Recorder(data_dir, flush_interval_s=0.05)
    try:
        sid = rec.start_session(
            "P9", calibration=Artifact.from_file(cal_path),
            streams={"activation": {"columns": list(trial.muscles)},
                     "telemetry": {"columns": ["angle_hip_r", "angle_knee_r",
                                               "applied_hip_r", "applied_knee_r"]}},
        )  # fmt: skip
        t = rec.clock() + np.arange(a.shape[0]) / trial.fs_hz
        rec.submit_chunk("activation", t[0], a, t=t)
        rec.submit_chunk("telemetry", t[0], tel, t=t)
        rec.stop_session("completed")
    finally:
        rec.close()
    time.sleep(1.1)  # session ids are to the second
    return sid


@pytest.mark.skipif(not SHARED.is_dir(), reason="the shared real data is not there")
def test_adapt_session_from_the_cli_accepts_a_gain_and_refuses_another_task(
    tmp_path, write_config, capsys
) -> None:
    from exoctl.config.schema import load_config
    from exoctl.data.calibrate import calibrate_trials
    from exoctl.data.dataset import load_dataset

    cfg_path = write_config(tmp_path)
    data_dir = load_config(cfg_path).service.data_dir
    ds = load_dataset(CEINMS)
    walk, run = ds.load_trial("walk36"), ds.load_trial("run81")
    cal = calibrate_trials([walk], where=CEINMS).calibration
    cal_path = cal.save(tmp_path / "walk.calibration.yaml")
    drift = np.array([1.4, 0.7, 1.0, 0.6, 1.3, 1.0, 1.0, 0.8, 1.5])
    ref = _store_recording(data_dir, walk, 0.0, 0.25, cal, cal_path)
    warm = _store_recording(data_dir, walk, 0.25, 0.5, cal, cal_path, drift)
    same = _store_recording(data_dir, walk, 0.25, 0.5, cal, cal_path)  # no drift
    other = _store_recording(data_dir, run, 0.0, 0.25, cal, cal_path)
    c = ["--config", str(cfg_path)]
    assert exoctl_main([*c, "adapt", "--session", same, "--reference", ref, "--json"]) == 0
    own = np.array(json.loads(capsys.readouterr().out)["estimate"]["raw_factors"])

    out = tmp_path / "P9.calibration.yaml"
    code = exoctl_main([*c, "adapt", "--session", warm, "--reference", ref, "--out", str(out)])
    text = capsys.readouterr().out
    assert code == 0 and "guard: ACCEPTED" in text, text
    assert "not checked: agreement" in text
    doc = yaml.safe_load(out.read_text())
    got = np.array([doc["gain"][m] for m in walk.muscles])
    # where the walk kept its own amplitude, and the deadband does not leave the factor at 1
    steady = (np.abs(own - 1.0) < 0.1) & (np.abs(drift - 1.0) > 0.1)
    assert steady.sum() >= 4
    assert np.all(np.abs(got[steady] / drift[steady] - 1.0) < 0.15), got

    # another task: refused in words, nothing goes into the registry
    code = exoctl_main([*c, "adapt", "--session", other, "--reference", ref, "--out",
                        str(tmp_path / "run.yaml"), "--accept"])  # fmt: skip
    cap = capsys.readouterr()
    assert code == 5, cap
    assert "guard: REFUSED" in cap.out and "another task or speed" in cap.out
    assert "refused this adaptation; nothing was changed" in cap.err
    assert Registry(data_dir).current("P9") is None
