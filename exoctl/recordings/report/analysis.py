"""The figures of one session a clinician asks for, computed from its recording (numpy only).

* Assistance: the level the clinician set (session start and every change, from the events)
  and whether the safety layer let it through (its state at every tick). Time assisted is the
  time with a level above zero and the state NORMAL or DEGRADED (assistance held down, not
  off); SAFE_STOP, FAULT_LATCHED and ESTOP are time without assistance.
* Gait cycles, per leg, from the hip angle the exoskeleton reports: a cycle starts at peak hip
  flexion, which precedes initial contact by a few percent of the cycle (an angle-only
  marker: the device has no foot switch). Strides outside 0.4-3 s, or more than 30 % off the
  median, are dropped (turning, stopping, a fault's ramp).
* Cadence: steps per minute, 60 / median stride time per leg, two steps per stride.
* Symmetry index, left against right: 100 |L - R| / ((L + R) / 2), on the median stride time
  and on the median per-stride peak of the patient's own (estimated) torque per joint.
* Torque per joint: peak and mean of |applied| (what the device gave) over assisted time, and
  the per-stride mean +- sd over the gait cycle of estimated, commanded and applied torque.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import signal

from exoctl.recordings import store

OFF_STATES = ("SAFE_STOP", "FAULT_LATCHED", "ESTOP")
CYCLE_POINTS = 101


@dataclass
class Session:
    """The streams a report needs, on session time (seconds since the session started)."""

    info: dict[str, Any]
    events: list[dict[str, Any]]
    joints: list[str]
    t_end: float
    t: np.ndarray  # control ticks
    estimated: np.ndarray  # (n, joints) N m, the model's estimate of the patient's torque
    commanded: np.ndarray  # (n, joints) N m, after the safety layer
    applied: np.ndarray  # (n, joints) N m, as the firmware reported it
    angles: np.ndarray  # (n, joints) rad
    state: np.ndarray  # (n,) names of the safety state, object array
    extra: dict[str, store.StreamTable] = field(default_factory=dict)


def load(db: str | Path, session_id: str | None = None, *, extra: bool = True) -> Session:
    """Read a session; ``extra`` also keeps the other streams (activations, loop timing)."""
    with store.open_session_db(db) as conn:
        info = store.session_info(conn, session_id)
        events = store.read_events(conn)
        names = store.stream_names(conn)
        tabs = {s: store.read_table(conn, s) for s in names if extra or s in _NEEDED}
    t0 = info["start_mono"]
    for e in events:
        e["t_s"] = e["t"] - t0
    base = tabs.get("torque_command") or tabs.get("torque_estimated")
    t = (base.t - t0) if base is not None else np.zeros(0)
    joints = [c.name for c in base.columns] if base is not None else []

    def on_ticks(tab: store.StreamTable | None, prefix: str = "") -> np.ndarray:
        if tab is None or not t.size:
            return np.full((t.size, len(joints)), np.nan)
        m, cols = tab.matrix(prefix)
        out = np.full((t.size, len(joints)), np.nan)
        for j, name in enumerate(joints):
            if name in cols and tab.t.size:
                out[:, j] = np.interp(t, tab.t - t0, m[:, cols.index(name)])
        return out

    tel = tabs.get("telemetry")
    state = np.full(t.size, "NORMAL", dtype=object)
    src = tabs.get("safety_state") or tel
    if src is not None and t.size:
        col = next((c for c in src.columns if c.levels is not None), None)
        if col is not None and src.t.size:
            idx = np.clip(np.searchsorted(src.t - t0, t, side="right") - 1, 0, src.t.size - 1)
            state = col.names()[idx]
    ends = [float(t[-1])] if t.size else []
    ends += [e["t_s"] for e in events]
    if info.get("duration_s"):
        ends.append(float(info["duration_s"]))
    return Session(
        info=info,
        events=events,
        joints=joints,
        t_end=max(ends + [0.0]),
        t=t,
        estimated=on_ticks(tabs.get("torque_estimated")),
        commanded=on_ticks(tabs.get("torque_command")),
        applied=on_ticks(tel, "applied_"),
        angles=on_ticks(tel, "angle_"),
        state=state,
        extra={k: v for k, v in tabs.items() if k not in _NEEDED},
    )


_NEEDED = {"torque_command", "torque_estimated", "telemetry", "safety_state"}


# ---------------------------------------------------------------------------- assistance
def assist_levels(s: Session) -> tuple[np.ndarray, np.ndarray]:
    """The level set by the clinician as a step function: change times (session s) and the
    gains (k, joints) from each of them on."""
    times, rows = [], []
    current = np.zeros(len(s.joints))
    for e in s.events:
        d = e.get("detail") or {}
        if e["kind"] not in ("session_start", "assist_change") or not isinstance(d, dict):
            continue
        g = d.get("gains")
        if isinstance(g, int | float):
            current = np.full(len(s.joints), float(g))
        elif isinstance(g, dict):
            current = current.copy()
            for j, name in enumerate(s.joints):
                if name in g:
                    current[j] = float(g[name])
        times.append(max(0.0, e["t_s"]))
        rows.append(current)
    if not times:
        return np.zeros(1), np.zeros((1, len(s.joints)))
    return np.asarray(times), np.asarray(rows)


def gains_at(s: Session, t: np.ndarray) -> np.ndarray:
    times, rows = assist_levels(s)
    idx = np.clip(np.searchsorted(times, t, side="right") - 1, 0, len(times) - 1)
    g = rows[idx]
    g[t < times[0]] = 0.0
    return g


def assisted_mask(s: Session) -> np.ndarray:
    """Per tick: assistance set above zero and let through by the safety layer."""
    if not s.t.size:
        return np.zeros(0, bool)
    on = ~np.isin(s.state, OFF_STATES)
    return on & (gains_at(s, s.t).max(axis=1) > 0)


def tick_durations(t: np.ndarray) -> np.ndarray:
    """Time each tick stands for (gaps longer than 0.1 s count as 0.1 s: a pause is no data)."""
    if t.size < 2:
        return np.zeros(t.size)
    d = np.diff(t, append=t[-1])
    d[-1] = np.median(d[:-1])
    return np.minimum(d, 0.1)


def state_segments(s: Session) -> list[tuple[float, float, str]]:
    """(start, end, state name) runs of the safety state, on session time."""
    if not s.t.size:
        return []
    change = np.flatnonzero(s.state[1:] != s.state[:-1]) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [s.t.size - 1]])
    return [
        (float(s.t[a]), float(s.t[b]), str(s.state[a])) for a, b in zip(starts, ends, strict=True)
    ]


# ------------------------------------------------------------------------------ gait
def gait_cycles(t: np.ndarray, hip_angle: np.ndarray) -> np.ndarray:
    """(k, 2) start and end times of plausible strides, cycles starting at peak hip flexion."""
    ok = np.isfinite(hip_angle)
    if t.size < 50 or ok.sum() < 50:
        return np.zeros((0, 2))
    dt = float(np.median(np.diff(t)))
    x = np.interp(t, t[ok], hip_angle[ok])
    sos = signal.butter(2, 4.0, fs=1.0 / dt, output="sos")  # gait is below 4 Hz
    x = signal.sosfiltfilt(sos, x)
    spread = float(np.percentile(x, 95) - np.percentile(x, 5))
    if spread <= 1e-3:
        return np.zeros((0, 2))
    peaks, _ = signal.find_peaks(x, distance=max(1, int(0.4 / dt)), prominence=0.4 * spread)
    if peaks.size < 2:
        return np.zeros((0, 2))
    c = np.stack([t[peaks[:-1]], t[peaks[1:]]], axis=1)
    d = c[:, 1] - c[:, 0]
    keep = (d >= 0.4) & (d <= 3.0)
    if keep.any():
        med = np.median(d[keep])
        keep &= np.abs(d - med) <= 0.3 * med
    return c[keep]


def cycle_matrix(t: np.ndarray, y: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """(k, CYCLE_POINTS) of ``y`` resampled from 0 to 100 % of each cycle."""
    out = np.empty((cycles.shape[0], CYCLE_POINTS))
    pct = np.linspace(0.0, 1.0, CYCLE_POINTS)
    for i, (a, b) in enumerate(cycles):
        out[i] = np.interp(a + pct * (b - a), t, y)
    return out


def cycles_within(cycles: np.ndarray, t: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The cycles during which ``mask`` holds at every tick."""
    if not cycles.size:
        return cycles
    bad_t = t[~mask]  # sorted, as t is
    n_bad = np.searchsorted(bad_t, cycles[:, 1], "right") - np.searchsorted(bad_t, cycles[:, 0])
    return cycles[n_bad == 0]


