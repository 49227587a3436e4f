"""Session recording in SQLite, written off the control thread.

Layout: ``data_dir/<patient>/<session_id>.sqlite``, directories 0700, files 0600.

One database per *session* (not per patient), because:

* a session file is the unit people hand over (to a researcher, to a regulator, to a bug
  report): it is self-contained, with the configuration, model and calibration identity;
* damage is confined: a disk filling up or a ``kill -9`` during one session can never touch
  the recordings of earlier sessions, which are closed, checkpointed files nobody writes to;
* deleting a session (or, with the directory, a patient) is deleting files;
* there is never more than one writer per file, so no lock contention with readers of older
  sessions (a clinician exporting last week's session while today's runs).

Listing sessions opens each file read-only; for the hundreds of sessions a patient may
accumulate that is milliseconds.

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction survives the
process being killed (it is in the WAL file, which the OS holds); only a power loss may lose
the last transactions, never corrupt the file. The writer thread commits at least every
``flush_interval_s``, so ``kill -9`` loses at most that much plus what sat in the queue.

The control thread never waits for the disk: ``submit_chunk`` and ``submit_event`` copy the
data and ``put_nowait`` it on a bounded queue. When the queue is full the item is dropped and
counted, and the writer records one ``recorder_overflow`` event when it next has room.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import json
import os
import queue
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exoctl import __version__

SCHEMA_VERSION = 1
PATIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
SESSION_RE = re.compile(r"^[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}$")
DB_SUFFIX = ".sqlite"

# Streams the controller is expected to record (names are conventions, not a closed set).
STANDARD_STREAMS = (
    "emg_raw",
    "activation",
    "synergy",
    "torque_estimated",
    "torque_command",
    "telemetry",
    "loop_timing",
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    patient TEXT NOT NULL,
    protocol TEXT,
    start_time REAL NOT NULL,      -- wall clock, seconds since the epoch (UTC)
    start_mono REAL NOT NULL,      -- the controller clock (CLOCK_MONOTONIC) at start
    stop_time REAL,
    stop_mono REAL,
    config_json TEXT NOT NULL,
    model_path TEXT, model_id TEXT, model_sha256 TEXT,
    calibration_path TEXT, calibration_id TEXT, calibration_sha256 TEXT,
    software_version TEXT NOT NULL,
    end_reason TEXT
);
CREATE TABLE IF NOT EXISTS streams (
    name TEXT PRIMARY KEY,
    columns_json TEXT,             -- column labels, e.g. joint or muscle names
    unit TEXT,
    description TEXT
);
CREATE TABLE IF NOT EXISTS chunks (
    id INTEGER PRIMARY KEY,
    stream TEXT NOT NULL,
    t0 REAL NOT NULL,              -- controller clock of the first sample
    n INTEGER NOT NULL,            -- samples (rows) in the chunk
    dtype TEXT NOT NULL,           -- numpy dtype string, little-endian
    shape_json TEXT NOT NULL,
    data BLOB NOT NULL,
    t BLOB                         -- float64 time of every sample, when not evenly spaced
);
CREATE INDEX IF NOT EXISTS chunks_stream_t0 ON chunks(stream, t0);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    t REAL NOT NULL,
    kind TEXT NOT NULL,
    detail_json TEXT
);
CREATE INDEX IF NOT EXISTS events_t ON events(t);
"""


class RecorderError(RuntimeError):
    """A recording request that cannot be honoured; the message is for a person."""


