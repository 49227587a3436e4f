"""Real-time set-up for the control thread, as far as the system permits, reported not raised.

What each part buys, and why none of it is allowed to stop the controller:

* **SCHED_FIFO** (``os.sched_setscheduler``): the loop thread pre-empts every normal thread
  when its deadline comes, so a busy neighbour cannot delay a tick by a whole time slice.
  On Linux this is per thread: call :func:`apply_realtime` *from the control-loop thread*.
  The kernel's RT throttling (``sched_rt_runtime_us``) still bounds a runaway spin.
* **CPU affinity**: keeps the thread's cache warm and lets an isolated core serve it.
* **mlockall**: no page fault (and no swap-in) in the middle of a tick. ``MCL_FUTURE`` is only
  requested when locked memory is unlimited or the process is privileged: under a finite
  ``RLIMIT_MEMLOCK`` it would turn later allocations into MemoryError.
* **Garbage collector**: the cyclic collector can pause a thread for milliseconds. During a
  session, :func:`session_gc` freezes everything allocated so far (moved out of the collector's
  generations) and disables automatic collection; between sessions it collects. The hot path
  allocates nothing that needs the cyclic collector, so nothing accumulates.

Each request that the system refuses (no privilege, no such CPU, a container without
``CAP_SYS_NICE``) is recorded in the :class:`RealtimeReport` so that the start-up log says what
the loop actually got; the controller runs either way, with its timing statistics telling how
well. Sleep-then-spin to absolute deadlines lives in :mod:`exoctl.control.timing` (``DeadlineTimer``).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import enum
import gc
import os
import resource
import sys
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field

MCL_CURRENT = 1
MCL_FUTURE = 2


@dataclass
class RealtimeReport:
    """What was asked for and what was granted; ``as_dict`` for the JSON log."""

    requested_priority: int | None = None
    sched_policy: str = "SCHED_OTHER"
    priority: int = 0
    sched_error: str | None = None
    requested_cpus: list[int] | None = None
    cpus: list[int] = field(default_factory=list)
    affinity_error: str | None = None
    memory_locked: str = "no"
    """"current+future", "current" or "no"."""
    memlock_error: str | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def fully_granted(self) -> bool:
        return (
            self.sched_error is None
            and self.affinity_error is None
            and self.memlock_error is None
            and (self.requested_priority is None or self.sched_policy == "SCHED_FIFO")
        )

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        """One line for a person reading the start-up log."""
        parts = [
            f"{self.sched_policy} {self.priority}"
            + (f" (refused: {self.sched_error})" if self.sched_error else ""),
            f"cpus {self.cpus}"
            + (f" (refused: {self.affinity_error})" if self.affinity_error else ""),
            f"memory locked: {self.memory_locked}"
            + (f" ({self.memlock_error})" if self.memlock_error else ""),
        ]
        return "real-time set-up: " + "; ".join(parts)


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    except OSError:
        return None


def _errstr(e: OSError) -> str:
    return f"{type(e).__name__}: {e.strerror or e}"


def apply_realtime(
    priority: int | None = 50,
    cpus: Iterable[int] | None = None,
    lock_memory: bool = True,
) -> RealtimeReport:
    """Ask for SCHED_FIFO ``priority``, affinity to ``cpus`` and locked memory; never raises.

    ``priority=None`` leaves the scheduling policy alone; ``cpus=None`` leaves the affinity
    alone. Applies to the calling thread (scheduling, affinity) and the process (memory).
    """
    rep = RealtimeReport(requested_priority=priority)

    if priority is not None:
        try:
            lo = os.sched_get_priority_min(os.SCHED_FIFO)
            hi = os.sched_get_priority_max(os.SCHED_FIFO)
            if not lo <= int(priority) <= hi:
                raise ValueError(f"priority {priority} outside SCHED_FIFO range [{lo}, {hi}]")
            os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(int(priority)))
        except (OSError, ValueError, AttributeError) as e:
            rep.sched_error = _errstr(e) if isinstance(e, OSError) else str(e)
    try:
        policy = os.sched_getscheduler(0)
        rep.sched_policy = {
            os.SCHED_FIFO: "SCHED_FIFO",
            os.SCHED_RR: "SCHED_RR",
            os.SCHED_OTHER: "SCHED_OTHER",
        }.get(policy, str(policy))
        rep.priority = os.sched_getparam(0).sched_priority
    except (OSError, AttributeError) as e:
        rep.notes.append(f"could not read the scheduling policy: {e}")

    if cpus is not None:
        want = sorted({int(c) for c in cpus})
        rep.requested_cpus = want
        try:
            if not want:
                raise ValueError("an empty CPU set was requested")
            os.sched_setaffinity(0, want)
        except (OSError, ValueError) as e:
            rep.affinity_error = _errstr(e) if isinstance(e, OSError) else str(e)
    with contextlib.suppress(OSError, AttributeError):
        rep.cpus = sorted(os.sched_getaffinity(0))

    if lock_memory:
        _lock_memory(rep)
    return rep


def _lock_memory(rep: RealtimeReport) -> None:
    libc = _libc()
    if libc is None or not hasattr(libc, "mlockall"):
        rep.memlock_error = "mlockall not available in this C library"
        return
    soft, _hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    privileged = os.geteuid() == 0
    flags = MCL_CURRENT
    if soft == resource.RLIM_INFINITY or privileged:
        flags |= MCL_FUTURE
    else:
        rep.notes.append(
            f"RLIMIT_MEMLOCK is {soft} bytes: locking current pages only (MCL_FUTURE under a "
            "finite limit would make later allocations fail)"
        )
    if libc.mlockall(flags) == 0:
        rep.memory_locked = "current+future" if flags & MCL_FUTURE else "current"
        return
    err = ctypes.get_errno()
    rep.memlock_error = f"mlockall: {os.strerror(err)} (RLIMIT_MEMLOCK {soft})"


def set_thread_priority(tid: int, priority: int | None) -> str:
    """SCHED_FIFO ``priority`` (None: SCHED_OTHER) for one thread by its kernel id; never raises.

    Linux schedules threads, and ``sched_setscheduler`` accepts a thread id, so the threads
    that feed the loop can be raised from another thread (see :func:`raise_threads`). Returns
    what was granted ("SCHED_FIFO 45") or the refusal.
    """
    try:
        if priority is None:
            os.sched_setscheduler(tid, os.SCHED_OTHER, os.sched_param(0))
            return "SCHED_OTHER"
        os.sched_setscheduler(tid, os.SCHED_FIFO, os.sched_param(int(priority)))
        return f"SCHED_FIFO {int(priority)}"
    except (OSError, ValueError, OverflowError) as e:
        return f"refused: {_errstr(e) if isinstance(e, OSError) else e}"


class ThreadRole(enum.Enum):
    """The controller's threads by what they do; the value is how far below the control
    loop's SCHED_FIFO priority each one runs.

    The loop's inputs run just below it: a loop at SCHED_FIFO whose inputs starve at
    SCHED_OTHER only trips its own watchdogs. The serial reader comes first (telemetry is read
    every tick), then the EMG acquisition, then the link's supervisor (heartbeats only matter
    when no command went out for a heartbeat period).
    """

    CONTROL_LOOP = 0
    LINK_READER = 1
    ACQUISITION = 2
    LINK_SUPERVISOR = 3

    def priority(self, loop_priority: int) -> int:
        """This role's SCHED_FIFO priority when the loop runs at ``loop_priority`` (>= 1)."""
        return max(1, int(loop_priority) - self.value)


