"""Replaying a real recording through the whole controller (``exoctl hil/sim --replay``).

The simulator stands for the patient with a recording instead of the synthetic patient: its
EMG outlet streams the trial's EMG over LSL at the trial's own rate and kind, with its channel
names, and the emulated firmware reports the trial's joint angles and velocities as telemetry.
Both run on one clock (CLOCK_MONOTONIC, which is also LSL's local clock on Linux): sample j
of the excerpt is stamped, and pushed, at ``t0 + j / fs``; the firmware at time t reports the
recorded kinematics carried to t exactly as a tick carries EMG (``exoctl.signal.tick_grid``:
linear, one sample late). What the exoskeleton commands cannot change what was recorded, so
the replayed joints do not respond to it: the summary shows what the patient would have
received, not what it would have done.

The stream starts ``preroll_s`` before ``start_s`` (when the recording has it), so that the
controller, which connects to a flowing stream as it does to an amplifier, is warm when the
scored window begins; ticks are scored from ``start_s`` and at least ``WARMUP_S`` after the
controller's session started. The controller is configured only through what the recording
is: its muscles, EMG rate and kind (``controller_overrides``), and the model to try.

Sources (``ReplaySpec``): a trial of a dataset description (``exoctl.data``), or a session
of our own recordings (``exoctl.recordings.store``: its EMG as streamed, and the joint angles the
firmware reported, with their velocities by differences; its time axis starts at its first
EMG sample). A session has no measured moments: its replay shows what a model would have
commanded, not how well it estimates.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pylsl

from exoctl.errors import DataError
from exoctl.hil.emg_source import apply_injected_faults
from exoctl.signal.tick_grid import carry_columns, seen_time

__all__ = [
    "DEFAULT_PREROLL_S",
    "ReplayError",
    "ReplayOutlet",
    "ReplayPlant",
    "ReplaySpec",
    "Recording",
    "load_recording",
]

DEFAULT_PREROLL_S = 5.0


class ReplayError(DataError):
    """A recording that cannot be replayed as asked (trial, window, session); says which."""


@dataclass(frozen=True)
class ReplaySpec:
    """What to replay (plain data: it is sent to the simulator's process)."""

    data: str | None = None  # dataset description
    trial: str | None = None
    session: str | None = None  # a session id of our own recordings
    data_dir: str | None = None  # where the sessions are (service.data_dir)
    start_s: float | None = None  # on the recording's own time axis
    end_s: float | None = None
    preroll_s: float = DEFAULT_PREROLL_S

    def describe(self) -> str:
        what = f"session {self.session}" if self.session else f"{self.data} trial {self.trial}"
        window = ""
        if self.start_s is not None or self.end_s is not None:
            window = f" from {_s(self.start_s)} to {_s(self.end_s)}"
        return what + window


def _s(v: float | None) -> str:
    return "its start" if v is None else f"{v:g} s"


@dataclass
class Recording:
    """A recording on one uniform time base at its EMG rate, cut to what is streamed."""

    name: str
    fs_hz: float
    t: np.ndarray  # (n,) s, the recording's own time axis
    emg: np.ndarray  # (n, m)
    emg_kind: str  # raw | enveloped
    muscles: tuple[str, ...]
    joints: tuple[str, ...]
    angles: np.ndarray | None  # (n, j) rad
    velocities: np.ndarray | None  # (n, j) rad/s, differences over the whole recording
    torque: np.ndarray | None  # (n, j) N m, the measured moments
    start_s: float  # scored from here (the pre-roll streams before it)
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.emg.shape[0])

    @property
    def duration_s(self) -> float:
        return self.n / self.fs_hz

    def describe(self) -> dict[str, Any]:
        """What the controller and the summary need to know (sent to the parent)."""
        return {
            "name": self.name,
            "fs_hz": self.fs_hz,
            "emg_kind": self.emg_kind,
            "muscles": list(self.muscles),
            "joints": list(self.joints),
            "t_first_s": float(self.t[0]),
            "t_last_s": float(self.t[-1]),
            "start_s": self.start_s,
            "duration_s": self.duration_s,
            "has_angles": self.angles is not None,
            "source": self.source,
        }


def _window(t: np.ndarray, spec: ReplaySpec, what: str) -> tuple[int, int, float]:
    """Indices [i0, i1) streamed (pre-roll included) and the scored start."""
    first, last = float(t[0]), float(t[-1])
    start = first if spec.start_s is None else float(spec.start_s)
    end = last if spec.end_s is None else float(spec.end_s)
    if not (math.isfinite(start) and math.isfinite(end)):
        raise ReplayError(f"{what}: --from and --to must be finite numbers")
    if not first <= start < end <= last + 1e-9:
        raise ReplayError(
            f"{what}: --from {start:g} s --to {end:g} s is not a window of the recording, "
            f"which runs from {first:g} s to {last:g} s"
        )
    lead = max(0.0, min(float(spec.preroll_s), start - first))
    i0 = int(np.searchsorted(t, start - lead - 1e-9))
    i1 = int(np.searchsorted(t, end + 1e-9, side="right"))
    if i1 - i0 < 2:
        raise ReplayError(f"{what}: the window {start:g}-{end:g} s holds fewer than two samples")
    return i0, i1, start


