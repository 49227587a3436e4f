"""A session recorded before the recordings moved from ``exoctl.service`` to
``exoctl.recordings`` (``tests/fixtures/recording-before-move``, written by the old recorder
and kept unchanged) is found, read and exported by today's code."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from exoctl.recordings import store
from exoctl.recordings.export import export_session

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "recording-before-move"
SID = "20261207T213350Z-f25dd5"
LEVELS = ["NORMAL", "DEGRADED", "SAFE_STOP", "FAULT_LATCHED", "ESTOP"]


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A copy: nothing here may change the committed file."""
    shutil.copytree(FIXTURE / "P04", tmp_path / "d" / "P04")
    return tmp_path / "d"


def expected() -> dict[str, np.ndarray]:
    """The values the fixture's script recorded (its README), drawn again."""
    rng = np.random.default_rng(7)
    cmd = np.round(rng.normal(0, 5, (40, 3)), 3)
    tel = np.hstack([np.round(rng.normal(0, 0.5, (40, 3)), 4), np.round(rng.normal(0, 5, (40, 3)), 2)])  # fmt: skip
    state = np.array([0] * 10 + [1] * 5 + [2] * 5 + [3] * 10 + [4] * 10, np.int8)
    emg = np.round(rng.normal(0, 50, (160, 2)), 2).astype(np.float32)
    return {"t": 100.0 + np.arange(40) * 0.002, "cmd": cmd, "tel": tel, "state": state, "emg": emg}


def test_it_is_listed_and_read(data_dir: Path) -> None:
    (listed,) = store.list_sessions(data_dir)
    assert listed["id"] == SID and listed["patient"] == "P04"
    db = store.find_session(data_dir, SID)
    with store.open_session_db(db) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION
        assert set(store.stream_names(conn)) == {
            "torque_command", "telemetry", "safety_state", "emg_raw",
        }  # fmt: skip
        t, cmd = store.read_stream(conn, "torque_command")
        tab = store.read_table(conn, "safety_state")
    want = expected()
    np.testing.assert_array_equal(t, want["t"])
    np.testing.assert_array_equal(cmd, want["cmd"])
    assert list(tab.column("safety_state").names()) == [LEVELS[i] for i in want["state"]]


def test_it_exports_with_its_events_described(data_dir: Path, tmp_path: Path) -> None:
    db = store.find_session(data_dir, SID)
    export_session(db, SID, "csv", tmp_path / "c", raw_emg=True, exact=True)
    want = expected()
    with (tmp_path / "c" / "telemetry.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][2] == "angle_hip_l [rad]" and rows[0][5] == "applied_hip_l [N m]"
    np.testing.assert_array_equal([[float(x) for x in r[2:]] for r in rows[1:]], want["tel"])
    with (tmp_path / "c" / "emg_raw.csv").open() as f:
        emg = np.array([[np.float32(x) for x in r[2:]] for r in list(csv.reader(f))[1:]])
    np.testing.assert_array_equal(emg, want["emg"])
    with (tmp_path / "c" / "events.csv").open() as f:
        ev = list(csv.DictReader(f))
    assert [e["kind"] for e in ev] == ["estop", "fault"]
    assert json.loads(ev[1]["detail"])["kind"] == "emg_stale"
    assert ev[0]["summary"].startswith("Emergency stop pressed")
    assert ev[1]["summary"].startswith("EMG signal interrupted")
