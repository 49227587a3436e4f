"""A real recording through the whole controller: ``exoctl hil --replay`` on the committed
excerpt (``tests/fixtures/ceinms-s06-walk36``: 8 s of ceinms-lowerlimb-s06 walk36, 100 Hz
envelopes, Apache-2.0), so these never skip.

The model is a lagged ridge trained on the excerpt by ``exoctl train`` (seconds, no PyTorch);
its joints are the right leg's, so on the default four-joint device the left joints get no
assistance. A replay whose EMG stalls, or whose firmware stops reporting, trips the same
watchdogs as live hardware.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from exoctl.cli import main

pytestmark = pytest.mark.hil

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "ceinms-s06-walk36" / "dataset.yaml"


@pytest.fixture(scope="module")
def ridge(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("replay") / "ridge.onnx"
    code = main(["train", "--data", str(FIXTURE), "--model-type", "ridge", "--out", str(out)])
    assert code == 0
    return out


def _hil(config: Path, *args: str) -> dict:
    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(config), "hil", "--replay",
         str(FIXTURE), "--trial", "walk36", "--json", *args],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    return json.loads(proc.stdout)


def test_a_short_replay_scores_the_live_estimate_against_the_measured_moments(
    ridge, realtime_config
):
    # The fixture holds 20-28 s: from 25 the stream starts the full default preroll (5 s)
    # before the scored window, the time the controller has to start (its estimator process,
    # the stream checks); on a machine busy with other tests that start can take 6-7 s, and the
    # session then begins inside the window: at least 1 s of it must be scored.
    s = _hil(realtime_config, "--from", "25", "--preroll", "5", "--model", str(ridge))
    rp = s["replay"]
    rec = rp["recording"]
    assert rec["fs_hz"] == 100.0 and rec["emg_kind"] == "enveloped" and len(rec["muscles"]) == 9
    assert rp["scored_from_s"] >= 25.0 and rp["scored_to_s"] == 28.0
    assert rp["scored_ticks"] > 500
    # the controller took the 100 Hz envelopes at their rate: every streamed sample arrived
    assert s["emg_samples"]["received"] > 0 and s["faults"] == [], s["faults"]
    for j in ("hip_r", "knee_r"):
        live, off = rp["live"][j]["r2"], rp["offline"][j]["r2"]
        assert live > 0.5, rp
        # the same model, the same ticks: live as offline (the done-when's 0.01 is measured on
        # a quiet machine; under other tests' load ticks run late, hence the margin)
        assert abs(live - off) < 0.05, rp
        assert rp["delay_ms"][j] is not None and 0 <= rp["delay_ms"][j] <= 300
        assert rp["command"][j]["peak_nm"] > 0
    # a right-leg model on the four-joint device: the left joints get nothing, and it says so
    assert rp["assisted_joints"] == ["hip_r", "knee_r"]
    assert rp["unassisted_joints"] == ["hip_l", "knee_l"]
    for j in ("hip_l", "knee_l"):
        assert rp["command"][j]["peak_nm"] == 0.0
    assert s["r2"] == {j: rp["live"][j]["r2"] for j in ("hip_r", "knee_r")}


def _scenario(tmp_path: Path, inject: list[dict]) -> Path:
    path = tmp_path / "replay_fault.yaml"
    detected = ["emg_stale"] if inject[0]["kind"] == "emg_stop" else ["telemetry_stale"]
    path.write_text(
        yaml.safe_dump(
            {
                "description": "a fault during a replay",
                "duration_s": 6.0,
                "inject": inject,
                "expect": {
                    "fault_injection": 0,
                    "detected_as": detected,
                    "watchdog_s": 0.2,
                    "zero_within_s": 0.05,
                },
            }
        )
    )
    return path


@pytest.mark.parametrize(
    ("inject", "detected_as"),
    [
        ([{"at_s": 2.5, "kind": "emg_stop"}], "emg_stale"),
        ([{"at_s": 2.5, "kind": "set_mute", "mute": True}], "telemetry_stale"),
    ],
    ids=["emg_stalls", "telemetry_stops"],
)
def test_a_replay_whose_input_stops_trips_the_watchdog_live_hardware_trips(
    ridge, realtime_config, tmp_path, inject, detected_as
):
    s = _hil(realtime_config, "--model", str(ridge),
             "--scenario", str(_scenario(tmp_path, inject)))  # fmt: skip
    ev = s["events"][0]
    # The watchdog of the input that stopped trips, whatever else trips first: the layer
    # records every watchdog's rising edge, also after a latch. Beside another test's
    # real-time processes the estimator can stall first (estimate_stale), which is right too.
    hit = next(
        (f for f in s["faults"]
         if f["kind"] == detected_as and f["t_detected"] >= ev["injected_at_s"]),
        None,
    )  # fmt: skip
    assert hit is not None, s["faults"]
    assert ev["detected_as"] in (detected_as, "estimate_stale"), s["events"]
    # the safety layer's timeouts (0.2 s): detected within twice that, torque zero at once
    assert hit["t_detected"] - ev["injected_at_s"] <= 0.4, hit
    assert hit["t_zero"] is not None and hit["t_zero"] - hit["t_detected"] <= 0.05, hit
    assert ev["zero_at_s"] is not None and ev["zero_at_s"] - ev["detected_at_s"] <= 0.05, ev
    assert s["safety_state"] == "FAULT_LATCHED"
    assert s["limit_violations"] == 0


def test_replay_session_streams_one_of_our_own_recordings(ridge, realtime_config, tmp_path):
    """A session recorded by the daemon's recorder (here: the excerpt's EMG as streamed and
    the right leg's angles as the firmware reported them) replayed to the same model: it
    has no measured moments, so the summary shows what the model would have commanded."""
    import numpy as np

    from exoctl.config.schema import load_config
    from exoctl.data.dataset import load_dataset
    from exoctl.recordings.recorder import Recorder

    trial = load_dataset(FIXTURE).load_trial("walk36")
    raw = yaml.safe_load(realtime_config.read_text())
    raw["service"]["data_dir"] = str(tmp_path / "data")
    raw["emg"]["muscles"] = list(trial.muscles)
    raw["emg"]["sampling_rate_hz"] = 100.0
    raw["estimator"]["input"] = "enveloped"
    raw["simulator"]["emg_chunk_samples"] = 1
    config = tmp_path / "session.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    cfg = load_config(config)
    rec = Recorder(cfg.service.data_dir)
    sid = rec.start_session("p01", protocol="warm-up", config=cfg.model_dump(mode="json"),
                            streams={"emg_raw": {"columns": list(trial.muscles)}})  # fmt: skip
    stamps = 1000.0 + np.arange(trial.emg.shape[0]) / trial.fs_hz
    for i in range(0, len(stamps), 50):
        rec.submit_chunk("emg_raw", stamps[i], trial.emg[i : i + 50].astype(np.float32),
                         t=stamps[i : i + 50])  # fmt: skip
    ticks = 1000.0 + np.arange(0, trial.duration_s, 0.002)
    tel = np.zeros((len(ticks), 8))  # angles of hip_l, hip_r, knee_l, knee_r, then applied
    assert trial.angles is not None
    for dev, col in ((1, 0), (3, 1)):
        tel[:, dev] = np.interp(ticks - 1000.0, stamps - 1000.0, trial.angles[:, col])
    rec.submit_chunk("telemetry", ticks[0], tel, t=ticks)
    rec.stop_session()
    rec.close()

    proc = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(config), "hil", "--replay-session",
         sid, "--from", "2", "--model", str(ridge), "--json"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-2000:])
    s = json.loads(proc.stdout)
    rp = s["replay"]
    assert rp["recording"]["source"]["kind"] == "session"
    assert rp["recording"]["fs_hz"] == 100.0 and rp["recording"]["has_angles"]
    assert rp["live"]["hip_r"]["r2"] is None  # no measured moments to score against
    assert rp["command"]["hip_r"]["peak_nm"] > 0 and rp["command"]["knee_r"]["peak_nm"] > 0
    assert rp["command"]["hip_l"]["peak_nm"] == 0.0
    assert s["faults"] == [], s["faults"]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--trial", "walk36"], "only go with --replay"),
        (["--replay", str(FIXTURE)], "--replay needs --trial"),
        (["--replay", str(FIXTURE), "--trial", "walk36", "--replay-session", "x"], "choose one"),
    ],
)
def test_replay_options_that_do_not_fit_together_are_usage_errors(args, says, capsys):
    assert main(["hil", *args]) == 2
    assert says in capsys.readouterr().err


def test_a_window_outside_the_recording_is_refused_before_any_child_starts(capsys):
    code = main(["hil", "--replay", str(FIXTURE), "--trial", "walk36", "--from", "30"])
    assert code == 1
    err = capsys.readouterr().err
    assert "runs from 20 s to 28 s" in err and "Traceback" not in err
