"""Exports and the store's schema: recordings written by the real Recorder into SQLite, checked
through sqlite3, exported, and read back with pyarrow (Parquet) and the csv module."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from exoctl.recordings import store
from exoctl.recordings.export import export_session
from exoctl.recordings.recorder import Recorder

LEVELS = ["NORMAL", "DEGRADED", "SAFE_STOP", "FAULT_LATCHED", "ESTOP"]
JOINTS = ["hip_l", "hip_r", "knee_l"]


@pytest.fixture
def recording(tmp_path: Path) -> tuple[str, Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(7)
    data = {
        "t": 100.0 + np.arange(40) * 0.002 + rng.uniform(0, 1e-4, 40),
        "cmd": rng.normal(0, 5, (40, 3)),
        "tel": np.hstack([np.round(rng.normal(0, 0.5, (40, 3)), 4), np.round(rng.normal(0, 5, (40, 3)), 2)]),
        "state": np.array([0] * 10 + [1] * 5 + [2] * 5 + [3] * 10 + [4] * 10, np.int8),
        "emg": rng.normal(0, 50, (160, 2)).astype(np.float32),
    }  # fmt: skip
    rec = Recorder(tmp_path / "d", flush_interval_s=0.05)
    try:
        sid = rec.start_session(
            "P04",
            streams={
                "torque_command": {"columns": JOINTS, "unit": "N m", "description": "as sent"},
                "telemetry": {
                    "columns": [f"angle_{j}" for j in JOINTS] + [f"applied_{j}" for j in JOINTS],
                    "units": ["rad"] * 3 + ["N m"] * 3,
                },
                "safety_state": {"columns": ["safety_state"], "levels": LEVELS},
                "emg_raw": {"columns": ["ch1", "ch2"], "unit": "microvolts"},
            },
        )
        t = data["t"]
        for a in (0, 25):
            sl = slice(a, a + 25 if a == 0 else None)
            rec.submit_chunk("torque_command", t[sl][0], data["cmd"][sl], t=t[sl])
            rec.submit_chunk("telemetry", t[sl][0], data["tel"][sl], t=t[sl])
            rec.submit_chunk("safety_state", t[sl][0], data["state"][sl], t=t[sl])
        rec.submit_chunk("emg_raw", 100.0, data["emg"], t=100.0 + np.arange(160) / 2000)
        rec.submit_event("estop", {"source": "rpc"}, t=100.05)
        rec.submit_event("fault", {"kind": "emg_stale", "detail": "newest EMG 0.2 s old"}, t=100.06)
        db = rec.db_path
        rec.stop_session()
    finally:
        rec.close()
    return sid, db, data


def test_store_schema_through_sqlite(recording) -> None:
    sid, db, data = recording
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == store.SCHEMA_VERSION == 2
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = dict(conn.execute("SELECT name, levels_json FROM streams").fetchall())
        assert json.loads(rows["safety_state"]) == LEVELS and rows["torque_command"] is None
        units = conn.execute("SELECT units_json FROM streams WHERE name='telemetry'").fetchone()
        assert json.loads(units[0]) == ["rad"] * 3 + ["N m"] * 3
        # the state is stored as one byte per tick, its names once beside it
        dtypes = {
            r[0] for r in conn.execute("SELECT dtype FROM chunks WHERE stream='safety_state'")
        }
        assert dtypes == {"|i1"}
    finally:
        conn.close()
    with store.open_session_db(db) as c:
        tab = store.read_table(c, "safety_state")
    col = tab.column("safety_state")
    assert col.levels == tuple(LEVELS)
    assert list(col.names()) == [LEVELS[i] for i in data["state"]]


def test_parquet_has_units_schema_and_state_names(recording, tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet", reason="the report extra installs pyarrow")
    sid, db, data = recording
    files = export_session(db, sid, "parquet", tmp_path / "lean")
    assert {p.name for p in files} == {
        "session.json", "events.parquet", "torque_command.parquet", "telemetry.parquet",
        "safety_state.parquet",
    }  # fmt: skip
    lean = json.loads((tmp_path / "lean" / "session.json").read_text())
    assert "emg_raw" in lean["not_exported"] and "emg_raw" not in lean["exported_streams"]
    files = export_session(db, sid, "parquet", tmp_path / "pq", raw_emg=True)
    assert "emg_raw.parquet" in {p.name for p in files}
    info = json.loads((tmp_path / "pq" / "session.json").read_text())
    assert info["not_exported"] == {}
    t = pq.read_table(tmp_path / "pq" / "torque_command.parquet")
    meta = t.schema.metadata
    assert meta[b"exoctl.session_id"].decode() == sid and meta[b"exoctl.patient"] == b"P04"
    assert meta[b"exoctl.description"] == b"as sent"
    assert t.column_names == ["t_session", *JOINTS]
    assert t.schema.field("t_session").metadata == {b"unit": b"s"}
    assert t.schema.field("hip_l").metadata == {b"unit": b"N m"}
    assert str(t.schema.field("hip_l").type) == "float"  # float32
    np.testing.assert_array_equal(t["t_session"].to_numpy(), data["t"] - info["start_mono"])
    np.testing.assert_array_equal(
        np.stack([t[j].to_numpy() for j in JOINTS], 1), data["cmd"].astype(np.float32)
    )
    tel = pq.read_table(tmp_path / "pq" / "telemetry.parquet").schema
    assert tel.field("angle_hip_l").metadata[b"unit"] == b"rad"
    assert tel.field("applied_knee_l").metadata[b"unit"] == b"N m"
    st = pq.read_table(tmp_path / "pq" / "safety_state.parquet")
    assert (
        str(st.schema.field("safety_state").type)
        == "dictionary<values=string, indices=int8, ordered=0>"
    )
    assert st["safety_state"].to_pylist() == [LEVELS[i] for i in data["state"]]
    emg = pq.read_table(tmp_path / "pq" / "emg_raw.parquet")
    np.testing.assert_array_equal(emg["ch2"].to_numpy(), data["emg"][:, 1])  # float32: exact
    ev = pq.read_table(tmp_path / "pq" / "events.parquet").to_pylist()
    assert [e["kind"] for e in ev] == ["estop", "fault"]
    assert "Emergency stop pressed" in ev[0]["summary"]
    assert "EMG signal interrupted" in ev[1]["summary"]
    assert json.loads(ev[1]["detail_json"])["kind"] == "emg_stale"
    assert ev[0]["wall_time_utc"].endswith("+00:00")

    export_session(db, sid, "parquet", tmp_path / "exact", exact=True)
    x = pq.read_table(tmp_path / "exact" / "torque_command.parquet")
    assert str(x.schema.field("hip_l").type) == "double"
    np.testing.assert_array_equal(x["knee_l"].to_numpy(), data["cmd"][:, 2])


def test_csv_has_units_in_headers_and_state_names(recording, tmp_path: Path) -> None:
    sid, db, data = recording
    export_session(db, sid, "csv", tmp_path / "c")
    with (tmp_path / "c" / "torque_command.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["t [s]", "t_session [s]", "hip_l [N m]", "hip_r [N m]", "knee_l [N m]"]
    np.testing.assert_array_equal([float(r[0]) for r in rows[1:]], data["t"])  # exact
    got = np.array([[np.float32(x) for x in r[2:]] for r in rows[1:]])
    np.testing.assert_array_equal(got, data["cmd"].astype(np.float32))
    with (tmp_path / "c" / "telemetry.csv").open() as f:
        head = next(csv.reader(f))
    assert head[2] == "angle_hip_l [rad]" and head[5] == "applied_hip_l [N m]"
    with (tmp_path / "c" / "safety_state.csv").open() as f:
        st = list(csv.DictReader(f))
    assert [r["safety_state"] for r in st] == [LEVELS[i] for i in data["state"]]
    with (tmp_path / "c" / "events.csv").open() as f:
        ev = list(csv.DictReader(f))
    assert ev[0]["kind"] == "estop" and json.loads(ev[0]["detail"]) == {"source": "rpc"}
    assert ev[1]["summary"].startswith("EMG signal interrupted")

    export_session(db, sid, "csv", tmp_path / "e", exact=True)
    with (tmp_path / "e" / "torque_command.csv").open() as f:
        rows = list(csv.reader(f))
    got = np.array([[float(x) for x in r[2:]] for r in rows[1:]])
    np.testing.assert_array_equal(got, data["cmd"])  # shortest text round-trips float64


def test_npz_and_bad_requests(recording, tmp_path: Path) -> None:
    sid, db, data = recording
    (npz,) = export_session(db, sid, "npz", tmp_path / "x.npz")
    z = np.load(npz)
    np.testing.assert_array_equal(z["torque_command"], data["cmd"])
    np.testing.assert_array_equal(z["torque_command__t"], data["t"])
    assert list(z["torque_command__units"]) == ["N m"] * 3
    assert list(z["safety_state__safety_state"]) == [LEVELS[i] for i in data["state"]]
    assert json.loads(str(z["session_json"]))["patient"] == "P04"
    with pytest.raises(store.RecorderError, match="unknown export format"):
        export_session(db, sid, "xlsx", tmp_path / "y")
    with pytest.raises(store.RecorderError, match="no stream"):
        export_session(db, sid, "csv", tmp_path / "y", streams=["nope"])
    files = export_session(db, sid, "csv", tmp_path / "only", streams=["safety_state"])
    assert {p.name for p in files} == {"session.json", "events.csv", "safety_state.csv"}


V1_SCHEMA = """
CREATE TABLE sessions (id TEXT PRIMARY KEY, patient TEXT NOT NULL, protocol TEXT,
    start_time REAL NOT NULL, start_mono REAL NOT NULL, stop_time REAL, stop_mono REAL,
    config_json TEXT NOT NULL, model_path TEXT, model_id TEXT, model_sha256 TEXT,
    calibration_path TEXT, calibration_id TEXT, calibration_sha256 TEXT,
    software_version TEXT NOT NULL, end_reason TEXT);
