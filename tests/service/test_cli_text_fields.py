"""Hostile text over the control API and on the clinician's terminal.

Text fields (patient id, protocol, end reason) are printable UTF-8 of bounded length, checked
by the CLI (exit 2) and the daemon (JSON-RPC -32602) before anything starts or is recorded;
ids are matched whole; whatever a command prints is escaped (``cli_policy.shown``). The whole
daemon's side is in test_daemon.py (``test_hostile_text_is_refused_before_anything_starts``).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from exoctl import cli_policy
from exoctl.config.schema import load_config
from exoctl.recordings import fields
from exoctl.recordings import store as S
from exoctl.recordings.recorder import Recorder
from exoctl.service import rpc
from exoctl.service.commands import format_table

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = "\u001b[31mRED\u001b[0m\rOVERWRITE"
NOT_UTF8 = b"tread\xfcmill".decode("utf-8", "surrogateescape")  # what Python makes of argv


class Recording:
    """A stand-in daemon that notes every call: a refused argument must never reach it."""

    RPC_METHODS = {"session.start": "start", "session.stop": "stop"}

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def start(self, patient: str, protocol: Any = None, assist: Any = None) -> dict:
        self.calls.append(("start", patient))
        return {"session_id": "20260101T000000Z-abcdef"}

    def stop(self, reason: str = "") -> dict:
        self.calls.append(("stop", reason))
        return {"end_reason": reason}


@pytest.mark.parametrize(
    "value", ["P05\n", "P05\r", "", "-P05", "P" * 65, "P05/..", "Pé", NOT_UTF8]
)
def test_a_patient_id_is_matched_whole(value: str) -> None:
    assert fields.patient_problem(value) is not None
    with pytest.raises(S.RecorderError):
        S.validate_patient(value)


def test_a_session_id_is_matched_whole() -> None:
    assert fields.session_id_problem("20260101T000000Z-abcdef") is None
    assert fields.session_id_problem("20260101T000000Z-abcdef\n") is not None


@pytest.mark.parametrize(
    "value", [HOSTILE, NOT_UTF8, "a\nb", "x" * 201, "\u202eevil", "tab\there", 5]
)
def test_free_text_is_printable_and_bounded(value: Any) -> None:
    assert fields.text_problem("protocol", value) is not None


@pytest.mark.parametrize("value", ["treadmill 3 km/h", "Müller-Stufe ü", "x" * 200, ""])
def test_ordinary_text_is_accepted(value: str) -> None:
    assert fields.text_problem("protocol", value) is None


def _cli(cfg: Path, *argv: str) -> subprocess.CompletedProcess[bytes]:
    """``exoctl`` as typed at a terminal: argv as bytes (a Latin-1 terminal sends b'\\xfc')."""
    return subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(cfg), *argv],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["session", "start", "--patient", "P05\n"],
        ["session", "start", "--patient", "P05", "--protocol", os.fsencode(NOT_UTF8)],
        ["session", "start", "--patient", "P05", "--protocol", HOSTILE],
        ["session", "stop", "--reason", b"m\xfcde"],
        ["session", "stop", "--reason", "x" * 201],
        ["sessions", "list", "--patient", "P05\n"],
    ],
)
def test_the_cli_refuses_bad_text_before_calling_the_daemon(
    tmp_path: Path, write_config, argv: list[Any]
) -> None:
    cfg = write_config(tmp_path)
    h = Recording()
    srv = rpc.RpcServer(
        load_config(cfg).service.socket_path, rpc.methods_from(h), allowed_users=["root"]
    ).start()
    try:
        p = _cli(cfg, *argv)
    finally:
        srv.close()
    assert p.returncode == cli_policy.EXIT_USAGE, p.stderr
    assert h.calls == []
    assert b"Traceback" not in p.stderr and b"\x1b" not in p.stderr


def _record(data_dir: Path, protocol: str, reason: str) -> str:
    """A recording holding hostile text, as an older daemon (or a damaged file) could have."""
    rec = Recorder(data_dir, flush_interval_s=0.05)
    try:
        sid = rec.start_session("P01", protocol=protocol, streams={})
        rec.stop_session(reason)
    finally:
        rec.close()
    return sid


def test_sessions_list_and_show_escape_what_they_print(tmp_path: Path, write_config) -> None:
    cfg = write_config(tmp_path)
    sid = _record(load_config(cfg).service.data_dir, HOSTILE, "stop\u001b]0;pwned\u0007")
    for argv in (["sessions", "list"], ["sessions", "show", sid], ["patients", "list"]):
        p = _cli(cfg, *argv)
        assert p.returncode == 0, p.stderr
        out = p.stdout.decode()
        assert "\x1b" not in out and "\r" not in out and "\x07" not in out, out
    assert "\\x1b[31mRED\\x1b[0m\\rOVERWRITE" in _cli(cfg, "sessions", "list").stdout.decode()
    # --json keeps the text as recorded (JSON escapes control characters itself)
    rows = json.loads(_cli(cfg, "sessions", "list", "--json").stdout)
    assert rows[0]["protocol"] == HOSTILE


class HostileStatus:
    """A daemon whose ``status`` carries hostile text (from a recording, a device, a bug)."""

    RPC_METHODS = {"status": "status"}

    def status(self) -> dict[str, Any]:
        return {
            "daemon": {"version": "0.1.0", "pid": 1, "uptime_s": 5, "loop_healthy": True},
            "safety_state": "NORMAL",
            "session": {
                "patient": "P01",
                "protocol": HOSTILE,
                "gains": {"hip_l": 0.3},
                "started_at": time.time(),
                "id": "x",
            },
            "loop": {
                "control_rate_hz": 500.0,
                "target_rate_hz": 500,
                "deadline_misses": 0,
                "loop_jitter_us": {"p99": 10.0},
                "tick_cost_us": {"p99": 100.0},
                "latency_ms": {"p99": 5.0},
            },
            "estimate_nm": {"hip_l": 1.0},
            "faults": [{"wall_time": time.time(), "kind": "emg", "detail": HOSTILE}],
        }


def test_status_escapes_every_field(tmp_path: Path, write_config) -> None:
    cfg = write_config(tmp_path)
    srv = rpc.RpcServer(
        load_config(cfg).service.socket_path, rpc.methods_from(HostileStatus()),
        allowed_users=["root"],
    ).start()  # fmt: skip
    try:
        p = _cli(cfg, "status")
    finally:
        srv.close()
    assert p.returncode == 0, p.stderr
    text = p.stdout.decode()
    assert "\x1b" not in text and "\r" not in text, text
    assert text.count("\\x1b[31mRED") == 2, text
    table = format_table([{"protocol": HOSTILE}], ["protocol"])
    assert "\x1b" not in table and "\r" not in table


def test_shown_keeps_printable_text_and_is_idempotent() -> None:
    assert cli_policy.shown("Müller 3 km/h") == "Müller 3 km/h"
    once = cli_policy.shown(HOSTILE + NOT_UTF8 + "\u202e")
    assert once.isprintable() and cli_policy.shown(once) == once
    assert "\\udcfc" in once and "\\u202e" in once
