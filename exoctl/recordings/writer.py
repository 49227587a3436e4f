"""The recorder's writer thread: drains the queue into at most one open session file.

Only this thread touches the SQLite connection; the recorder (exoctl.recordings.recorder) fills
the queue and waits on control items. Items are applied in queue order, so a ``close`` sees
every chunk queued before it. Commits happen at least every ``flush_interval_s`` while there
is data, and on every control item. A SQLite error never ends the thread: it is counted and
its message kept (``write_errors``, ``last_error``), the open transaction is rolled back (its
chunks and events count as failed, never as written: SQLite may have dropped them already, as
it does on a full disk), and the recording carries on.

Health, for the safety layer: ``health.ok_at`` is the time of the last commit with no write
error since the one before, +inf while no session is open. The control loop compares it with
its clock (the recording watchdog), so a full or failing disk removes assistance.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.control.safety import RecordingHealth
from exoctl.recordings import store

Tap = Callable[[str, np.ndarray, np.ndarray], None]


@dataclass
class Chunk:
    stream: str
    t0: float
    data: np.ndarray
    t: np.ndarray | None


@dataclass
class Event:
    t: float
    kind: str
    detail: Any


@dataclass
class Control:
    """A request from the supervisor (open, close, flush, exit), answered through ``done``."""

    op: str
    args: dict[str, Any]
    done: threading.Event
    result: Any = None
    error: BaseException | None = None


class DropCounter:
    """Items refused because the queue was full, counted by the submitting threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.total = 0
        self.by_key: dict[str, int] = {}

    def add(self, key: str) -> None:
        with self._lock:
            self.total += 1
            self.by_key[key] = self.by_key.get(key, 0) + 1

    def snapshot(self) -> tuple[int, dict[str, int]]:
        with self._lock:
            return self.total, dict(self.by_key)


