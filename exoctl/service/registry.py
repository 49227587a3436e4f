"""The per-patient model registry: which model and calibration each patient uses, and why.

One SQLite file for the data directory (``data_dir/registry.sqlite``, 0600), beside the
per-session recordings. Two append-only tables:

- ``models``: every model a patient was given (version 1, 2, ...): the model and calibration
  files with their sha256, the per-channel gain factors of an adaptation (null for a trained
  model), the recordings it was made from, its scores (before/after figures, the guard's
  verdict), who accepted it and when;
- ``selections``: every change of the patient's current model (accepting a new one, rolling
  back to an earlier one), with who and why. The current model is the newest selection.

Nothing is ever updated or deleted, so the history a clinician sees (``exoctl patients show
P``) is the history that happened, and a roll-back is one more selection, not an erasure.
Every write is one transaction with ``synchronous=FULL`` in WAL mode: a daemon killed at any
moment (``kill -9``, power loss) leaves the registry at its last committed state.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from exoctl.recordings.store import RecorderError, ensure_dir, file_identity, validate_patient

__all__ = ["REGISTRY_FILE", "Registry", "RegistryError"]

REGISTRY_FILE = "registry.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS models (
    patient TEXT NOT NULL,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,          -- wall clock, seconds since the epoch (UTC)
    model_path TEXT NOT NULL,
    model_sha256 TEXT NOT NULL,
    calibration_path TEXT NOT NULL,
    calibration_sha256 TEXT NOT NULL,
    gain_json TEXT,                    -- {muscle: factor} of an adaptation, null if none
    sources_json TEXT NOT NULL,        -- the recordings it was made from
    scores_json TEXT,                  -- figures and the guard's verdict
    accepted_by TEXT NOT NULL,
    note TEXT,
    reference_session TEXT,            -- the recording later warm-ups are compared with
    PRIMARY KEY (patient, version)
);
CREATE TABLE IF NOT EXISTS selections (
    id INTEGER PRIMARY KEY,
    patient TEXT NOT NULL,
    version INTEGER NOT NULL,
    at REAL NOT NULL,
    by TEXT NOT NULL,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS selections_patient ON selections(patient, id);
"""


class RegistryError(RecorderError):
    """A registry request that cannot be honoured; the message is for a person."""


def _user() -> str:
    """Who runs this process (uid and name): the acceptor of a model from the CLI."""
    import pwd

    uid = os.getuid()
    try:
        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


class Registry:
    """The registry of one data directory; opens its file per call (no long-held handle)."""

    def __init__(self, data_dir: str | Path) -> None:
        self.path = Path(data_dir) / REGISTRY_FILE

    def _connect(self, *, write: bool) -> sqlite3.Connection:
        if not write and not self.path.exists():
            raise RegistryError(f"no model registry yet ({self.path}): no model was accepted")
        if write:
            ensure_dir(self.path.parent)
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
        conn = sqlite3.connect(str(self.path), timeout=10.0, isolation_level=None)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        if write:
            conn.executescript(SCHEMA)
        return conn

    def accept(
        self,
        patient: str,
        model: str | Path,
        calibration: str | Path,
        *,
        sources: Sequence[Any] = (),
        gain: Mapping[str, float] | None = None,
        scores: Mapping[str, Any] | None = None,
        by: str | None = None,
        note: str | None = None,
        reference_session: str | None = None,
    ) -> int:
        """Add a model for ``patient`` and make it current; returns its version."""
        validate_patient(patient)
        m, c = file_identity(model), file_identity(calibration)
        assert m is not None and c is not None
        now = time.time()
        who = by or _user()
        conn = self._connect(write=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT COALESCE(MAX(version), 0) FROM models WHERE patient=?", (patient,)
            ).fetchone()
            version = int(row[0]) + 1
            conn.execute(
                "INSERT INTO models VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    patient, version, now, m["path"], m["sha256"], c["path"], c["sha256"],
                    None if gain is None else json.dumps(dict(gain)),
                    json.dumps(list(sources)),
                    None if scores is None else json.dumps(scores),
                    who, note, reference_session,
                ),
            )  # fmt: skip
            conn.execute(
                "INSERT INTO selections(patient, version, at, by, reason) VALUES (?,?,?,?,?)",
                (patient, version, now, who, "accepted"),
            )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        finally:
            conn.close()
        return version

    def roll_back(self, patient: str, version: int, *, by: str | None = None) -> dict[str, Any]:
        """Make an earlier (or any recorded) version current again; returns it."""
        validate_patient(patient)
        conn = self._connect(write=True)
        try:
            conn.execute("BEGIN IMMEDIATE")
            row = conn.execute(
                "SELECT * FROM models WHERE patient=? AND version=?", (patient, int(version))
            ).fetchone()
            if row is None:
                have = [
                    r[0]
                    for r in conn.execute(
                        "SELECT version FROM models WHERE patient=? ORDER BY version", (patient,)
                    )
                ]
                conn.execute("ROLLBACK")
                raise RegistryError(
                    f"patient {patient}: no model version {version}; versions: {have or 'none'}"
                )
            conn.execute(
                "INSERT INTO selections(patient, version, at, by, reason) VALUES (?,?,?,?,?)",
                (patient, int(version), time.time(), by or _user(), "rolled back"),
            )
            conn.execute("COMMIT")
            return _model(row)
        finally:
            conn.close()

    def current(self, patient: str) -> dict[str, Any] | None:
        """The patient's current model, or None when none was ever accepted."""
        validate_patient(patient)
        if not self.path.exists():
            return None
        conn = self._connect(write=False)
        try:
            row = conn.execute(
                "SELECT m.* FROM selections s JOIN models m "
                "ON m.patient = s.patient AND m.version = s.version "
                "WHERE s.patient=? ORDER BY s.id DESC LIMIT 1",
                (patient,),
            ).fetchone()
            return None if row is None else _model(row)
        except sqlite3.OperationalError:  # a file made before any table was written
            return None
        finally:
            conn.close()

    def history(self, patient: str) -> dict[str, Any]:
        """Every model of the patient and every selection, oldest first, and the current one."""
        validate_patient(patient)
        conn = self._connect(write=False)
        try:
            models = [
                _model(r)
                for r in conn.execute(
                    "SELECT * FROM models WHERE patient=? ORDER BY version", (patient,)
                )
            ]
            sel = [
                dict(r)
                for r in conn.execute(
                    "SELECT version, at, by, reason FROM selections WHERE patient=? ORDER BY id",
                    (patient,),
                )
            ]
        finally:
            conn.close()
        return {
            "patient": patient,
            "current": sel[-1]["version"] if sel else None,
            "models": models,
            "selections": sel,
        }


def _model(row: sqlite3.Row) -> dict[str, Any]:
    d = dict(row)
    for key in ("gain_json", "sources_json", "scores_json"):
        raw = d.pop(key)
        d[key[: -len("_json")]] = None if raw is None else json.loads(raw)
    return d