def per_cycle_peak(t: np.ndarray, y: np.ndarray, cycles: np.ndarray) -> np.ndarray:
    """max |y| within each cycle (NaN for a cycle without samples)."""
    lo, hi = np.searchsorted(t, cycles[:, 0]), np.searchsorted(t, cycles[:, 1])
    out = np.full(cycles.shape[0], np.nan)
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        seg = np.abs(y[a:b])
        seg = seg[np.isfinite(seg)]
        if seg.size:
            out[i] = seg.max()
    return out


def symmetry_index(left: float, right: float) -> float:
    mean = (left + right) / 2
    return float("nan") if not np.isfinite(mean) or mean == 0 else 100 * abs(left - right) / mean


def legs(joints: list[str]) -> dict[str, dict[str, int]]:
    """{"l": {"hip": 0, "knee": 2}, "r": {...}} from names like ``hip_l``."""
    out: dict[str, dict[str, int]] = {}
    for j, name in enumerate(joints):
        base, _, side = name.rpartition("_")
        if side in ("l", "r") and base:
            out.setdefault(side, {})[base] = j
    return out


# --------------------------------------------------------------------------- summary
@dataclass
class JointFigures:
    peak_applied: float
    mean_applied: float
    peak_estimated: float  # median over strides of the per-stride peak |estimated|


