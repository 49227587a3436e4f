"""Recorder: real SQLite files, a real writer thread, a real SIGKILL of a real process."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from exoctl.recordings import recorder as R


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_roundtrip_permissions_identity(tmp_path: Path) -> None:
    model = tmp_path / "m.onnx"
    model.write_bytes(b"not really onnx but bytes to hash")
    data_dir = tmp_path / "data"
    rec = R.Recorder(data_dir, queue_chunks=256, flush_interval_s=0.05)
    try:
        sid = rec.start_session(
            "P01",
            protocol="treadmill",
            config={"control": {"rate_hz": 500}},
            model=R.Artifact.from_file(model, "default-v1"),
            streams={"torque_estimated": {"columns": ["hip_l", "knee_l"], "unit": "N m"}},
        )
        assert rec.active_session == sid
        w = rec.stream("torque_estimated", 2, batch=7)
        rng = np.random.default_rng(0)
        expect = rng.normal(size=(100, 2))
        times = 1000.0 + np.arange(100) * 0.002
        for t, row in zip(times, expect, strict=True):
            w.append(t, row)
        w.flush()
        emg = rng.normal(size=(64, 16)).astype(np.float32)
        assert rec.submit_chunk("emg_raw", 1000.0, emg, t=1000.0 + np.arange(64) / 2000)
        assert rec.submit_event("assist_change", {"hip_l": 0.4}, t=1000.1)
        db = rec.db_path
        assert rec.stop_session("completed") == sid
        assert rec.active_session is None
        assert not rec.submit_chunk("emg_raw", 0.0, emg)  # no session: nothing recorded
    finally:
        rec.close()

    assert db is not None and db.name == sid + ".sqlite"
    assert _mode(data_dir) == 0o700 and _mode(db.parent) == 0o700 and _mode(db) == 0o600
    assert not Path(str(db) + "-wal").exists() or Path(str(db) + "-wal").stat().st_size == 0
    with R.open_session_db(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        info = R.session_info(conn, sid)
        t, d = R.read_stream(conn, "torque_estimated")
        te, de = R.read_stream(conn, "emg_raw")
        ev = R.read_events(conn)
        assert R.stream_columns(conn, "torque_estimated", 2) == ["hip_l", "knee_l"]
    assert info["patient"] == "P01" and info["protocol"] == "treadmill"
    assert info["end_reason"] == "completed" and info["stop_time"] >= info["start_time"]
    assert info["config"] == {"control": {"rate_hz": 500}}
    import hashlib

    assert info["model_sha256"] == hashlib.sha256(model.read_bytes()).hexdigest()
    assert info["model_id"] == "default-v1"
    np.testing.assert_array_equal(d, expect)
    np.testing.assert_array_equal(t, times)
    assert de.dtype == np.float32
    np.testing.assert_array_equal(de, emg)
    assert te[1] - te[0] == pytest.approx(1 / 2000)
    assert [e["kind"] for e in ev] == ["assist_change"] and ev[0]["detail"] == {"hip_l": 0.4}

    rows = R.list_sessions(data_dir)
    assert [r["id"] for r in rows] == [sid] and rows[0]["end_reason"] == "completed"
    assert R.find_session(data_dir, sid) == db
    assert R.list_patients(data_dir) == [{"patient": "P01", "sessions": 1, "last_session": sid}]


def test_overflow_is_counted_and_recorded_not_blocking(tmp_path: Path) -> None:
    entered, release = threading.Event(), threading.Event()

    def stall(stream: str, t: np.ndarray, d: np.ndarray) -> None:
        entered.set()
        release.wait(10)

    rec = R.Recorder(tmp_path, queue_chunks=16, flush_interval_s=0.05, taps={"stall": stall})
    try:
        rec.start_session("P02")
        x = np.zeros((4, 3))
        assert rec.submit_chunk("stall", 0.0, x)
        assert entered.wait(5)  # the writer now sits in the tap; the queue is empty
        accepted = [rec.submit_chunk("emg_raw", float(i), x) for i in range(16 + 10)]
        assert accepted == [True] * 16 + [False] * 10  # never blocked, never raised
        assert rec.stats()["dropped"] == 10
        release.set()
        db = rec.db_path
        rec.stop_session("completed")
    finally:
        release.set()
        rec.close()
    with R.open_session_db(db) as conn:
        ev = R.read_events(conn)
        n = conn.execute("SELECT count(*) FROM chunks WHERE stream='emg_raw'").fetchone()[0]
    assert n == 16
    over = [e for e in ev if e["kind"] == "recorder_overflow"]
    assert len(over) == 1 and over[0]["detail"]["dropped"] == 10
    assert over[0]["detail"]["by_stream_total"] == {"emg_raw": 10}


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 65, "p 1"])
def test_patient_ids_are_path_safe(tmp_path: Path, bad: str) -> None:
    rec = R.Recorder(tmp_path)
    try:
        with pytest.raises(R.RecorderError, match="invalid patient id"):
            rec.start_session(bad)
    finally:
        rec.close()
    with pytest.raises(R.RecorderError, match="invalid session id"):
        R.find_session(tmp_path, "../../etc/passwd")


def test_one_session_at_a_time_and_sequential_sessions(tmp_path: Path) -> None:
    rec = R.Recorder(tmp_path, flush_interval_s=0.05)
    try:
        a = rec.start_session("P03")
        with pytest.raises(R.RecorderError, match="still being recorded"):
            rec.start_session("P03")
        rec.stop_session()
        b = rec.start_session("P03")
        rec.stop_session()
    finally:
        rec.close()
    assert a != b
    assert {r["id"] for r in R.list_sessions(tmp_path, "P03")} == {a, b}


_WRITER = textwrap.dedent(
    """
    import sys, time
    import numpy as np
    from exoctl.recordings.recorder import Recorder
    rec = Recorder(sys.argv[1], queue_chunks=4096, flush_interval_s=0.5)
    rec.start_session("PK", protocol="kill-test")
    print(rec.db_path, flush=True)
    w = rec.stream("torque_command", 4, batch=10)
    n = 0
    while True:
        t = time.monotonic()
        w.append(t, np.full(4, float(n)))
        if n % 100 == 0:
            rec.submit_event("tick", {"n": n}, t=t)
        n += 1
        time.sleep(0.002)
    """
)


def test_sigkill_mid_session_loses_at_most_one_second(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        db = Path(proc.stdout.readline().strip())
        time.sleep(2.0)
        t_kill = time.monotonic()  # CLOCK_MONOTONIC is shared by both processes
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    wal = Path(str(db) + "-wal")
    assert wal.exists() and _mode(wal) == 0o600 and _mode(db) == 0o600
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        conn.row_factory = sqlite3.Row
        info = R.session_info(conn)
        t, d = R.read_stream(conn, "torque_command")
        ev = R.read_events(conn)
    finally:
        conn.close()
    assert info["end_reason"] is None and info["stop_time"] is None  # it never got to stop
    assert len(t) > 100
    assert t[-1] >= t_kill - 1.0, f"last sample {t_kill - t[-1]:.3f} s before the kill"
    # samples are contiguous: nothing missing in the middle
    np.testing.assert_array_equal(d[:, 0], np.arange(len(d)))
    assert any(e["kind"] == "tick" for e in ev)
    assert R.list_sessions(tmp_path)[0]["end_reason"] == "(unfinished)"


_FULL = textwrap.dedent(
    """
    import json, os, resource, signal, sys, time
    import numpy as np
    from exoctl.recordings.recorder import Recorder
    # A real file-size limit: writes past it fail with EFBIG, as on a full disk (no root)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(sys.argv[2])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    data = sys.argv[1]
    rec = Recorder(data, queue_chunks=4096, flush_interval_s=0.1)
    rec.start_session("PF")
    db = rec.db_path
    t0 = time.monotonic()
    while time.monotonic() - t0 < 4.0:
        t = time.monotonic() + np.arange(25) / 500
        rec.submit_chunk("torque_command", t[0], np.full((25, 4), 1.0), t=t)
        rec.submit_chunk("emg_raw", t[0], np.ones((100, 16), np.float32), t=np.arange(100) + t[0])
        s = rec.stats()
        print(json.dumps({k: s[k] for k in ("written_chunks", "failed_chunks", "write_errors",
                                            "uncommitted_s", "last_error")}), flush=True)
        time.sleep(0.05)
    sid = rec.stop_session("stopped")
    def into(where):
        out = []
        for fd in os.listdir("/proc/self/fd"):
            try:
                if os.readlink(f"/proc/self/fd/{fd}").startswith(where):
                    out.append(fd)
            except OSError:
                pass
        return out
    print(json.dumps({"stopped": sid, "problem": rec.last_close_problem, "db": str(db),
                      "health": rec.health.ok_at, "fds": into(data)}), flush=True)
    rec.close()
    """
)


def test_a_write_limit_stalls_the_health_time_counts_honestly_and_closes_cleanly(
    tmp_path: Path,
) -> None:
    """A real file-size limit (RLIMIT_FSIZE, in a child process) on the recording: once
    writes fail, the health time the safety layer reads stops, failed chunks are counted as
    failed (never written), the session's file still closes with the reason why it is
    unfinished, no descriptor stays open on it, and what was committed is readable."""
    p = subprocess.run(
        [sys.executable, "-c", _FULL, str(tmp_path), str(400_000)],
        capture_output=True, text=True, timeout=60, cwd=Path(__file__).resolve().parents[2],
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    lines = [json.loads(x) for x in p.stdout.splitlines()]
    rows, end = lines[:-1], lines[-1]
    first_err = next(i for i, r in enumerate(rows) if r["write_errors"])
    ok, bad = rows[:first_err], rows[first_err:]
    assert ok and all(r["uncommitted_s"] < 0.5 and not r["failed_chunks"] for r in ok)
    assert bad[-1]["uncommitted_s"] > 1.5  # nothing committed since: the watchdog's input
    assert bad[-1]["failed_chunks"] > 0 and bad[-1]["last_error"]
    # written means committed: while writes fail the count stands still, the failed grow
    tail = bad[len(bad) // 2 :]
    assert len({r["written_chunks"] for r in tail}) == 1, tail
    assert tail[-1]["failed_chunks"] > tail[0]["failed_chunks"]
    assert end["problem"] and end["health"] == float("inf") and end["fds"] == []
    conn = sqlite3.connect(end["db"])
    try:
        t, d = R.read_stream(conn, "torque_command")
    finally:
        conn.close()
    assert len(t) > 100 and (d == 1.0).all()
