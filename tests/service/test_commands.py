"""The clinician CLI: exit codes, --json, tables, and the recording commands on real files.

The daemon-facing commands are exercised here against a real RPC server with a small
stand-in handler (to pin the exit-code mapping); the whole daemon is driven through the same
commands in test_daemon.py.
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

import numpy as np
import pytest

from exoctl.config.schema import load_config
from exoctl.recordings.recorder import Recorder
from exoctl.service import commands as K
from exoctl.service import rpc


def _record(data_dir: Path) -> str:
    rec = Recorder(data_dir, flush_interval_s=0.05)
    try:
        joints = ["hip_l", "hip_r", "knee_l", "knee_r"]
        sid = rec.start_session(
            "P01",
            protocol="overground",
            streams={
                "torque_estimated": {"columns": joints},
                "torque_command": {"columns": joints},
                "synergy": {"columns": ["s1", "s2", "s3"]},
                "loop_timing": {"columns": ["period", "compute"]},
            },
        )
        t0 = rec.clock()
        t = t0 + np.arange(2000) * 0.002
        est = np.stack([np.sin(2 * np.pi * t / 1.1 + k) * 10 for k in range(4)], 1)
        rec.submit_chunk("torque_estimated", t[0], est, t=t)
        rec.submit_chunk("torque_command", t[0], 0.3 * est, t=t)
        rec.submit_chunk("synergy", t[0], np.abs(est[:, :3]) / 10, t=t)
        timing = np.stack(
            [np.full(2000, 0.002), np.abs(np.random.default_rng(0).normal(3e-4, 1e-4, 2000))], 1
        )
        rec.submit_chunk("loop_timing", t[0], timing, t=t)
        rec.submit_event("assist_change", {"gain": 0.4}, t=t[500])
        rec.submit_event("fault", {"kind": "emg_timeout"}, t=t[1500])
        rec.stop_session("completed")
    finally:
        rec.close()
    return sid


def test_recording_commands(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_config, run_cli
) -> None:
    cfg = write_config(tmp_path)
    data_dir = load_config(cfg).service.data_dir
    sid = _record(data_dir)
    c = ["--config", str(cfg)]

    assert run_cli([*c, "sessions", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == [sid] and rows[0]["end_reason"] == "completed"
    assert run_cli([*c, "sessions", "list"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:3] == ["ID", "PATIENT", "PROTOCOL"]
    assert sid in out and "overground" in out

    assert run_cli([*c, "patients", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0] == {
        "patient": "P01",
        "sessions": 1,
        "last_session": sid,
    }

    assert run_cli([*c, "sessions", "show", sid]) == 0
    out = capsys.readouterr().out
    assert "torque_estimated" in out and "emg_timeout" in out and "completed" in out

    assert (
        run_cli([*c, "sessions", "export", sid, "--format", "csv", "--out", str(tmp_path / "x")])
        == 0
    )
    with (tmp_path / "x" / "torque_command.csv").open() as f:
        r = list(csv.reader(f))
    assert r[0][2:] == ["hip_l", "hip_r", "knee_l", "knee_r"] and len(r) == 2001
    out_npz = tmp_path / "y.npz"
    assert (
        run_cli([*c, "sessions", "export", sid, "--format", "npz", "--out", str(out_npz), "--json"])
        == 0
    )
    assert json.loads(capsys.readouterr().out.splitlines()[-1]) == {"files": [str(out_npz)]}
    assert np.load(out_npz)["synergy"].shape == (2000, 3)

    html = tmp_path / "r.html"
    assert run_cli([*c, "sessions", "report", sid, "--out", str(html)]) == 0
    text = html.read_text()
    assert text.count("<svg") >= 3  # overview, gait cycle, loop timing (tests/service/test_report)
    assert "Knee right" in text and "Emg timeout" in text and "Faults and emergency stops" in text
    assert "<td>period</td><td class=num>2</td>" in text  # p50 of the 2 ms period, in ms

    capsys.readouterr()
    assert run_cli([*c, "sessions", "report", sid, "--out", str(tmp_path / "r.png")]) == 1
    assert "use a .html file name" in capsys.readouterr().err
    assert run_cli([*c, "sessions", "show", "20200101T000000Z-000000"]) == 1
    assert "no session" in capsys.readouterr().err
    assert run_cli([*c, "sessions", "show", "../etc"]) == 1
    with pytest.raises(SystemExit) as bad_patient:  # a usage error, before any file is read
        run_cli([*c, "sessions", "list", "--patient", "../x"])
    assert bad_patient.value.code == K.EXIT_USAGE


class StandIn:
    """Just enough of the daemon's API to pin the CLI's mapping of answers to exit codes."""

    RPC_METHODS = {
        "status": "status",
        "session.start": "session_start",
        "session.stop": "session_stop",
        "assist.set": "assist_set",
        "estop": "estop",
        "fault.clear": "fault_clear",
    }

    def __init__(self) -> None:
        self.fault = False
        self.seen: list[tuple[str, object]] = []

    def status(self) -> dict:
        return {"state": "fault" if self.fault else "idle", "loop": {"rate_hz": 500.0}}

    def session_start(self, patient: str, protocol: str | None = None, assist=None) -> dict:
        self.seen.append(("start", (patient, protocol, assist)))
        if self.fault:
            raise rpc.Refused("a fault is latched: clear it first")
        return {"session_id": "20260101T000000Z-abcdef", "patient": patient}

    def session_stop(self, reason: str = "") -> dict:
        return {"session_id": "20260101T000000Z-abcdef", "end_reason": reason}

    def assist_set(self, gains) -> dict:
        self.seen.append(("assist", gains))
        return {"assist_gain": gains}

    def estop(self) -> dict:
        self.fault = True
        return {"state": "fault"}

    def fault_clear(self) -> dict:
        self.fault = False
        return {"state": "idle"}


def test_daemon_commands_exit_codes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], write_config, run_cli
) -> None:
    cfg = write_config(tmp_path)
    svc = load_config(cfg).service
    c = ["--config", str(cfg)]

    assert run_cli([*c, "status"]) == K.EXIT_NOT_RUNNING
    assert "not running" in capsys.readouterr().err
    assert run_cli([*c, "status", "--json"]) == K.EXIT_NOT_RUNNING
    assert json.loads(capsys.readouterr().out)["exit_code"] == 3

    h = StandIn()
    srv = rpc.RpcServer(svc.socket_path, rpc.methods_from(h), allowed_users=["root"]).start()
    try:
        assert run_cli([*c, "status", "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["loop"]["rate_hz"] == 500.0
        assert run_cli([*c, "status"]) == 0
        assert "loop.rate_hz" in capsys.readouterr().out
        args = ["session", "start", "--patient", "P9", "--protocol", "stairs"]
        assert run_cli([*c, *args, "--assist", "hip_l=0.2,knee_l=0.1"]) == 0
        assert h.seen[-1] == ("start", ("P9", "stairs", {"hip_l": 0.2, "knee_l": 0.1}))
        assert run_cli([*c, "assist", "set", "0.4"]) == 0
        assert h.seen[-1] == ("assist", 0.4)
        assert run_cli([*c, "assist", "set", "1.5"]) == K.EXIT_USAGE
        assert run_cli([*c, "estop"]) == 0
        assert run_cli([*c, *args, "--json"]) == K.EXIT_REFUSED
        out = json.loads(capsys.readouterr().out.splitlines()[-1])
        assert out["exit_code"] == 5 and "fault is latched" in out["error"]
        assert run_cli([*c, "fault", "clear"]) == 0
        assert run_cli([*c, *args]) == 0
        assert run_cli([*c, "session", "stop", "--json"]) == 0
        assert json.loads(capsys.readouterr().out.splitlines()[-1])["end_reason"].startswith(
            "stopped"
        )

        # status --watch: one answer per period until Ctrl-C (SIGINT), then exit 130
        import signal
        import subprocess
        import sys
        import time

        # As at a terminal: Ctrl-C reaches the command. A test run started in the background
        # by a shell without job control has SIGINT ignored, and an ignored signal stays
        # ignored across exec (a handled one is reset to the default), so set one here.
        was = signal.signal(signal.SIGINT, signal.default_int_handler)
        try:
            p = subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "--config", str(cfg), "status", "--watch",
                 "0.2", "--json"],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )  # fmt: skip
        finally:
            signal.signal(signal.SIGINT, was)
        first = p.stdout.readline()  # the first answer: the process is up and watching
        time.sleep(0.7)
        p.send_signal(signal.SIGINT)
        rest, err = p.communicate(timeout=30)
        frames = [json.loads(x) for x in [first, *rest.splitlines()] if x.strip()]
        assert p.returncode == 130, err
        assert len(frames) >= 3 and all(f["state"] == "idle" for f in frames)
    finally:
        srv.close()

    srv = rpc.RpcServer(
        svc.socket_path, rpc.methods_from(h), allowed_users=["nobody"], allowed_groups=[]
    ).start()
    try:
        capsys.readouterr()
        assert run_cli([*c, "status"]) == K.EXIT_PERMISSION
        assert "may not use this socket" in capsys.readouterr().err
    finally:
        srv.close()


def test_parse_assist() -> None:
    assert K.parse_assist(["0.3"]) == 0.3
    assert K.parse_assist(["hip_l=0.3,knee_l=0.2"]) == {"hip_l": 0.3, "knee_l": 0.2}
    assert K.parse_assist(["hip_l=0.3", "knee_r=0"]) == {"hip_l": 0.3, "knee_r": 0.0}
    assert K.parse_assist(None) is None
    for bad in (["x"], ["hip_l=2"], ["0.3", "0.4"], ["hip_l=a"], [""], [" , "], ["=0.3"]):
        with pytest.raises(argparse.ArgumentTypeError):
            K.parse_assist(bad)
    # a change names each joint once, and only joints the exoskeleton has
    with pytest.raises(argparse.ArgumentTypeError, match="'hip_l' given twice"):
        K.parse_assist(["hip_l=0.1,hip_l=0.8"])
    joints = ("hip_l", "hip_r", "knee_l", "knee_r")
    with pytest.raises(argparse.ArgumentTypeError, match="unknown joint 'ankle'"):
        K.parse_assist(["ankle=0.2"], joints)
    assert K.parse_assist(["knee_r=0.2"], joints) == {"knee_r": 0.2}


def test_usage_errors_exit_2(run_cli) -> None:
    with pytest.raises(SystemExit) as e:
        run_cli(["session", "start"])  # --patient missing
    assert e.value.code == 2


def test_service_commands_use_the_config_lookup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, run_cli
) -> None:
    """The rule itself is tested in tests/config/test_lookup.py; here: a bad file found by it
    is an error with the file named, exit 1."""
    monkeypatch.setenv("EXOCTL_CONFIG", str(tmp_path / "env.yaml"))
    assert K.config_path(argparse.Namespace(config=None)) == tmp_path / "env.yaml"
    (tmp_path / "env.yaml").write_text("service: {flush_interval_s: 9}\n")
    assert run_cli(["status"]) == K.EXIT_ERROR
