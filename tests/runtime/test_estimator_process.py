"""The estimator in its own process: the shared-memory handoff, supervision, idle, warm-up.

Real parts: a spawned writer process on a real shared-memory segment for the seqlock; for the
rest the Controller in its process mode (estimator.process: true) with the estimator child
running the shipped linear ONNX model on replayed synthetic gait EMG (the HIL's synthetic
patient, synthetic data), the in-process FakeLink as the firmware, and real signals (SIGKILL,
SIGSTOP) sent to the child.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

from exoctl.acquisition.seqlock import SeqlockBlock
from exoctl.config.schema import Config
from exoctl.control.safety import SafetyState
from exoctl.recordings import recorder as R
from exoctl.recordings.events import describe
from exoctl.runtime.controller import Controller
from exoctl.runtime.realtime import ThreadRole
from exoctl.service.pump import Pump
from firmware_bridge.fake_link import FakeLink

from .test_controller import LIMITS, MODELS, cfg  # noqa: F401 - the fixture, reused

LAYOUT = {"a": 7, "b": 64, "c": 1}


def wait_for(cond: Callable[[], bool], timeout_s: float = 10.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {what}"
        time.sleep(0.01)


WRITER = """
import sys, time
from exoctl.acquisition.seqlock import SeqlockBlock
block = SeqlockBlock.attach(sys.argv[1], {"a": 7, "b": 64, "c": 1})
f, i, end = block.fields, 0.0, time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:  # as fast as it can: i into every field
    i += 1.0
    block.begin()
    f["a"][:] = i
    f["b"][:] = i
    f["c"][:] = i
    block.end()
