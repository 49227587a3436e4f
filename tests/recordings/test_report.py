"""Session report: recordings written by the real Recorder (SQLite through sqlite3) from the
synthetic patient's gait (synthetic data: its joint torques and angles at 500 Hz), the figures a
clinician reads checked against what was put in, and the HTML opened in real headless chromium.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib", reason="the report extra (pip install 'exoctl[report]')")

from exoctl.data.patient import SyntheticPatient  # noqa: E402
from exoctl.recordings import store  # noqa: E402
from exoctl.recordings.recorder import Recorder  # noqa: E402
from exoctl.recordings.report import analysis as A  # noqa: E402
from exoctl.recordings.report import build_report, write_report  # noqa: E402

JOINTS = ["hip_l", "hip_r", "knee_l", "knee_r"]
MUSCLES = ["rectus_femoris_l", "biceps_femoris_l", "rectus_femoris_r", "biceps_femoris_r"]
LEVELS = ["NORMAL", "DEGRADED", "SAFE_STOP", "FAULT_LATCHED", "ESTOP"]
RATE = 500.0
T0 = 5000.0  # the recorder's (fake) controller clock at session start


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def record(data_dir: Path, *, seconds: float, gain: float, session: int) -> tuple[str, Path]:
    """One session: level ``gain``, raised by 0.1 at a third; a telemetry fault at 40 % cleared
    5 s later; an e-stop at 70 % cleared 4 s later. Commanded = level x estimate while
    assistance is on; applied = commanded at the wire's 0.01 N m."""
    clock = Clock()
    rec = Recorder(data_dir, flush_interval_s=0.05, clock=clock)
    patient = SyntheticPatient(MUSCLES, JOINTS, 2000.0, seed=3, session=session)
    truth = patient.generate(seconds)  # at the EMG rate; every 4th sample is a 500 Hz tick
    torque, ang, act = truth.torque[::4], truth.angles[::4], truth.activation[::4]
    t = T0 + np.arange(torque.shape[0]) / RATE
    rel = t - T0
    g1, g2 = gain, gain + 0.1
    fault = (0.4 * seconds, 0.4 * seconds + 5.0)
    estop = (0.7 * seconds, 0.7 * seconds + 4.0)
    state = np.zeros(t.size, np.int8)
    state[(rel >= fault[0]) & (rel < fault[0] + 0.2)] = 2  # safe stop ramp, then latched
    state[(rel >= fault[0] + 0.2) & (rel < fault[1])] = 3
    state[(rel >= estop[0]) & (rel < estop[1])] = 4
    level = np.where(rel < seconds / 3, g1, g2)
    est = torque + np.random.default_rng(session).normal(0, 0.3, torque.shape)
    cmd = np.where((state <= 1)[:, None], level[:, None] * est, 0.0)
    applied = np.round(cmd, 2)
    angles = np.round(ang, 4)
    try:
        sid = rec.start_session(
            "P01",
            protocol="treadmill (synthetic patient)",
            streams={
                "torque_estimated": {"columns": JOINTS, "unit": "N m"},
                "torque_command": {"columns": JOINTS, "unit": "N m"},
                "telemetry": {
                    "columns": [f"angle_{j}" for j in JOINTS] + [f"applied_{j}" for j in JOINTS],
                    "units": ["rad"] * 4 + ["N m"] * 4,
                },
                "safety_state": {"columns": ["safety_state"], "levels": LEVELS},
                "activation": {"columns": MUSCLES, "unit": "1"},
            },
        )
        rec.submit_event("session_start", {"patient": "P01", "gains": dict.fromkeys(JOINTS, g1)},
                         t=T0)  # fmt: skip
        rec.submit_event("assist_change", {"gains": dict.fromkeys(JOINTS, g2)}, t=T0 + seconds / 3)
        rec.submit_event("fault", {"kind": "telemetry_stale", "t_detected": T0 + fault[0],
                                   "detail": "newest telemetry 0.101 s old > telemetry_timeout_s 0.1 s"},
                         t=T0 + fault[0])  # fmt: skip
        rec.submit_event("fault_clear", {"state": "NORMAL"}, t=T0 + fault[1])
        rec.submit_event("estop", {"source": "rpc"}, t=T0 + estop[0])
        rec.submit_event("fault", {"kind": "estop", "detail": "emergency stop"}, t=T0 + estop[0])
        rec.submit_event("fault_clear", {"state": "NORMAL"}, t=T0 + estop[1])
        for a in range(0, t.size, 250):  # as the daemon's pump does: 0.5 s chunks
            sl = slice(a, a + 250)
            tt = t[sl]
            rec.submit_chunk("torque_estimated", tt[0], est[sl], t=tt)
            rec.submit_chunk("torque_command", tt[0], cmd[sl], t=tt)
            rec.submit_chunk("telemetry", tt[0], np.hstack([angles[sl], applied[sl]]), t=tt)
            rec.submit_chunk("safety_state", tt[0], state[sl], t=tt)
            rec.submit_chunk("activation", tt[0], act[sl], t=tt)
            if a % 5000 == 0:
                rec.flush()  # keep the bounded queue from overflowing
        clock.now = T0 + seconds
        rec.submit_event("session_stop", {"reason": "completed"}, t=T0 + seconds)
        db = rec.db_path
        rec.stop_session("completed")
    finally:
        rec.close()
    assert db is not None
    return sid, db


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, Path]]:
    data = tmp_path_factory.mktemp("report") / "data"
    out = []
    for i, (gain, seconds) in enumerate(((0.2, 20.0), (0.3, 20.0), (0.4, 60.0))):
        out.append(record(data, seconds=seconds, gain=gain, session=i))
        time.sleep(1.1)  # session ids carry the start second
    return out