def validate_patient(patient: str) -> str:
    """Patient ids become directory names, so they are restricted to a safe alphabet."""
    if not isinstance(patient, str) or not PATIENT_RE.match(patient):
        raise RecorderError(
            f"invalid patient id {patient!r}: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return patient


def validate_session_id(session_id: str) -> str:
    if not isinstance(session_id, str) or not SESSION_RE.match(session_id):
        raise RecorderError(
            f"invalid session id {session_id!r}: expected e.g. 20260101T120000Z-0a1b2c"
        )
    return session_id


def file_identity(path: str | Path | None) -> dict[str, Any] | None:
    """Path, size and sha256 of an artefact (model, calibration), or None."""
    if path is None:
        return None
    p = Path(path)
    h = hashlib.sha256()
    with p.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return {"path": str(p.resolve()), "sha256": h.hexdigest(), "size": p.stat().st_size}


@dataclass(frozen=True)
class Artifact:
    """Identity of a model or calibration: what it claims to be and what its bytes are."""

    path: str | None = None
    id: str | None = None
    sha256: str | None = None

    @classmethod
    def from_file(cls, path: str | Path | None, ident: str | None = None) -> Artifact:
        info = file_identity(path)
        if info is None:
            return cls(id=ident)
        return cls(path=info["path"], id=ident, sha256=info["sha256"])


# ----------------------------------------------------------------------------------------
# queue items
@dataclass
class _Chunk:
    stream: str
    t0: float
    data: np.ndarray
    t: np.ndarray | None


@dataclass
class _Event:
    t: float
    kind: str
    detail: Any


@dataclass
class _Control:
    op: str
    args: dict[str, Any]
    done: threading.Event
    result: Any = None
    error: BaseException | None = None


class Recorder:
    """Owns the writer thread and at most one open session at a time."""

    def __init__(
        self,
        data_dir: str | Path,
        *,
        queue_chunks: int = 2048,
        flush_interval_s: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
        taps: dict[str, Callable[[str, np.ndarray, np.ndarray], None]] | None = None,
    ) -> None:
        """``taps`` maps stream names to callables run on the writer thread with
        ``(stream, times, data)`` for every written chunk (used to publish LSL outlets
        without touching the control thread)."""
        if flush_interval_s <= 0:
            raise ValueError("flush_interval_s must be positive")
        self.data_dir = Path(data_dir)
        self.flush_interval_s = float(flush_interval_s)
        self.clock = clock
        self._taps = dict(taps or {})
        self._q: queue.Queue[Any] = queue.Queue(maxsize=int(queue_chunks))
        self._drop_lock = threading.Lock()
        self._dropped_total = 0
        self._dropped_by_stream: dict[str, int] = {}
        self._dropped_reported = 0
        self._submitted = 0
        self._written_chunks = 0
        self._written_events = 0
        self._commits = 0
        self._last_commit_mono = 0.0
        self._write_errors = 0
        self._last_error: str | None = None
        self._session: str | None = None  # read by submitters without a lock (atomic ref)
        self._db_path: Path | None = None
        self._closed = False
        _ensure_dir(self.data_dir)
        self._thread = threading.Thread(target=self._run, name="exoctl-recorder", daemon=True)
        self._thread.start()

    # ---- control-thread side: never blocks -------------------------------------------
    @property
    def active_session(self) -> str | None:
        return self._session

    @property
    def db_path(self) -> Path | None:
        return self._db_path

    def submit_chunk(
        self,
        stream: str,
        t0: float,
        array: np.ndarray,
        *,
        t: np.ndarray | None = None,
        copy: bool = True,
    ) -> bool:
        """Queue a copy of ``array`` (rows are samples) for writing; False if not taken.

        ``t`` optionally gives the time of every row (float64, same length as the array).
        Without it the chunk has one time, ``t0``. Returns False when no session is open
        (nothing to record) or the queue is full (counted as dropped). ``copy=False`` hands
        over arrays the caller will never touch again (saves a copy off the control thread).
        """
        if self._session is None:
            return False
        a = np.array(array, copy=copy, order="C")
        if a.ndim == 0:
            a = a.reshape(1)
        tt = None
        if t is not None:
            tt = np.array(t, dtype=np.float64, copy=copy).reshape(-1)
            if tt.shape[0] != a.shape[0]:
                raise ValueError(f"{stream}: {tt.shape[0]} times for {a.shape[0]} rows")
        return self._put(_Chunk(stream, float(t0), a, tt), stream)

    def submit_event(self, kind: str, detail: Any = None, *, t: float | None = None) -> bool:
        """Queue an event (fault, e-stop, assist change, ...); False if not taken."""
        if self._session is None:
            return False
        return self._put(_Event(self.clock() if t is None else float(t), kind, detail), kind)

    def stream(
        self, name: str, width: int, *, batch: int = 50, dtype: Any = np.float64
    ) -> StreamWriter:
        """A preallocated per-tick batcher for ``name`` (see StreamWriter)."""
        return StreamWriter(self, name, width, batch=batch, dtype=dtype)

    def _put(self, item: Any, key: str) -> bool:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            with self._drop_lock:
                self._dropped_total += 1
                self._dropped_by_stream[key] = self._dropped_by_stream.get(key, 0) + 1
            return False
        self._submitted += 1
        return True

    # ---- supervisor side: may block briefly ------------------------------------------
    def start_session(
        self,
        patient: str,
        *,
        protocol: str | None = None,
        config: dict[str, Any] | None = None,
        model: Artifact | None = None,
        calibration: Artifact | None = None,
        software_version: str = __version__,
        streams: dict[str, dict[str, Any]] | None = None,
        timeout_s: float = 10.0,
    ) -> str:
        """Create the session's database and start accepting data; returns its id.

        ``streams`` optionally describes streams: ``{name: {"columns": [...], "unit": ..,
        "description": ..}}``; exports use the column labels.
        """
        validate_patient(patient)
        if self._session is not None:
            raise RecorderError(f"session {self._session} is still being recorded")
        sid = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + secrets.token_hex(3)
        args = dict(
            id=sid,
            patient=patient,
            protocol=protocol,
            config=config or {},
            model=model or Artifact(),
            calibration=calibration or Artifact(),
            software_version=software_version,
            streams=streams or {},
        )
        self._control("open", args, timeout_s)
        self._session = sid
        return sid

    def stop_session(self, end_reason: str = "stopped", *, timeout_s: float = 10.0) -> str | None:
        """Flush everything queued, write the stop time and reason, close the file."""
        sid = self._session
        if sid is None:
            return None
        self._session = None  # new submissions are refused from here on
        self._control("close", {"end_reason": end_reason}, timeout_s)
        return sid

    def flush(self, timeout_s: float = 10.0) -> None:
        """Block until everything queued so far is committed."""
        self._control("flush", {}, timeout_s)

    def close(self, end_reason: str = "recorder closed", timeout_s: float = 10.0) -> None:
        """Stop any session (flushing it) and end the writer thread."""
        if self._closed:
            return
        if self._session is not None:
            self.stop_session(end_reason, timeout_s=timeout_s)
        self._control("exit", {}, timeout_s)
        self._thread.join(timeout_s)
        self._closed = True

    def stats(self) -> dict[str, Any]:
        with self._drop_lock:
            dropped = self._dropped_total
            by_stream = dict(self._dropped_by_stream)
        return {
            "session": self._session,
            "db_path": str(self._db_path) if self._db_path else None,
            "submitted": self._submitted,
            "dropped": dropped,
            "dropped_by_stream": by_stream,
            "written_chunks": self._written_chunks,
            "written_events": self._written_events,
            "commits": self._commits,
            "queue_depth": self._q.qsize(),
            "queue_capacity": self._q.maxsize,
            "write_errors": self._write_errors,
            "last_error": self._last_error,
            "writer_alive": self._thread.is_alive(),
        }

    def _control(self, op: str, args: dict[str, Any], timeout_s: float) -> Any:
        if not self._thread.is_alive():
            raise RecorderError("the recorder's writer thread is not running")
        c = _Control(op, args, threading.Event())
        # Blocking put: control items must never be dropped, and the writer is draining.
        self._q.put(c, timeout=timeout_s)
        if not c.done.wait(timeout_s):
            raise RecorderError(f"recorder did not complete {op!r} within {timeout_s} s")
        if c.error is not None:
            raise RecorderError(f"recorder {op} failed: {c.error}") from c.error
        return c.result

    # ---- writer thread ---------------------------------------------------------------
    def _run(self) -> None:
        conn: sqlite3.Connection | None = None
        dirty = False
        self._last_commit_mono = time.monotonic()
        while True:
            timeout = max(0.0, self._last_commit_mono + self.flush_interval_s - time.monotonic())
            try:
                item = self._q.get(timeout=timeout if dirty else self.flush_interval_s)
            except queue.Empty:
                item = None
            try:
                if isinstance(item, _Chunk):
                    if conn is not None:
                        self._write_chunk(conn, item)
                        dirty = True
                elif isinstance(item, _Event):
                    if conn is not None:
                        _insert_event(conn, item.t, item.kind, item.detail)
                        self._written_events += 1
                        dirty = True
                elif isinstance(item, _Control):
                    try:
                        if item.op == "open":
                            if conn is not None:  # should not happen; close defensively
                                self._close_db(conn, "superseded")
                            conn = self._open_db(item.args)
                            dirty = False
                        elif item.op == "close":
                            if conn is not None:
                                self._report_drops(conn)
                                self._close_db(conn, item.args["end_reason"])
                                conn = None
                                dirty = False
                        elif item.op == "flush":
                            if conn is not None:
                                self._report_drops(conn)
                                conn.commit()
                                self._commits += 1
                                self._last_commit_mono = time.monotonic()
                                dirty = False
                        elif item.op == "exit":
                            if conn is not None:
                                self._close_db(conn, "recorder closed")
                            item.done.set()
                            return
                    except BaseException as e:  # reported to the caller, thread lives on
                        item.error = e
                    finally:
                        item.done.set()
                if conn is not None and dirty:
                    now = time.monotonic()
                    if now - self._last_commit_mono >= self.flush_interval_s:
                        self._report_drops(conn)
                        conn.commit()
                        self._commits += 1
                        self._last_commit_mono = now
                        dirty = False
            except sqlite3.Error as e:
                # Never let the writer die silently: count, keep the message, carry on.
                self._write_errors += 1
                self._last_error = f"{type(e).__name__}: {e}"

    def _write_chunk(self, conn: sqlite3.Connection, c: _Chunk) -> None:
        a = c.data
        if a.dtype.byteorder == ">":
            a = a.astype(a.dtype.newbyteorder("<"))
        conn.execute(
            "INSERT INTO chunks(stream, t0, n, dtype, shape_json, data, t) VALUES (?,?,?,?,?,?,?)",
            (
                c.stream,
                c.t0,
                int(a.shape[0]),
                a.dtype.str,
                json.dumps(list(a.shape)),
                a.tobytes(),
                None if c.t is None else c.t.tobytes(),
            ),
        )
        self._written_chunks += 1
        tap = self._taps.get(c.stream)
        if tap is not None:
            times = c.t if c.t is not None else np.full(a.shape[0], c.t0)
            try:
                tap(c.stream, times, a)
            except Exception as e:  # a publishing problem must not stop the recording
                self._last_error = f"tap {c.stream}: {e}"

    def _report_drops(self, conn: sqlite3.Connection) -> None:
        with self._drop_lock:
            total = self._dropped_total
            by_stream = dict(self._dropped_by_stream)
        if total > self._dropped_reported:
            _insert_event(
                conn,
                self.clock(),
                "recorder_overflow",
                {
                    "dropped": total - self._dropped_reported,
                    "dropped_total": total,
                    "by_stream_total": by_stream,
                },
            )
            self._written_events += 1
            self._dropped_reported = total

    def _open_db(self, a: dict[str, Any]) -> sqlite3.Connection:
        pdir = self.data_dir / a["patient"]
        _ensure_dir(pdir)
        path = pdir / (a["id"] + DB_SUFFIX)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        conn = _connect(path)
        conn.executescript(_SCHEMA)
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        m: Artifact = a["model"]
        c: Artifact = a["calibration"]
        conn.execute(
            "INSERT INTO sessions(id, patient, protocol, start_time, start_mono, config_json,"
            " model_path, model_id, model_sha256, calibration_path, calibration_id,"
            " calibration_sha256, software_version) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                a["id"],
                a["patient"],
                a["protocol"],
                time.time(),
                self.clock(),
                json.dumps(a["config"], default=str, sort_keys=True),
                m.path,
                m.id,
                m.sha256,
                c.path,
                c.id,
                c.sha256,
                a["software_version"],
            ),
        )
        for name, meta in a["streams"].items():
            conn.execute(
                "INSERT OR REPLACE INTO streams(name, columns_json, unit, description)"
                " VALUES (?,?,?,?)",
                (name, json.dumps(meta.get("columns")), meta.get("unit"), meta.get("description")),
            )
        conn.commit()
        self._commits += 1
        self._last_commit_mono = time.monotonic()
        self._db_path = path
        return conn

    def _close_db(self, conn: sqlite3.Connection, end_reason: str) -> None:
        try:
            conn.execute(
                "UPDATE sessions SET stop_time=?, stop_mono=?, end_reason=?",
                (time.time(), self.clock(), end_reason),
            )
            conn.commit()
            self._commits += 1
            # Fold the WAL back so the closed session is one self-contained file.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            conn.close()
            self._db_path = None