"""


def test_a_reader_never_sees_a_torn_write_from_a_hammering_writer_process() -> None:
    block = SeqlockBlock.create(LAYOUT)
    writer = subprocess.Popen([sys.executable, "-c", WRITER, block.name, "2.5"])
    try:
        wait_for(lambda: block.sequence > 0, 20.0, "the writer writing")
        seen = set()
        end = time.monotonic() + 1.0
        tries = 1
        while time.monotonic() < end and writer.poll() is None:
            new = block.read(max_tries=tries)  # one try: many reads give up
            tries = 65 - tries  # alternate 1 and 64 tries
            # Consistent whatever read() answered: a read that gives up keeps its last copy.
            values = np.concatenate(list(block.local.values()))
            assert (values == values[0]).all(), f"torn copy ({new=}): {np.unique(values)}"
            if new:
                seen.add(float(values[0]))
        # Distinct writes were read, and the reader did meet writes in progress (a writer
        # that never pauses leaves few gaps: most reads give up and keep their last copy).
        assert len(seen) >= 5 and block.torn_retries > 0, (len(seen), block.torn_retries)
    finally:
        writer.wait(10.0)
        block.close()


def test_a_writer_stopped_mid_write_never_blocks_the_reader() -> None:
    block = SeqlockBlock.create(LAYOUT)
    other = SeqlockBlock.attach(block.name, LAYOUT)
    try:
        block.write({"a": 1.0, "b": 1.0, "c": 1.0})
        assert other.read() and other.local["a"][0] == 1.0
        block.begin()  # a writer killed here leaves the counter odd
        block.fields["a"][:] = 2.0
        t0 = time.monotonic()
        assert not other.read()  # gives up, keeps its last consistent copy
        assert time.monotonic() - t0 < 0.01 and other.local["a"][0] == 1.0
        block.recover()  # the next writer: the half-written fields are published as they are
        block.write({"a": 3.0, "b": 3.0, "c": 3.0})
        assert other.read() and (np.concatenate(list(other.local.values())) == 3.0).all()
    finally:
        other.close()
        block.close()


# ------------------------------------------------------------------------ with a Controller
@pytest.fixture
def prig(cfg: Config) -> Iterator[tuple[Controller, FakeLink]]:  # noqa: F811
    pcfg = cfg.with_overrides(estimator={"process": True, "hang_timeout_s": 0.5})
    link = FakeLink(pcfg.joint_names, torque_limits_nm=LIMITS)
    c = Controller(pcfg, log_seconds=60.0, link=link)
    c.start()
    try:
        yield c, link
    finally:
        c.shutdown(ramp_out=False)


def _assisting(link: FakeLink) -> bool:
    return bool(link.frames) and bool(np.abs(link.frames[-1].wire).max() > 1.0)


def _steps(c: Controller) -> int:
    return int(c.status()["estimator"]["steps"])


def test_idle_runs_no_model_and_a_session_starts_warmed_up_also_with_another_model(
    prig,
    cfg: Config,  # noqa: F811
) -> None:
    c, link = prig
    assert set(c.threads()) == {ThreadRole.CONTROL_LOOP}  # acquisition is in the child
    st = c.status()["estimator"]
    assert st["mode"] == "process" and st["alive"] and not st["running_model"]
    before = _steps(c)
    time.sleep(0.5)
    assert _steps(c) == before == 0  # idle: not one estimator step
    assert c.status()["acquisition"]["samples"] > 0  # ... while the ring buffer fills
    assert c.safety_state == SafetyState.NORMAL  # and the watchdogs see live inputs

    def first_session_rows() -> tuple[np.ndarray, np.ndarray]:
        cursor = c.ticks_written
        c.start_session("T01", protocol="unit")
        wait_for(lambda: _assisting(link), what="assistance on the wire")
        time.sleep(1.0)
        c.stop_session()
        _, rows = c.read_ticks(cursor)
        fresh = np.isfinite(rows["stamp"])
        return rows["activation"][fresh], rows["estimate"][fresh]

    act, _ = first_session_rows()
    ran = _steps(c)
    assert ran > 400  # the warm-up (1 s of EMG at 500 ticks/s) and the session's ticks
    # Warmed up: the very first estimate's activation is already at the level of the rest
    # (a cold start begins at zero and takes a few hundred milliseconds to rise).
    level = act[50:].mean()
    assert act[0].mean() > 0.5 * level, (act[0].mean(), level)
    time.sleep(0.3)
    assert _steps(c) == ran  # idle again: the model stopped with the session

    # Another model for the next session (as a patient's own): warmed up the same way.
    c.swap_model(cfg.with_overrides(model={"path": str(MODELS / "network.onnx")}))
    act2, est2 = first_session_rows()
    assert act2[0].mean() > 0.5 * act2[50:].mean()
    assert np.isfinite(est2).all()


@pytest.mark.parametrize("how", ["kill", "stop"])
def test_a_crashed_or_hung_estimator_is_a_fault_then_a_restart_and_a_persons_clear(
    prig, how: str, tmp_path: Path
) -> None:
    c, link = prig
    rec = R.Recorder(tmp_path)  # the daemon's recorder and pump: the session's record
    rec.start_session("T01", protocol="unit")
    pump = Pump(c, rec, on_period=lambda: None)
    c.start_session("T01", protocol="unit")
    wait_for(lambda: _assisting(link), what="assistance on the wire")
    pid = c.status()["estimator"]["pid"]
    os.kill(pid, signal.SIGKILL if how == "kill" else signal.SIGSTOP)
    wait_for(lambda: c.safety_state == SafetyState.FAULT_LATCHED, 2.0, "the fault latched")
    faults, _ = c.active_conditions  # the inputs the dead process fed stopped ageing well
    assert {"emg_stale", "estimate_stale"} & set(faults), faults
    wait_for(lambda: not _assisting(link), 2.0, "assistance ramped out")
    st = c.status()["estimator"]
    wait_for(lambda: c.status()["estimator"]["restarts"] == 1, 60.0, "the supervisor restarted it")
    wait_for(lambda: c.status()["estimator"]["alive"], 60.0, "the new process runs")
    st = c.status()["estimator"]
    assert st["pid"] != pid
    expected = "exited with code -9 (SIGKILL)" if how == "kill" else "hung"
    assert expected in st["last_exit"] and "restarted" in st["last_exit"]
    # Why it restarted is in the session's record, beside the fault it caused.
    with pump.lock:
        pump.drain_faults()
    db = rec.db_path
    rec.close()
    with R.open_session_db(db) as conn:
        events = R.read_events(conn)
    restarts = [e for e in events if e["kind"] == "estimator_restart"]
    assert len(restarts) == 1, events
    r = restarts[0]["detail"]
    assert expected in r["reason"] and r["restarted"] and r["pid"] == st["pid"], r
    assert "restarted" in describe(restarts[0]).text
    assert {"emg_stale", "estimate_stale"} & {
        e["detail"]["kind"] for e in events if e["kind"] == "fault"
    }
    assert c.estimator_restarts() == []  # taken once
    # The new process runs the session's estimator again, but assistance stays off ...
    wait_for(lambda: c.status()["estimator"]["running_model"], 60.0, "the model runs again")
    time.sleep(0.3)
    assert c.safety_state == SafetyState.FAULT_LATCHED and not _assisting(link)
    # ... until a person clears the fault.
    wait_for(lambda: c.clear_fault(), 5.0, "fault clear accepted")
    wait_for(lambda: _assisting(link), 5.0, "assistance back on the wire")
    assert c.session is not None and c.status()["estimator"]["restarts"] == 1


def _policies(pid: int) -> set[int]:
    return {os.sched_getscheduler(int(t)) for t in os.listdir(f"/proc/{pid}/task")}


def test_real_time_priority_reaches_the_estimator_process_also_after_a_restart(prig) -> None:
    """A loop at SCHED_FIFO whose estimator starves at SCHED_OTHER only trips its own
    estimate_stale watchdog: every thread of the child goes just below the loop, and the
    supervisor's restart keeps it so."""
    c, _ = prig
    rep = c.apply_realtime(50)
    pid = c.status()["estimator"]["pid"]
    if "refused" in " ".join(rep.notes):
        pytest.skip(f"SCHED_FIFO is not permitted here: {rep.notes}")
    assert _policies(pid) == {os.SCHED_FIFO}, rep.notes
    assert any(f"estimator process {pid}: SCHED_FIFO 49" in n for n in rep.notes), rep.notes
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: c.status()["estimator"]["restarts"] == 1, 60.0, "the supervisor restarted it")
    wait_for(lambda: c.status()["estimator"]["alive"], 60.0, "the new process runs")
    new = c.status()["estimator"]["pid"]
    assert new != pid and _policies(new) == {os.SCHED_FIFO}


def test_the_estimator_process_never_loads_scipy(prig) -> None:
    """scipy.signal (filter design) is ~65 MiB a process keeps for good: the long-lived
    estimator process has its filters designed by a short-lived interpreter instead."""
    c, _ = prig
    pid = c.status()["estimator"]["pid"]
    maps = Path(f"/proc/{pid}/maps").read_text()
    assert "onnxruntime" in maps  # the model runs here: the map is this process's
    assert "/scipy" not in maps, [ln for ln in maps.splitlines() if "/scipy" in ln][:3]
