"""What a clinician's terminal (or a script's pipe) gets from the service commands: a closed
output ends a command quietly with exit 141, ``--watch`` takes a sane period. Each command runs
as the installed ``exoctl`` does (``python -m exoctl.cli`` in a subprocess), against a real
control socket (``RpcServer``) with a stand-in handler where a daemon answer is needed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from exoctl import cli, cli_policy
from exoctl.config.schema import load_config
from exoctl.service import rpc

ROOT = Path(__file__).resolve().parents[2]


class StatusStandIn:
    """Answers ``status`` and ``session.start`` with enough text to fill a pipe's first read."""

    RPC_METHODS = {"status": "status", "session.start": "session_start"}

    def __init__(self) -> None:
        self.started: list[str] = []

    def status(self) -> dict[str, Any]:
        return {"state": "idle", "notes": ["x" * 200 for _ in range(40)]}

    def session_start(self, patient: str, protocol: Any = None, assist: Any = None) -> dict:
        self.started.append(patient)
        return {"session_id": "20260101T000000Z-abcdef", "patient": patient, "pad": "y" * 9000}


def _closed_pipe_run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    """``exoctl ARGV | head -c 0``, deterministically: the reader has gone before the first
    write, so every write to stdout fails with EPIPE."""
    r, w = os.pipe()
    os.close(r)
    try:
        return subprocess.run(
            [sys.executable, "-m", "exoctl.cli", *argv],
            stdout=w,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    finally:
        os.close(w)


@pytest.fixture
def standin(tmp_path: Path, write_config):
    cfg = write_config(tmp_path)
    h = StatusStandIn()
    srv = rpc.RpcServer(
        load_config(cfg).service.socket_path, rpc.methods_from(h), allowed_users=["root"]
    ).start()
    try:
        yield cfg, h
    finally:
        srv.close()


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_status_into_a_closed_pipe_exits_141_without_a_traceback(standin, json_flag) -> None:
    cfg, _ = standin
    p = _closed_pipe_run(["--config", str(cfg), "status", *json_flag])
    assert p.returncode == cli_policy.EXIT_CLOSED_OUTPUT, p.stderr
    assert p.stderr == ""


def test_a_failure_reported_into_a_closed_pipe_exits_141(tmp_path: Path, write_config) -> None:
    """With --json a failure is also a JSON document on stdout; its write fails too."""
    cfg = write_config(tmp_path)  # no daemon: exit 3, reported on stdout and stderr
    p = _closed_pipe_run(["--config", str(cfg), "status", "--json"])
    assert p.returncode == cli_policy.EXIT_CLOSED_OUTPUT, p.stderr
    assert "Traceback" not in p.stderr


def test_session_start_into_a_closed_pipe_still_starts_the_session(standin) -> None:
    cfg, h = standin
    p = _closed_pipe_run(["--config", str(cfg), "session", "start", "--patient", "P05", "--json"])
    assert p.returncode == cli_policy.EXIT_CLOSED_OUTPUT, p.stderr
    assert "Traceback" not in p.stderr
    assert h.started == ["P05"]


@pytest.mark.parametrize("value", ["-1", "0", "0.1", "nan", "inf", "1e308", "x"])
def test_watch_needs_a_finite_period_of_at_least_0_2_s(value: str, capsys) -> None:
    with pytest.raises(SystemExit) as e:
        cli.main(["status", "--watch", value])
    assert e.value.code == cli_policy.EXIT_USAGE
    assert "--watch" in capsys.readouterr().err