class StreamWriter:
    """Per-tick rows batched into chunks with preallocated buffers.

    The control thread calls ``append(t, row)`` once per tick: it copies the row into a
    preallocated array (no allocation) and, every ``batch`` rows, hands one chunk (with the
    time of every row) to the recorder. At 500 Hz and batch=50 that is 10 queue items a
    second per stream instead of 500.
    """

    def __init__(
        self, recorder: Recorder, name: str, width: int, *, batch: int = 50, dtype: Any = np.float64
    ) -> None:
        if batch < 1 or width < 1:
            raise ValueError("batch and width must be >= 1")
        self.recorder = recorder
        self.name = name
        self._buf = np.zeros((batch, width), dtype=dtype)
        self._t = np.zeros(batch, dtype=np.float64)
        self._n = 0

    def append(self, t: float, row: Any) -> None:
        i = self._n
        self._buf[i] = row
        self._t[i] = t
        self._n = i + 1
        if self._n == self._buf.shape[0]:
            self.flush()

    def flush(self) -> bool:
        n = self._n
        if n == 0:
            return True
        self._n = 0
        # submit_chunk copies, so the buffers are free again on return.
        return self.recorder.submit_chunk(self.name, self._t[0], self._buf[:n], t=self._t[:n])


# ----------------------------------------------------------------------------------------
# reading, listing, export
def _connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    else:
        conn = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def _insert_event(conn: sqlite3.Connection, t: float, kind: str, detail: Any) -> None:
    conn.execute(
        "INSERT INTO events(t, kind, detail_json) VALUES (?,?,?)",
        (t, kind, None if detail is None else json.dumps(detail, default=str)),
    )