CREATE TABLE streams (name TEXT PRIMARY KEY, columns_json TEXT, unit TEXT, description TEXT);
CREATE TABLE chunks (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, t0 REAL NOT NULL,
    n INTEGER NOT NULL, dtype TEXT NOT NULL, shape_json TEXT NOT NULL, data BLOB NOT NULL, t BLOB);
CREATE TABLE events (id INTEGER PRIMARY KEY, t REAL NOT NULL, kind TEXT NOT NULL, detail_json TEXT);
PRAGMA user_version = 1;
"""


def test_version_1_recordings_are_still_read(tmp_path: Path) -> None:
    """Before version 2 the state was a float column of telemetry: read back as names."""
    db = tmp_path / "P01" / "20260101T000000Z-abcdef.sqlite"
    db.parent.mkdir()
    conn = sqlite3.connect(db)
    tel = np.array([[0.1, 2.0, 0.0], [0.2, 2.5, 3.0], [0.3, 0.0, 4.0]])
    conn.executescript(V1_SCHEMA)
    conn.execute(
        "INSERT INTO sessions VALUES ('20260101T000000Z-abcdef','P01',NULL,1.7e9,10.0,1.7e9,"
        "11.0,'{}',NULL,NULL,NULL,NULL,NULL,NULL,'0.1.0','completed')"
    )
    conn.execute(
        "INSERT INTO streams VALUES ('telemetry', ?, 'rad, N m', NULL)",
        (json.dumps(["angle_hip_l", "applied_hip_l", "safety_state"]),),
    )
    conn.execute(
        "INSERT INTO chunks(stream, t0, n, dtype, shape_json, data, t) VALUES (?,?,?,?,?,?,?)",
        ("telemetry", 10.0, 3, "<f8", "[3, 3]", tel.tobytes(), np.array([10.0, 10.002, 10.004]).tobytes()),
    )  # fmt: skip
    conn.commit()
    conn.close()
    with store.open_session_db(db) as c:
        tab = store.read_table(c, "telemetry")
    assert list(tab.column("safety_state").names()) == ["NORMAL", "FAULT_LATCHED", "ESTOP"]
    export_session(db, None, "csv", tmp_path / "out")
    with (tmp_path / "out" / "telemetry.csv").open() as f:
        rows = list(csv.reader(f))
    assert rows[0][2:] == ["angle_hip_l [rad, N m]", "applied_hip_l [rad, N m]", "safety_state"]
    assert [r[-1] for r in rows[1:]] == ["NORMAL", "FAULT_LATCHED", "ESTOP"]


def test_csv_without_pyarrow_reads_back_the_same(
    recording, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CSV needs no extra: without pyarrow the same file content comes from numpy."""
    import sys

    sid, db, _ = recording
    export_session(db, sid, "csv", tmp_path / "arrow", raw_emg=True)
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.csv", None)
    export_session(db, sid, "csv", tmp_path / "numpy", raw_emg=True)
    for name in ("torque_command.csv", "telemetry.csv", "safety_state.csv", "emg_raw.csv"):
        with (tmp_path / "arrow" / name).open() as f:
            a = list(csv.reader(f))
        with (tmp_path / "numpy" / name).open() as f:
            b = list(csv.reader(f))
        assert a[0] == b[0] and len(a) == len(b) > 1
        for ra, rb in zip(a[1:], b[1:], strict=True):
            assert [x if x[:1].isalpha() else float(x) for x in ra] == [
                x if x[:1].isalpha() else float(x) for x in rb
            ]
    with pytest.raises(store.RecorderError, match="pip install 'exoctl\\[report\\]'"):
        export_session(db, sid, "parquet", tmp_path / "pq")
