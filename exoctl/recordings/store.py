"""The session store: one SQLite file per session, its schema, and everything that reads it.

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

The writer (exoctl.recordings.recorder) is the only code that writes these files; exports
(exoctl.recordings.export) and reports (exoctl.recordings.report) read them through this module.

Schema versions (``PRAGMA user_version``): 1 had one ``unit`` string per stream and the safety
state as a float column of ``telemetry``; 2 adds per-column units and, for streams of integer
codes, the names of their levels (the safety state is its own ``safety_state`` stream of codes
whose names are stored beside them). Version 1 files are still read: their ``safety_state``
column is decoded with the names the safety layer had then (``LEGACY_LEVELS``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.errors import ExoctlError
from exoctl.recordings.fields import PATIENT_RE, patient_problem, session_id_problem
from exoctl.recordings.fields import SESSION_RE as SESSION_RE  # the recorder re-exports it

SCHEMA_VERSION = 2
DB_SUFFIX = ".sqlite"
# The safety layer's states in version-1 files (SafetyState 0..4 then), by column name.
LEGACY_LEVELS = {"safety_state": ("NORMAL", "DEGRADED", "SAFE_STOP", "FAULT_LATCHED", "ESTOP")}

SCHEMA = """
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
    unit TEXT,                     -- one unit for every column (when units_json is null)
    description TEXT,
    units_json TEXT,               -- one unit per column (version 2)
    levels_json TEXT               -- names of integer codes 0, 1, ... (version 2)
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


class RecorderError(ExoctlError, RuntimeError):
    """A recording request that cannot be honoured; the message is for a person."""


def validate_patient(patient: str) -> str:
    """Patient ids become directory names, so they are restricted to a safe alphabet."""
    problem = patient_problem(patient)
    if problem:
        raise RecorderError(problem)
    return patient


def validate_session_id(session_id: str) -> str:
    problem = session_id_problem(session_id)
    if problem:
        raise RecorderError(problem)
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
# writing primitives (used by the recorder's writer thread only)
def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    else:
        conn = sqlite3.connect(str(path), timeout=5.0, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
    return conn


def insert_event(conn: sqlite3.Connection, t: float, kind: str, detail: Any) -> None:
    conn.execute(
        "INSERT INTO events(t, kind, detail_json) VALUES (?,?,?)",
        (t, kind, None if detail is None else json.dumps(detail, default=str)),
    )


def insert_stream_meta(conn: sqlite3.Connection, name: str, meta: dict[str, Any]) -> None:
    """``meta``: ``columns``, ``unit`` (all columns) or ``units`` (one per column), ``levels``
    (names of integer codes), ``description``."""
    units, levels = meta.get("units"), meta.get("levels")
    conn.execute(
        "INSERT OR REPLACE INTO streams(name, columns_json, unit, description, units_json,"
        " levels_json) VALUES (?,?,?,?,?,?)",
        (
            name,
            json.dumps(meta.get("columns")),
            meta.get("unit"),
            meta.get("description"),
            None if units is None else json.dumps(list(units)),
            None if levels is None else json.dumps(list(levels)),
        ),
    )


def free_bytes(path: str | Path) -> int:
    """Bytes that an unprivileged writer may still use on the disk holding ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def ensure_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    # mkdir's mode is filtered by the umask and ignored for existing dirs: enforce it.
    if path.stat().st_mode & 0o077:
        os.chmod(path, 0o700)


# ----------------------------------------------------------------------------------------
# finding and listing
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
    for d in sorted(p for p in base.iterdir() if p.is_dir() and PATIENT_RE.fullmatch(p.name)):
        files = sorted(d.glob(f"*{DB_SUFFIX}"))
        rows.append(
            {
                "patient": d.name,
                "sessions": len(files),
                "last_session": files[-1].stem if files else None,
            }
        )
    return rows


# ----------------------------------------------------------------------------------------
# reading one session
def read_stream(conn: sqlite3.Connection, stream: str) -> tuple[np.ndarray, np.ndarray]:
    """All samples of a stream: (times (n,), data (n, ...)), in time order, as stored."""
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


def _meta_row(conn: sqlite3.Connection, stream: str) -> dict[str, Any]:
    cols = {r[1] for r in conn.execute("PRAGMA table_info(streams)")}
    wanted = ("columns_json", "unit", "description", "units_json", "levels_json")
    sel = ", ".join(c if c in cols else f"NULL AS {c}" for c in wanted)
    row = conn.execute(f"SELECT {sel} FROM streams WHERE name=?", (stream,)).fetchone()
    return dict(zip(wanted, row, strict=True)) if row else dict.fromkeys(wanted)


def stream_columns(conn: sqlite3.Connection, stream: str, width: int) -> list[str]:
    cols = json.loads(_meta_row(conn, stream)["columns_json"] or "null")
    if isinstance(cols, list) and len(cols) == width:
        return [str(c) for c in cols]
    return [f"c{i}" for i in range(width)]


@dataclass
class Column:
    """One channel of a stream: values, unit, and for a categorical the names of its codes."""

    name: str
    values: np.ndarray
    unit: str | None = None
    levels: tuple[str, ...] | None = None

    def names(self) -> np.ndarray:
        """A categorical's values as their names (object array); an unknown code as its number."""
        if self.levels is None:
            raise ValueError(f"{self.name} is not categorical")
        lv = np.array([*self.levels, "?"], dtype=object)
        codes = np.asarray(self.values).astype(np.int64)
        ok = (codes >= 0) & (codes < len(self.levels))
        out = lv[np.where(ok, codes, len(self.levels))]
        out[~ok] = [str(c) for c in codes[~ok]]
        return out


@dataclass
class StreamTable:
    """A stream with its metadata: every sample's time (controller clock, s) and its columns."""

    name: str
    t: np.ndarray
    columns: list[Column] = field(default_factory=list)
    description: str | None = None

    def column(self, name: str) -> Column:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(f"{self.name} has no column {name!r}")

    def matrix(self, prefix: str = "") -> tuple[np.ndarray, list[str]]:
        """The numeric columns whose names start with ``prefix`` as (n, k) float64, and the
        names with the prefix removed."""
        cs = [c for c in self.columns if c.name.startswith(prefix) and c.levels is None]
        if not cs:
            return np.zeros((self.t.size, 0)), []
        m = np.stack([np.asarray(c.values, dtype=np.float64) for c in cs], axis=1)
        return m, [c.name[len(prefix) :] for c in cs]


def read_table(conn: sqlite3.Connection, stream: str) -> StreamTable:
    """A stream with names, units and level names for every column (any schema version)."""
    t, d = read_stream(conn, stream)
    flat = d.reshape(d.shape[0], -1) if d.ndim != 1 else d.reshape(-1, 1)
    width = flat.shape[1]
    meta = _meta_row(conn, stream)
    names = stream_columns(conn, stream, width)
    units_list = json.loads(meta["units_json"] or "null")
    if not (isinstance(units_list, list) and len(units_list) == width):
        units_list = [meta["unit"]] * width
    levels = json.loads(meta["levels_json"] or "null")
    cols = []
    for i, name in enumerate(names):
        lv = levels if levels is not None else LEGACY_LEVELS.get(name)
        cols.append(
            Column(name, flat[:, i], units_list[i], None if lv is None else tuple(map(str, lv)))
        )
    return StreamTable(stream, t, cols, meta["description"])


def read_events(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [
        {"t": t, "kind": kind, "detail": json.loads(d) if d else None}
        for t, kind, d in conn.execute("SELECT t, kind, detail_json FROM events ORDER BY t, id")
    ]