def _ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for existing dirs: enforce it.
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


def find_session(data_dir: str | Path, session_id: str) -> Path:
    """The database file of a session id, searched in every patient directory."""
    validate_session_id(session_id)
    hits = sorted(Path(data_dir).glob(f"*/{session_id}{DB_SUFFIX}"))
    if not hits:
        raise RecorderError(f"no session {session_id} under {data_dir}")
    return hits[0]


def iter_session_files(data_dir: str | Path, patient: str | None = None) -> Iterator[Path]:
    base = Path(data_dir)
    if not base.exists():
        return
    if not os.access(base, os.R_OK | os.X_OK):  # glob() would silently find nothing
        raise PermissionError(13, "permission denied", str(base))
    pattern = f"{validate_patient(patient)}/*{DB_SUFFIX}" if patient else f"*/*{DB_SUFFIX}"
    yield from sorted(base.glob(pattern))


@contextlib.contextmanager
def open_session_db(path: str | Path) -> Iterator[sqlite3.Connection]:
    """Open a recording for reading. Read-write so a WAL left by a killed writer is
    recovered; nothing is modified."""
    conn = sqlite3.connect(str(path), timeout=5.0)
    conn.row_factory = sqlite3.Row
    try:
        yield conn
    finally:
        conn.close()


def session_info(conn: sqlite3.Connection, session_id: str | None = None) -> dict[str, Any]:
    q = "SELECT * FROM sessions" + (" WHERE id=?" if session_id else "")
    row = conn.execute(q, (session_id,) if session_id else ()).fetchone()
    if row is None:
        raise RecorderError(f"session {session_id} not found in this recording")
    info = dict(row)
    info["config"] = json.loads(info.pop("config_json") or "{}")
    info["duration_s"] = (
        (info["stop_mono"] - info["start_mono"]) if info.get("stop_mono") is not None else None
    )
    return info