@dataclass
class Summary:
    duration_s: float
    assisted_s: float
    off_s: float  # assistance held off by a fault or an e-stop
    faults: int
    estops: int
    strides: dict[str, int]
    stride_s: dict[str, float]
    cadence_spm: float
    symmetry: dict[str, float]  # name -> symmetry index, %
    joints: dict[str, JointFigures]
    cycles: dict[str, np.ndarray] = field(default_factory=dict)  # side -> (k, 2)


def summarise(s: Session) -> Summary:
    dur = tick_durations(s.t)
    assisted = assisted_mask(s)
    off = np.isin(s.state, OFF_STATES) if s.t.size else np.zeros(0, bool)
    lg = legs(s.joints)
    cycles, stride = {}, {}
    for side, idx in lg.items():
        if "hip" in idx:
            cycles[side] = gait_cycles(s.t, s.angles[:, idx["hip"]])
            if cycles[side].size:
                stride[side] = float(np.median(np.diff(cycles[side], axis=1)))
    cadence = float(np.mean([120.0 / v for v in stride.values()])) if stride else float("nan")
    joints = {}
    for j, name in enumerate(s.joints):
        a = np.abs(s.applied[assisted, j])
        a = a[np.isfinite(a)]
        side = name.rpartition("_")[2]
        peaks = per_cycle_peak(s.t, s.estimated[:, j], cycles.get(side, np.zeros((0, 2))))
        peaks = peaks[np.isfinite(peaks)]
        joints[name] = JointFigures(
            peak_applied=float(a.max()) if a.size else float("nan"),
            mean_applied=float(a.mean()) if a.size else float("nan"),
            peak_estimated=float(np.median(peaks)) if peaks.size else float("nan"),
        )
    sym: dict[str, float] = {}
    if "l" in stride and "r" in stride:
        sym["stride time"] = symmetry_index(stride["l"], stride["r"])
    if "l" in lg and "r" in lg:
        for base in sorted(set(lg["l"]) & set(lg["r"])):
            jl, jr = s.joints[lg["l"][base]], s.joints[lg["r"][base]]
            sym[f"{base} torque (patient)"] = symmetry_index(
                joints[jl].peak_estimated, joints[jr].peak_estimated
            )
    inc = incidents(s)
    estops = sum(i.is_estop for i in inc)
    return Summary(
        duration_s=s.t_end,
        assisted_s=float(dur[assisted].sum()),
        off_s=float(dur[off].sum()),
        faults=len(inc) - estops,
        estops=estops,
        strides={k: int(v.shape[0]) for k, v in cycles.items()},
        stride_s=stride,
        cadence_spm=cadence,
        symmetry=sym,
        joints=joints,
        cycles=cycles,
    )


# ------------------------------------------------------------------------- incidents
@dataclass
class Incident:
    """An interruption of assistance: a fault or an e-stop, with every further fault detected
    until a person cleared it (a latched fault keeps assistance off, so what follows is part of
    the same interruption, not a new one)."""

    t_s: float
    events: list[dict[str, Any]]
    cleared_s: float | None  # when a person cleared it (session time), None: never
    off_s: float  # time the safety state kept assistance off, from t_s to the clear

    @property
    def is_estop(self) -> bool:
        return any(_is_estop(e) for e in self.events)


def _is_estop(e: dict[str, Any]) -> bool:
    d = e.get("detail")
    return e["kind"] == "estop" or (isinstance(d, dict) and d.get("kind") == "estop")


def incidents(s: Session) -> list[Incident]:
    out: list[Incident] = []
    open_: Incident | None = None
    for e in s.events:
        if e["kind"] == "fault_clear" and open_ is not None:
            open_.cleared_s = e["t_s"]
            open_ = None
        elif e["kind"] in ("fault", "estop"):
            # An e-stop is a person's action: its own row, unless it is the safety layer's
            # record of the e-stop just requested (same instant).
            joins = open_ is not None and (
                not _is_estop(e) or (open_.is_estop and e["t_s"] - open_.t_s <= 0.5)
            )
            if joins and open_ is not None:
                open_.events.append(e)
            else:
                open_ = Incident(e["t_s"], [e], None, 0.0)
                out.append(open_)
    segs = state_segments(s)
    for i, inc in enumerate(out):
        nxt = out[i + 1].t_s if i + 1 < len(out) else np.inf
        end = min(inc.cleared_s if inc.cleared_s is not None else np.inf, nxt)
        inc.off_s = sum(
            min(b, end) - max(a, inc.t_s)
            for a, b, st in segs
            if st in OFF_STATES and b > inc.t_s and a < end
        )
    return out
