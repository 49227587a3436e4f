"""The session recorder: a writer thread that puts the controller's data into the store.

The control thread never waits for the disk: ``submit_chunk`` and ``submit_event`` copy the
data and ``put_nowait`` it on a bounded queue. When the queue is full the item is dropped and
counted, and the writer records one ``recorder_overflow`` event when it next has room.

Durability: WAL journal with ``synchronous=NORMAL``. A committed transaction survives the
process being killed (it is in the WAL file, which the OS holds); only a power loss may lose
the last transactions, never corrupt the file. The writer thread commits at least every
``flush_interval_s``, so ``kill -9`` loses at most that much plus what sat in the queue.

The file format and every reader are in exoctl.recordings.store, exports in
exoctl.recordings.export. The store's names used by the daemon, the CLI and the tests
(``Artifact``, ``RecorderError``, ``read_stream``, ...) are re-exported here so that
``recorder.X`` keeps working; new code imports them from the store.
"""

from __future__ import annotations

import math
import queue
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from exoctl import __version__
from exoctl.control.safety import RecordingHealth
from exoctl.recordings import store
from exoctl.recordings.store import (  # noqa: F401  (re-exported, see the docstring)
    DB_SUFFIX,
    PATIENT_RE,
    SCHEMA_VERSION,
    SESSION_RE,
    Artifact,
    RecorderError,
    file_identity,
    find_session,
    free_bytes,
    iter_session_files,
    list_patients,
    list_sessions,
    open_session_db,
    read_events,
    read_stream,
    read_table,
    session_info,
    session_summary,
    stream_columns,
    stream_names,
    validate_patient,
    validate_session_id,
)
from exoctl.recordings.writer import Chunk, Control, DropCounter, Event, SessionWriter

# Streams the controller is expected to record (names are conventions, not a closed set).
STANDARD_STREAMS = (
    "emg_raw",
    "activation",
    "synergy",
    "torque_estimated",
    "torque_command",
    "telemetry",
    "safety_state",
    "loop_timing",
)


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
        self._q: queue.Queue[Any] = queue.Queue(maxsize=int(queue_chunks))
        self._drops = DropCounter()
        self._submitted = 0
        self._session: str | None = None  # read by submitters without a lock (atomic ref)
        self._closed = False
        self.health = RecordingHealth()
        """When the open session's data was last committed cleanly: the controller's
        recording watchdog reads it (``Controller(recording=...)``)."""
        self.last_close_problem: str | None = None
        """Why the last session's file could not be finished (None: it was)."""
        store.ensure_dir(self.data_dir)
        self._writer = SessionWriter(
            self._q,
            self.data_dir,
            self.flush_interval_s,
            clock,
            dict(taps or {}),
            self._drops,
            self.health,
        )
        self._thread = threading.Thread(
            target=self._writer.run, name="exoctl-recorder", daemon=True
        )
        self._thread.start()

    # ---- control-thread side: never blocks -------------------------------------------
    @property
    def active_session(self) -> str | None:
        return self._session

    @property
    def db_path(self) -> Path | None:
        return self._writer.db_path

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
        return self._put(Chunk(stream, float(t0), a, tt), stream)

    def submit_event(self, kind: str, detail: Any = None, *, t: float | None = None) -> bool:
        """Queue an event (fault, e-stop, assist change, ...); False if not taken."""
        if self._session is None:
            return False
        return self._put(Event(self.clock() if t is None else float(t), kind, detail), kind)

    def stream(
        self, name: str, width: int, *, batch: int = 50, dtype: Any = np.float64
    ) -> StreamWriter:
        """A preallocated per-tick batcher for ``name`` (see StreamWriter)."""
        return StreamWriter(self, name, width, batch=batch, dtype=dtype)

    def _put(self, item: Any, key: str) -> bool:
        try:
            self._q.put_nowait(item)
        except queue.Full:
            self._drops.add(key)
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

        ``streams`` optionally describes streams: ``{name: {"columns": [...], "unit": ..
        (every column) or "units": [...] (one per column), "levels": [...] (names of integer
        codes), "description": ..}}``; exports and reports use them.
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
        """Flush everything queued, write the stop time and reason, close the file.

        The file is closed also when the disk refuses the last writes (full or failing):
        then ``last_close_problem`` says why it is unfinished, and what was committed before
        stays readable."""
        sid = self._session
        if sid is None:
            return None
        self._session = None  # new submissions are refused from here on
        self.last_close_problem = self._control("close", {"end_reason": end_reason}, timeout_s)
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
        dropped, by_stream = self._drops.snapshot()
        w = self._writer
        return {
            "session": self._session,
            "db_path": str(w.db_path) if w.db_path else None,
            "submitted": self._submitted,
            "dropped": dropped,
            "dropped_by_stream": by_stream,
            "written_chunks": w.written_chunks,  # committed to disk
            "written_events": w.written_events,
            "failed_chunks": w.failed_chunks,  # lost to write errors
            "failed_events": w.failed_events,
            "uncommitted_s": self.uncommitted_s(),
            "commits": w.commits,
            "queue_depth": self._q.qsize(),
            "queue_capacity": self._q.maxsize,
            "write_errors": w.write_errors,
            "last_error": w.last_error,
            "writer_alive": self._thread.is_alive(),
        }

    def uncommitted_s(self) -> float | None:
        """Seconds since the open session's last clean commit (None: no session open)."""
        ok_at = self.health.ok_at
        return None if math.isinf(ok_at) else round(time.monotonic() - ok_at, 3)

    def _control(self, op: str, args: dict[str, Any], timeout_s: float) -> Any:
        if not self._thread.is_alive():
            raise RecorderError("the recorder's writer thread is not running")
        c = Control(op, args, threading.Event())
        # Blocking put: control items must never be dropped, and the writer is draining.
        self._q.put(c, timeout=timeout_s)
        if not c.done.wait(timeout_s):
            raise RecorderError(f"recorder did not complete {op!r} within {timeout_s} s")
        if c.error is not None:
            raise RecorderError(f"recorder {op} failed: {c.error}") from c.error
        return c.result


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


def export_session(*args: Any, **kwargs: Any) -> Any:
    """See exoctl.recordings.export.export_session (kept here for existing callers)."""
    from exoctl.recordings.export import export_session as run

    return run(*args, **kwargs)