def session_summary(path: str | Path) -> dict[str, Any]:
    """A row for ``sessions list``: identity, times, end reason, counts."""
    with open_session_db(path) as conn:
        info = session_info(conn)
        n_chunks, last_chunk = conn.execute("SELECT count(*), max(t0) FROM chunks").fetchone()
        n_events = conn.execute("SELECT count(*) FROM events").fetchone()[0]
    duration = info["duration_s"]
    if duration is None and last_chunk is not None:
        duration = last_chunk - info["start_mono"]
    return {
        "id": info["id"],
        "patient": info["patient"],
        "protocol": info["protocol"],
        "start_time": info["start_time"],
        "stop_time": info["stop_time"],
        "duration_s": duration,
        "end_reason": info["end_reason"] or ("(unfinished)" if info["stop_time"] is None else None),
        "chunks": n_chunks,
        "events": n_events,
        "path": str(path),
    }


def list_sessions(data_dir: str | Path, patient: str | None = None) -> list[dict[str, Any]]:
    out = []
    for p in iter_session_files(data_dir, patient):
        try:
            out.append(session_summary(p))
        except (sqlite3.Error, RecorderError) as e:
            out.append({"id": p.stem, "patient": p.parent.name, "error": str(e), "path": str(p)})
    return out


def list_patients(data_dir: str | Path) -> list[dict[str, Any]]:
    base = Path(data_dir)
    if not base.exists():
        return []
    rows = []
    for d in sorted(p for p in base.iterdir() if p.is_dir() and PATIENT_RE.match(p.name)):
        files = sorted(d.glob(f"*{DB_SUFFIX}"))
        rows.append(
            {
                "patient": d.name,
                "sessions": len(files),
                "last_session": files[-1].stem if files else None,
            }
        )
    return rows