def _gradient(x: np.ndarray, fs: float) -> np.ndarray:
    return np.gradient(x, 1.0 / fs, axis=0) if x.shape[0] > 1 else np.zeros_like(x)


def load_recording(spec: ReplaySpec) -> Recording:
    if spec.session is not None:
        return _load_session(spec)
    if spec.data is None or spec.trial is None:
        raise ReplayError("a replay needs a dataset description and --trial, or --replay-session")
    from exoctl.data.dataset import load_dataset

    ds = load_dataset(spec.data)
    trial = ds.load_trial(spec.trial)
    what = f"{spec.data}: trial {spec.trial}"
    i0, i1, start = _window(trial.t, spec, what)
    fs = float(trial.fs_hz)
    vel = None if trial.angles is None else _gradient(trial.angles, fs)
    return Recording(
        name=trial.name,
        fs_hz=fs,
        t=trial.t[i0:i1],
        emg=np.asarray(trial.emg[i0:i1], dtype=np.float64),
        emg_kind=trial.emg_kind,
        muscles=tuple(trial.muscles),
        joints=tuple(trial.joints),
        angles=None if trial.angles is None else trial.angles[i0:i1],
        velocities=None if vel is None else vel[i0:i1],
        torque=None if trial.torque is None else trial.torque[i0:i1],
        start_s=start,
        source={"kind": "dataset", "data": str(spec.data), "trial": trial.name},
    )


def _load_session(spec: ReplaySpec) -> Recording:
    """A session of our own: its EMG as streamed (``emg_raw``, LSL stamps) and the joint
    angles the firmware reported (``telemetry``), on one clock; velocities by differences."""
    from exoctl.recordings import store

    assert spec.session is not None
    if spec.data_dir is None:
        raise ReplayError("--replay-session needs the data directory (service.data_dir)")
    path = store.find_session(spec.data_dir, spec.session)
    with store.open_session_db(path) as conn:
        info = store.session_info(conn)
        names = store.stream_names(conn)
        if "emg_raw" not in names:
            raise ReplayError(f"session {spec.session} ({path}) recorded no EMG (emg_raw)")
        emg_t, emg = store.read_stream(conn, "emg_raw")
        muscles = store.stream_columns(conn, "emg_raw", emg.shape[1])
        tel_t, tel = store.read_stream(conn, "telemetry") if "telemetry" in names else (None, None)
    cfg = info.get("config") or {}
    try:
        fs = float(cfg["emg"]["sampling_rate_hz"])
        kind = str(cfg.get("estimator", {}).get("input", "raw"))
        joints = tuple(str(j["name"]) for j in cfg["device"]["joints"])
    except (KeyError, TypeError, ValueError) as e:
        raise ReplayError(
            f"session {spec.session} ({path}): its configuration does not say the EMG rate "
            f"and the device's joints ({e})"
        ) from None
    if emg.shape[0] < 2:
        raise ReplayError(f"session {spec.session}: fewer than two EMG samples recorded")
    # one uniform time base at the EMG rate from the first sample; time 0 is that sample
    t_rel = np.asarray(emg_t, dtype=np.float64) - float(emg_t[0])
    n = int(math.floor(t_rel[-1] * fs + 1e-6)) + 1
    t = np.arange(n) / fs
    uniform = n == emg.shape[0] and np.allclose(t_rel, t, atol=0.01 / fs)
    x = np.asarray(emg, np.float64) if uniform else carry_columns(t, t_rel, emg)
    angles = vel = None
    if tel_t is not None and tel is not None and tel.shape[0] > 1:
        nj = len(joints)
        angles = carry_columns(t, np.asarray(tel_t) - float(emg_t[0]), tel[:, :nj])
        vel = _gradient(angles, fs)
    i0, i1, start = _window(t, spec, f"session {spec.session}")
    return Recording(
        name=f"session {spec.session}",
        fs_hz=fs,
        t=t[i0:i1],
        emg=x[i0:i1],
        emg_kind=kind,
        muscles=tuple(muscles),
        joints=joints,
        angles=None if angles is None else angles[i0:i1],
        velocities=None if vel is None else vel[i0:i1],
        torque=None,
        start_s=start,
        source={"kind": "session", "session": spec.session, "path": str(path)},
    )


