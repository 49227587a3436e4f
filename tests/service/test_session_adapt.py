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
from exoctl.service import recorder as R
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
        ref = _record(run_cli, capsys, d, 12.0)
        model, cal = str(d.cfg.model.path), str(d.cfg.estimator.calibration)
        c = ["--config", str(d.cfg_path)]
        assert run_cli([*c, "patients", "accept", "P7", "--model", model,
                        "--calibration", cal, "--reference", ref]) == 0  # fmt: skip
        capsys.readouterr()
        warm = _record(run_cli, capsys, d, 12.0)

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