class SessionWriter:
    """The body of the writer thread (``run``) and its counters."""

    def __init__(
        self,
        q: queue.Queue[Any],
        data_dir: Path,
        flush_interval_s: float,
        clock: Callable[[], float],
        taps: dict[str, Tap],
        drops: DropCounter,
        health: RecordingHealth | None = None,
    ) -> None:
        self.q = q
        self.data_dir = data_dir
        self.flush_interval_s = flush_interval_s
        self.clock = clock
        self.taps = taps
        self.drops = drops
        self.health = health if health is not None else RecordingHealth()
        self.written_chunks = 0  # committed
        self.written_events = 0
        self.failed_chunks = 0  # lost to a write error (rolled back)
        self.failed_events = 0
        self._pending_chunks = 0  # written into the open transaction, not yet committed
        self._pending_events = 0
        self._clean = True  # no write error since the last commit
        self.commits = 0
        self.write_errors = 0
        self.last_error: str | None = None
        self.db_path: Path | None = None
        self._dropped_reported = 0
        self._last_commit = time.monotonic()
        self._conn: sqlite3.Connection | None = None
        self._dirty = False

    def run(self) -> None:
        while True:
            wait = self.flush_interval_s
            if self._dirty:
                wait = max(0.0, self._last_commit + self.flush_interval_s - time.monotonic())
            try:
                item = self.q.get(timeout=wait)
            except queue.Empty:
                item = None
            try:
                if isinstance(item, Chunk):
                    if self._conn is not None:
                        self._write_chunk(self._conn, item)
                        self._dirty = True
                elif isinstance(item, Event):
                    if self._conn is not None:
                        store.insert_event(self._conn, item.t, item.kind, item.detail)
                        self._pending_events += 1
                        self._dirty = True
                elif isinstance(item, Control) and self._control(item):
                    return
                due = time.monotonic() - self._last_commit >= self.flush_interval_s
                if self._conn is not None and self._dirty and due:
                    self._commit(self._conn)
            except sqlite3.Error as e:
                # Never let the writer die silently: count, keep the message, carry on.
                self._failed(e)

    def _failed(self, e: sqlite3.Error) -> None:
        """A write error: count it, roll the open transaction back and count what it held
        as failed. The health time stays where it was until a clean commit."""
        self.write_errors += 1
        self.last_error = f"{type(e).__name__}: {e}"
        self._clean = False
        if self._conn is not None:
            with contextlib.suppress(sqlite3.Error):
                self._conn.rollback()
        self.failed_chunks += self._pending_chunks
        self.failed_events += self._pending_events
        self._pending_chunks = self._pending_events = 0
        self._dirty = False

    def _control(self, item: Control) -> bool:
        """Apply one control item; True when the thread must end."""
        conn = self._conn
        try:
            if item.op == "open":
                if conn is not None:  # should not happen; close defensively
                    self._close_db(conn, "superseded")
                self._conn = self._open_db(item.args)
                self._dirty = False
            elif item.op == "close":
                if conn is not None:
                    item.result = self._close_db(conn, item.args["end_reason"])
            elif item.op == "flush":
                if conn is not None:
                    self._commit(conn)
            elif item.op == "exit":
                if conn is not None:
                    self._close_db(conn, "recorder closed")
                return True
        except BaseException as e:  # reported to the caller, thread lives on
            item.error = e
        finally:
            item.done.set()
        return False

    def _commit(self, conn: sqlite3.Connection) -> None:
        self._report_drops(conn)
        conn.commit()
        self._committed()

    def _committed(self) -> None:
        """After a commit that succeeded: what it held is written; a clean one is health."""
        self.commits += 1
        self._last_commit = now = time.monotonic()
        self._dirty = False
        self.written_chunks += self._pending_chunks
        self.written_events += self._pending_events
        self._pending_chunks = self._pending_events = 0
        if self._clean:
            self.health.ok_at = now
        self._clean = True

    def _write_chunk(self, conn: sqlite3.Connection, c: Chunk) -> None:
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
        self._pending_chunks += 1
        tap = self.taps.get(c.stream)
        if tap is not None:
            times = c.t if c.t is not None else np.full(a.shape[0], c.t0)
            try:
                tap(c.stream, times, a)
            except Exception as e:  # a publishing problem must not stop the recording
                self.last_error = f"tap {c.stream}: {e}"

    def _report_drops(self, conn: sqlite3.Connection) -> None:
        total, by_stream = self.drops.snapshot()
        if total > self._dropped_reported:
            detail = {
                "dropped": total - self._dropped_reported,
                "dropped_total": total,
                "by_stream_total": by_stream,
            }
            store.insert_event(conn, self.clock(), "recorder_overflow", detail)
            self._pending_events += 1
            self._dropped_reported = total

    def _open_db(self, a: dict[str, Any]) -> sqlite3.Connection:
        pdir = self.data_dir / a["patient"]
        store.ensure_dir(pdir)
        path = pdir / (a["id"] + store.DB_SUFFIX)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        os.close(fd)
        conn = store.connect(path)
        try:
            self._create(conn, a)
        except BaseException:
            conn.close()  # a file that cannot be set up (a full disk) keeps no descriptor
            raise
        self._pending_chunks = self._pending_events = 0
        self._clean = True
        self._committed()
        self.db_path = path
        return conn

    def _create(self, conn: sqlite3.Connection, a: dict[str, Any]) -> None:
        conn.executescript(store.SCHEMA)
        conn.execute(f"PRAGMA user_version = {store.SCHEMA_VERSION}")
        m: store.Artifact = a["model"]
        c: store.Artifact = a["calibration"]
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
            store.insert_stream_meta(conn, name, meta)
        conn.commit()

    def _close_db(self, conn: sqlite3.Connection, end_reason: str) -> str | None:
        """Commit what is left, the stop time and reason, and close the file (always, also
        on a full disk). Returns None, or why the file could not be finished: what was
        committed before stays readable."""
        self.health.ok_at = math.inf  # no session: nothing is required of the disk
        problem = None
        try:
            self._report_drops(conn)
            conn.execute(
                "UPDATE sessions SET stop_time=?, stop_mono=?, end_reason=?",
                (time.time(), self.clock(), end_reason),
            )
            conn.commit()
            self._committed()
            # Fold the WAL back so the closed session is one self-contained file.
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error as e:
            self._failed(e)
            problem = self.last_error
        finally:
            self._conn = None
            self._dirty = False
            self.health.ok_at = math.inf
            conn.close()
            self.db_path = None
        return problem
