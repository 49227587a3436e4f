"""Real-time set-up: granted or reported, never raised. Runs in a thread so the test process
itself keeps its scheduling."""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest

from exoctl.runtime.realtime import (
    SESSION_SWITCH_INTERVAL_S,
    RealtimeReport,
    apply_realtime,
    release_realtime,
    session_gc,
    session_switch_interval,
)


def in_thread(fn):
    box = {}

    def run():
        try:
            box["value"] = fn()
        finally:
            release_realtime()

    t = threading.Thread(target=run)
    t.start()
    t.join(10)
    return box["value"]


def test_report_matches_what_the_kernel_says():
    def go():
        rep = apply_realtime(priority=10, cpus=None, lock_memory=False)
        return rep, os.sched_getscheduler(0), os.sched_getparam(0).sched_priority

    rep, policy, prio = in_thread(go)
    assert isinstance(rep, RealtimeReport)
    if rep.sched_error is None:
        assert policy == os.SCHED_FIFO and rep.sched_policy == "SCHED_FIFO"
        assert prio == rep.priority == 10
    else:  # refused (no privilege): reported, and the thread is unchanged
        assert rep.sched_policy == "SCHED_OTHER" and policy == os.SCHED_OTHER
    assert "real-time set-up" in rep.summary()


def test_refusals_are_reported_not_raised():
    def go():
        return apply_realtime(priority=1000, cpus=[10_000], lock_memory=False)

    rep = in_thread(go)
    assert "outside SCHED_FIFO range" in rep.sched_error
    assert rep.affinity_error is not None
    assert rep.cpus == sorted(os.sched_getaffinity(0))  # unchanged, and said so
    assert not rep.fully_granted
    assert rep.as_dict()["requested_cpus"] == [10_000]


def test_affinity_is_applied_to_the_calling_thread_only():
    cpu = min(os.sched_getaffinity(0))

    def go():
        return apply_realtime(priority=None, cpus=[cpu], lock_memory=False), os.sched_getaffinity(0)

    rep, seen = in_thread(go)
    assert rep.affinity_error is None and seen == {cpu} and rep.cpus == [cpu]
    assert os.sched_getaffinity(0) != {cpu} or len(os.sched_getaffinity(0)) == 1


def _locked_kb() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmLck"))


def test_memory_lock_is_granted_or_explained():
    rep, locked_kb = in_thread(
        lambda: (apply_realtime(priority=None, lock_memory=True), _locked_kb())
    )
    assert (rep.memory_locked != "no") != (rep.memlock_error is not None)
    if rep.memory_locked != "no":
        assert locked_kb > 0
    assert _locked_kb() == 0  # released again


def test_session_gc_disables_collection_inside_and_collects_after():
    assert gc.isenabled()
    with session_gc():
        assert not gc.isenabled()
        assert gc.get_freeze_count() > 0
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_session_gc_restores_a_disabled_collector_as_disabled():
    gc.disable()
    try:
        with session_gc():
            pass
        assert not gc.isenabled()
    finally:
        gc.enable()


@pytest.mark.parametrize("bad", [[], [-1]])
def test_bad_cpu_sets_are_reported(bad):
    rep = in_thread(lambda: apply_realtime(priority=None, cpus=bad, lock_memory=False))
    assert rep.affinity_error


def test_raise_threads_sets_threads_by_reference_and_reports():
    from exoctl.runtime.realtime import ThreadRole, raise_threads, set_thread_priority

    ready, stop = threading.Event(), threading.Event()
    seen = {}

    def worker():
        ready.set()
        stop.wait(5)
        seen["policy"] = os.sched_getscheduler(0)

    # The name says nothing: the thread is handed over by reference, with its role.
    t = threading.Thread(target=worker, name="renamed-any-way")
    never_started = threading.Thread(target=worker, name="not-started")
    t.start()
    ready.wait(5)
    try:
        out = raise_threads({ThreadRole.LINK_READER: t, ThreadRole.ACQUISITION: never_started}, 6)
        assert out["acquisition (not-started)"] == "not running"
        granted = out["link_reader (renamed-any-way)"]  # one below the loop's 6
        assert granted == "SCHED_FIFO 5" or granted.startswith("refused")
    finally:
        stop.set()
        t.join(5)
    if granted == "SCHED_FIFO 5":
        assert seen["policy"] == os.SCHED_FIFO
    assert os.sched_getscheduler(0) == os.SCHED_OTHER  # the caller is untouched
    assert set_thread_priority(2**22 + 12345, 5).startswith("refused")
    # the roles' order below the loop, never below SCHED_FIFO's lowest level
    assert [r.priority(50) for r in ThreadRole] == [50, 49, 48, 47]
    assert ThreadRole.LINK_SUPERVISOR.priority(2) == 1


def test_session_switch_interval_is_set_inside_and_restored_after_an_error_too():
    before = sys.getswitchinterval()
    assert before != SESSION_SWITCH_INTERVAL_S
    with pytest.raises(RuntimeError), session_switch_interval():
        assert sys.getswitchinterval() == pytest.approx(SESSION_SWITCH_INTERVAL_S)
        raise RuntimeError("a session that ends badly")
    assert sys.getswitchinterval() == before