def raise_threads(
    threads: Mapping[ThreadRole, threading.Thread], loop_priority: int
) -> dict[str, str]:
    """SCHED_FIFO for each thread handed in, at its role's priority below ``loop_priority``.

    Threads are given by reference (the objects their owners started), never found by name:
    renaming a thread cannot silently drop its priority. Returns "role (thread name)" ->
    outcome ("SCHED_FIFO 49", "refused: ...", or "not running" for a thread that has not
    started or has ended), for the log.
    """
    out: dict[str, str] = {}
    for role, t in threads.items():
        key = f"{role.name.lower()} ({t.name})"
        tid = t.native_id
        if tid is None or not t.is_alive():
            out[key] = "not running"
        else:
            out[key] = set_thread_priority(tid, role.priority(loop_priority))
    return out


def release_realtime() -> None:
    """Back to SCHED_OTHER and unlocked memory (between sessions, or in a benchmark)."""
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    libc = _libc()
    if libc is not None and hasattr(libc, "munlockall"):
        libc.munlockall()


SESSION_SWITCH_INTERVAL_S = 0.00025
"""The interpreter's thread switch interval during a session (Python's default: 5 ms).

A thread that wants the interpreter lock while another runs Python code waits this long before
it asks the holder to drop it. The control loop takes the lock back after every sleep of its
deadline wait and after its serial write; with the default it could wait up to 5 ms behind the
daemon's own threads (the pump, the recorder, the control socket), which is five 1 kHz periods.
A quarter of a 1 kHz period bounds that wait. The price is more lock hand-overs: a thread that
holds the lock past the interval while another waits must give it up and wait until the other
has run, which on a busy machine at default scheduling can take milliseconds; with the loop and
its input threads at real-time priority the hand-over is immediate. The controller therefore
applies it only to sessions with real-time priorities (``Controller.apply_realtime``)."""


@contextlib.contextmanager
def session_switch_interval(seconds: float = SESSION_SWITCH_INTERVAL_S) -> Iterator[None]:
    """``sys.setswitchinterval(seconds)`` inside, the previous interval restored after (the
    interval is the process's, not a thread's: it is set for the session, not for good)."""
    previous = sys.getswitchinterval()
    sys.setswitchinterval(seconds)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@contextlib.contextmanager
def session_gc(collect: bool = True) -> Iterator[None]:
    """No automatic garbage collection during a session; a full collection before and after.

    ``gc.freeze()`` moves every object alive at the start into a permanent generation, so a
    collection that someone forces during the session has almost nothing to scan.
    ``collect=False`` skips the two full collections: in a process whose other threads must
    keep deadlines (serial heartbeats), a full collection holds the GIL for as long as it
    scans (~90 ms for 300,000 containers, measured); freezing and unfreezing are O(1).
    """
    was_enabled = gc.isenabled()
    if collect:
        gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if was_enabled:
            gc.enable()
        if collect:
            gc.collect()