def read_stream(conn: sqlite3.Connection, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a stream: (times (n,), data (n, ...)), in time order."""
    ts: list[np.ndarray] = []
    ds: list[np.ndarray] = []
    for t0, n, dtype, shape_json, data, tblob in conn.execute(
        "SELECT t0, n, dtype, shape_json, data, t FROM chunks WHERE stream=? ORDER BY t0, id",
        (stream,),
    ):
        shape = tuple(json.loads(shape_json))
        ds.append(np.frombuffer(data, dtype=np.dtype(dtype)).reshape(shape))
        ts.append(np.frombuffer(tblob, dtype="<f8") if tblob is not None else np.full(n, float(t0)))
    if not ds:
        return np.zeros(0), np.zeros((0, 0))
    return np.concatenate(ts), np.concatenate(ds, axis=0)


def stream_names(conn: sqlite3.Connection) -> list[str]:
    return [r[0] for r in conn.execute("SELECT DISTINCT stream FROM chunks ORDER BY stream")]


def stream_columns(conn: sqlite3.Connection, stream: str, width: int) -> list[str]:
    row = conn.execute("SELECT columns_json FROM streams WHERE name=?", (stream,)).fetchone()
    cols = json.loads(row[0]) if row and row[0] else None
    if isinstance(cols, list) and len(cols) == width:
        return [str(c) for c in cols]
    return [f"c{i}" for i in range(width)]


def read_events(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        {"t": t, "kind": kind, "detail": json.loads(d) if d else None}
        for t, kind, d in conn.execute("SELECT t, kind, detail_json FROM events ORDER BY t, id")
    ]


def export_session(
    db: str | Path, session_id: str | None = None, fmt: str = "csv", out: str | Path = "."
) -> list[Path]:
    """Export a recording; returns the files written.

    ``csv``: ``out`` is a directory (created) with ``session.json``, ``events.csv`` and one
    ``<stream>.csv`` per stream (column ``t`` then one column per channel; times on the
    controller clock, ``t - start_mono`` is seconds into the session).
    ``npz``: ``out`` is a file holding ``<stream>`` and ``<stream>__t`` arrays plus
    ``session_json`` and ``events_json``.
    """
    if fmt not in ("csv", "npz"):
        raise RecorderError(f"unknown export format {fmt!r}: use csv or npz")
    out = Path(out)
    with open_session_db(db) as conn:
        info = session_info(conn, session_id)
        events = read_events(conn)
        streams = {s: read_stream(conn, s) for s in stream_names(conn)}
        columns = {
            s: stream_columns(conn, s, int(np.prod(d.shape[1:])) if d.ndim > 1 else 1)
            for s, (_, d) in streams.items()
        }
    written: list[Path] = []
    if fmt == "npz":
        if out.suffix != ".npz":
            out = out.with_suffix(".npz") if out.suffix else out / f"{info['id']}.npz"
        out.parent.mkdir(parents=True, exist_ok=True)
        arrays: dict[str, Any] = {
            "session_json": np.array(json.dumps(info, default=str)),
            "events_json": np.array(json.dumps(events, default=str)),
        }
        for s, (t, d) in streams.items():
            arrays[s] = d
            arrays[f"{s}__t"] = t
            arrays[f"{s}__columns"] = np.array(columns[s])
        np.savez_compressed(out, **arrays)
        return [out]
    out.mkdir(parents=True, exist_ok=True)
    p = out / "session.json"
    p.write_text(json.dumps(info, indent=2, default=str))
    written.append(p)
    p = out / "events.csv"
    with p.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t", "t_session", "kind", "detail"])
        for e in events:
            w.writerow(
                [
                    repr(e["t"]),
                    repr(e["t"] - info["start_mono"]),
                    e["kind"],
                    json.dumps(e["detail"]) if e["detail"] is not None else "",
                ]
            )
    written.append(p)
    for s, (t, d) in streams.items():
        p = out / (re.sub(r"[^A-Za-z0-9_.-]", "_", s).lstrip(".") + ".csv")
        flat = d.reshape(d.shape[0], -1) if d.ndim != 1 else d.reshape(-1, 1)
        with p.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["t", "t_session", *columns[s]])
            for ti, row in zip(t, flat, strict=True):
                w.writerow([repr(float(ti)), repr(float(ti - info["start_mono"])), *row.tolist()])
        written.append(p)
    return written