class ReplayOutlet:
    """The recording's EMG on an LSL outlet, in real time, at its own rate and kind.

    The same interface as the synthetic patient's ``EmgOutlet`` for the simulator (``start``,
    ``stop``, ``sent``, ``error``, ``source_id``) and its injected faults: ``paused``
    (the stream stalls), ``saturate``, ``flat``, ``nan_until``.
    """

    def __init__(
        self,
        rec: Recording,
        name: str,
        stype: str = "EMG",
        chunk: int = 1,
        source_id: str | None = None,
    ) -> None:
        self.rec = rec
        self.fs = rec.fs_hz
        self.chunk = max(1, int(chunk))
        self.source_id = source_id or f"exoctl-replay-{uuid.uuid4().hex[:12]}"
        info = pylsl.StreamInfo(
            name, stype, len(rec.muscles), self.fs, pylsl.cf_float32, self.source_id
        )
        chans = info.desc().append_child("channels")
        unit = "normalised" if rec.emg_kind == "enveloped" else "microvolts"
        for m in rec.muscles:
            ch = chans.append_child("channel")
            ch.append_child_value("label", m)
            ch.append_child_value("unit", unit)
            ch.append_child_value("type", "EMG" if rec.emg_kind == "raw" else "EMG envelope")
        self._outlet = pylsl.StreamOutlet(info, chunk_size=self.chunk, max_buffered=2)
        self._emg = np.ascontiguousarray(rec.emg, dtype=np.float32)
        self.sent = 0
        self.t0 = float("nan")  # monotonic (= LSL local) time of the first sample
        self.paused = False
        self.saturate: dict[int, float] = {}
        self.flat: set[int] = set()
        self.nan_until: dict[int, float] = {}
        self.error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self.t0 = pylsl.local_clock() + 0.05  # the first sample's time, just ahead
        self._thread = threading.Thread(target=self._run_guarded, name="emg-replay", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        n, c, fs = self.rec.n, self.chunk, self.fs
        while not self._stop.is_set() and self.sent < n:
            k = min(c, n - self.sent)
            last = self.sent + k - 1
            stamp = self.t0 + last / fs  # a sample is pushed at its own time stamp
            delay = stamp - pylsl.local_clock()
            if delay > 0:
                time.sleep(delay)
            emg = self._emg[self.sent : self.sent + k]
            self.sent += k
            if self.paused:
                continue
            emg = apply_injected_faults(emg, self.saturate, self.flat, self.nan_until)
            self._outlet.push_chunk(emg, stamp)


class ReplayPlant:
    """The emulated firmware's plant for a replay: the recording's joint angles and velocities
    at the current time (one clock with the EMG outlet), carried as a tick carries EMG.

    Device joints the recording does not have stay at rest (0 rad inside their range, 0
    rad/s). A recording without angles reports rest for every joint.
    """

    def __init__(
        self,
        outlet: ReplayOutlet,
        device_joints: tuple[str, ...],
        rest_rad: np.ndarray,
    ) -> None:
        rec = outlet.rec
        self.outlet = outlet
        self.fs = rec.fs_hz
        self._t = np.arange(rec.n) / rec.fs_hz
        nd = len(device_joints)
        self._q = np.array(rest_rad, dtype=float).reshape(nd)
        self._qd = np.zeros(nd)
        self._cols: list[int] = []
        self._dev: list[int] = []
        if rec.angles is not None and rec.velocities is not None:
            for i, j in enumerate(device_joints):
                if j in rec.joints:
                    self._dev.append(i)
                    self._cols.append(rec.joints.index(j))
        self._ang = None if rec.angles is None else np.asarray(rec.angles)[:, self._cols]
        self._vel = None if rec.velocities is None else np.asarray(rec.velocities)[:, self._cols]
        if self._ang is not None and self._dev:
            self._q[self._dev] = self._ang[0]
        # when the state ``step`` returned was measured (monotonic): the emulated firmware
        # stamps its telemetry with it (a thread preempted between the firmware's tick and
        # this read would otherwise stamp angles with an instant they do not describe)
        self.measured_at = math.nan

    def step(self, t: float, dt: float, exo_torque_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._ang is not None and self._vel is not None and self._dev:
            t0 = self.outlet.t0
            if math.isfinite(t0):
                self.measured_at = time.monotonic()
                s = np.array([seen_time(self.measured_at - t0, self.fs)])
                self._q[self._dev] = carry_columns(s, self._t, self._ang)[0]
                self._qd[self._dev] = carry_columns(s, self._t, self._vel)[0]
        return self._q.copy(), self._qd.copy()


def controller_overrides(
    rec: dict[str, Any] | None, model: str | None, chunk: int
) -> dict[str, Any]:
    """The configuration a controller needs for this recording (``Recording.describe``): its
    muscles, EMG rate and kind; and (given) the model to try, with the calibration made with
    it when one is beside it (``M.calibration.yaml``)."""
    out: dict[str, Any] = {}
    if rec is not None:  # the estimator's input kind first: it decides which EMG rates fit
        out["estimator"] = {"input": rec["emg_kind"]}
        out["simulator"] = {"emg_chunk_samples": chunk}
        out["emg"] = {"muscles": list(rec["muscles"]), "sampling_rate_hz": float(rec["fs_hz"])}
    if model is not None:
        from exoctl.estimation.torque_model import sidecar

        out["model"] = {"path": str(Path(model).resolve())}
        cal = sidecar(Path(model), "calibration")
        if cal.is_file():
            out.setdefault("estimator", {})["calibration"] = str(cal.resolve())
    return out


def replay_chunk(fs_hz: float, control_rate_hz: float, configured: int) -> int:
    """Samples per LSL chunk: the configured chunk, but never more than one tick's worth
    (100 Hz envelopes go one sample at a time, as their own amplifier would send them)."""
    return max(1, min(int(configured), int(fs_hz // control_rate_hz)))