def test_figures_match_what_was_recorded(sessions) -> None:
    sid, db = sessions[-1]
    s = A.load(db)
    m = A.summarise(s)
    assert s.joints == JOINTS and s.t_end == pytest.approx(60.0, abs=0.01)
    # the synthetic patient's stride is 1.1 s (3 % variability): 109 steps a minute
    assert m.cadence_spm == pytest.approx(120 / 1.1, rel=0.03)
    assert all(n >= 45 for n in m.strides.values()), m.strides
    assert m.symmetry["stride time"] < 3.0
    # assisted: everything but the fault (5 s) and the e-stop (4 s)
    assert m.assisted_s == pytest.approx(60.0 - 9.0, abs=0.05)
    assert m.off_s == pytest.approx(9.0, abs=0.05)
    assert (m.faults, m.estops) == (1, 1)
    inc = A.incidents(s)
    assert [i.is_estop for i in inc] == [False, True]
    assert inc[0].t_s == pytest.approx(24.0) and inc[0].cleared_s == pytest.approx(29.0)
    assert inc[0].off_s == pytest.approx(5.0, abs=0.01) and len(inc[1].events) == 2
    hip = m.joints["hip_l"]
    assert hip.peak_applied == pytest.approx(np.abs(s.applied[A.assisted_mask(s), 0]).max())
    # the level set over time: 0.4, then 0.5 from a third of the session on
    times, rows = A.assist_levels(s)
    np.testing.assert_allclose(times, [0.0, 20.0])
    np.testing.assert_allclose(rows[:, 0], [0.4, 0.5])
    # over the gait cycle the command is the level times the estimate
    cyc = A.cycles_within(m.cycles["l"], s.t, A.assisted_mask(s))
    late = cyc[cyc[:, 0] > 21.0]
    est = A.cycle_matrix(s.t, s.estimated[:, 0], late).mean(axis=0)
    cmd = A.cycle_matrix(s.t, s.commanded[:, 0], late).mean(axis=0)
    np.testing.assert_allclose(cmd, 0.5 * est, atol=1e-9)


def test_report_is_for_people(sessions, tmp_path: Path) -> None:
    sid, db = sessions[-1]
    text = build_report(db, sid)
    # plain words, clock times, no raw JSON and no controller-clock (monotonic) times
    assert "Exoskeleton stopped reporting" in text and "check its cable" in text
    assert "Emergency stop" in text and "Time assisted" in text and "steps/min" in text
    events = text[text.index("Event log") :]
    assert '{"' not in events and "&quot;kind&quot;" not in events
    assert not re.search(r"\b50[0-9]{2}\.[0-9]", text), "a controller-clock time leaked"
    info = A.load(db).info
    start = time.strftime("%H:%M:%S", time.localtime(info["start_time"]))
    assert start in text
    # the patient view has all three sessions, this one last
    assert text.count("<svg") >= 4 and "Progress across sessions" in text
    assert "first recorded session" not in text
    first = build_report(sessions[0][1])
    assert "first recorded session" in first
    # charts are decimated: no path with thousands of points
    longest = max(len(p) for p in re.findall(r' d="([^"]*)"', text))
    assert longest < 60_000, longest
    with pytest.raises(store.RecorderError, match="html"):
        write_report(db, sid, tmp_path / "r.png")


CHROMIUM_FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--hide-scrollbars",
]  # fmt: skip


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i : i + 2], 16) for i in (1, 3, 5)]) / 255.0


@pytest.mark.skipif(
    shutil.which("chromium") is None,
    reason="chromium is not installed (Debian: apt-get install chromium); the report's "
    "rendering in a browser is not checked",
)
def test_report_renders_in_headless_chromium(sessions, tmp_path: Path) -> None:
    from matplotlib.image import imread

    from exoctl.recordings.report.figures import BLUE, GREEN, STATE_COLOURS

    sid, db = sessions[-1]
    html = write_report(db, sid, tmp_path / "report.html")
    png = tmp_path / "report.png"
    p = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
         "--window-size=1200,2600", f"--screenshot={png}", html.as_uri()],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0 and png.exists(), p.stderr[-2000:]
    img = imread(png)[:, :, :3]
    assert img.shape[:2] == (2600, 1200)
    ink = np.any(img < 0.9, axis=2).mean()
    assert 0.03 < ink < 0.6, ink  # neither blank nor a solid block

    def pixels(colour: str, tol: float = 0.06) -> int:
        return int(np.all(np.abs(img - _rgb(colour)) < tol, axis=2).sum())

    # The browser drew the inline SVG charts: the state band (assisting, e-stop), the
    # patient's torque over the gait cycle; each is only in the charts, never in the text.
    assert pixels(GREEN) > 2000, "no 'assisting' band or applied torque drawn"
    assert pixels(STATE_COLOURS["ESTOP"]) > 300, "no e-stop in the state band"
    assert pixels(BLUE) > 1000, "no estimated torque curves"
    dom = subprocess.run(
        ["chromium", *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
         html.as_uri()],
        capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    assert "Faults and emergency stops" in dom and dom.count("<svg") >= 4
    json.dumps({"screenshot": str(png)})  # where to look, when run by hand with -s
