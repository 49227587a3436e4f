"""The tick's probes: per-stage thread CPU records written by wrappers on the loop's instances.

``bench.bench_tick.probe`` installs them in a running controller's loop (in the loop's thread,
through a request) for one half of a session, and reads what they recorded: each stage's thread
CPU (``time.thread_time_ns``), the whole tick's, its wall time, and per tick the loop thread's
page faults and context switches (``getrusage(RUSAGE_THREAD)``); ``_tight`` times the same
stages back to back in the loop's thread, for what they cost with warm caches.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import numpy as np

STAGES = ("read", "monitor", "estimator", "model", "assist", "safety", "send")
"""The stages probed when the estimator runs in the loop's thread (``estimator.process: false``)."""
PROCESS_STAGES = ("telemetry", "estimates", "assist", "safety", "send", "book")
"""The stages probed when the estimator runs in its own process (the default): newest telemetry,
the estimate copied from shared memory, assist law, safety layer, send, and the bookkeeping after
the send (from the send's return to the next deadline wait)."""
EXTRA = ("tick", "tick_model", "tick_body", "tick_wall", "minflt", "nivcsw", "nvcsw")


def _pct(ns: np.ndarray) -> dict[str, float]:
    us = np.asarray(ns, dtype=np.float64) / 1e3
    if us.size == 0:
        return {"p50": float("nan"), "p99": float("nan"), "max": float("nan"), "n": 0}
    p50, p99 = np.percentile(us, [50, 99])
    return {"p50": round(float(p50), 2), "p99": round(float(p99), 2),
            "max": round(float(us.max()), 2), "n": int(us.size)}  # fmt: skip


class _Probes:
    """Preallocated per-stage records of thread CPU nanoseconds, written by instance wrappers."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.data = {s: np.zeros(cap, dtype=np.int64) for s in (*STAGES, *PROCESS_STAGES, *EXTRA)}
        self.n = dict.fromkeys(self.data, 0)
        self.t0 = 0
        self.wall0 = 0
        self.t_send = 0  # thread CPU when the last send returned (0: none yet)
        self.rusage: Any = None  # the loop thread's rusage at the tick's start (stage half)
        self.model_ns = 0

    def add(self, stage: str, ns: int) -> None:
        i = self.n[stage]
        if i < self.cap:
            self.data[stage][i] = ns
            self.n[stage] = i + 1

    def get(self, stage: str) -> np.ndarray:
        return self.data[stage][: self.n[stage]]

    def reset(self) -> None:
        self.n = dict.fromkeys(self.data, 0)
        self.t_send = 0


def _instrument(loop, probes: _Probes, stages: bool) -> list[tuple[object, str]]:
    """Wrap the loop's stages on their instances; returns what to unwrap. Which stages depends
    on where the estimator runs (``STAGES`` in the loop's thread, ``PROCESS_STAGES`` in its own
    process). The whole tick ("tick": deadline wait's return to the command written) is probed
    in both halves, with the thread CPU of the whole tick body ("tick_body": to the next wait)
    and its wall time; the stage half also counts the loop thread's page faults and context
    switches per tick (``getrusage(RUSAGE_THREAD)``, two system calls)."""
    import resource

    tt = time.thread_time_ns
    wall = time.perf_counter_ns
    rus = resource.getrusage
    who = resource.RUSAGE_THREAD
    wrapped: list[tuple[object, str]] = []

    def wrap(obj, name: str, stage: str) -> None:
        fn = getattr(obj, name)

        def probe(*a, **k):
            t0 = tt()
            r = fn(*a, **k)
            dt = tt() - t0
            probes.add(stage, dt)
            if stage == "model":
                probes.model_ns += dt
            return r

        setattr(obj, name, probe)
        wrapped.append((obj, name))

    wait = loop.timer.wait

    def tick_start():
        if probes.t_send:
            now = tt()
            probes.add("tick_body", now - probes.t0)
            if stages:
                probes.add("book", now - probes.t_send)
            probes.t_send = 0
        r = wait()
        probes.model_ns = 0
        if stages:
            probes.rusage = rus(who)
        probes.wall0 = wall()
        probes.t0 = tt()
        return r

    def tick_end(cmd):
        r = send(cmd)
        probes.t_send = t = tt()
        probes.add("tick", t - probes.t0)
        probes.add("tick_wall", wall() - probes.wall0)
        probes.add("tick_model", probes.model_ns)
        if stages and probes.rusage is not None:
            a, b = probes.rusage, rus(who)
            probes.add("minflt", b.ru_minflt - a.ru_minflt)
            probes.add("nivcsw", b.ru_nivcsw - a.ru_nivcsw)
            probes.add("nvcsw", b.ru_nvcsw - a.ru_nvcsw)
        return r

    if stages and getattr(loop, "estimator", None) is not None:
        wrap(loop.ring, "read_new", "read")
        if loop.channel_monitor is not None:
            wrap(loop.channel_monitor, "update", "monitor")
        wrap(loop.estimator, "step", "estimator")
        wrap(loop.estimator.model, "run", "model")
        wrap(loop.assist, "update", "assist")
        wrap(loop.safety, "apply", "safety")
        wrap(loop.link, "send_torque", "send")
    elif stages:
        wrap(loop.link, "latest_telemetry", "telemetry")
        wrap(loop.estimates, "step", "estimates")
        wrap(loop.assist, "update", "assist")
        wrap(loop.safety, "apply", "safety")
        wrap(loop.link, "send_torque", "send")
    send = loop.link.send_torque  # the send probe's wrapper, when stages are probed
    loop.timer.wait = tick_start
    loop.link.send_torque = tick_end  # outermost: after the send probe
    wrapped += [(loop.timer, "wait"), (loop.link, "send_torque")]
    return wrapped


def _stage_names(loop) -> tuple[str, ...]:
    return STAGES if getattr(loop, "estimator", None) is not None else PROCESS_STAGES


def _tight(loop, n: int) -> dict[str, dict[str, float]]:
    """The same stages called back to back ``n`` times in the loop's thread (one request, so
    caches stay warm and no other thread runs between them): what each costs in a tight loop,
    beside what it costs inside the running loop. The assist law and the safety layer run on
    copies (their state must not move the live command); the telemetry read and the estimate
    copy are the live ones (they change nothing); the send is not repeated (every call is a
    frame to the device)."""
    import copy

    tt = time.thread_time_ns
    link, src, inp = loop.link, loop.estimates, loop.inputs
    assist, safety = copy.deepcopy(loop.assist), copy.deepcopy(loop.safety)
    req, out = np.zeros_like(loop._command), np.zeros_like(loop._command)
    names = ("telemetry", "estimates", "assist", "safety")
    rec = {k: np.zeros(n, dtype=np.int64) for k in names}
    now = inp.now
    est = src.estimate
    tel = link.latest_telemetry()
    fw, rx = (tel.fw_time_s, tel.host_time) if tel is not None else (math.nan, math.nan)
    for i in range(n):
        t0 = tt()
        link.latest_telemetry()
        t1 = tt()
        if getattr(loop, "estimator", None) is None:
            src.step(inp.angles, inp.velocities, fw, rx)
        t2 = tt()
        assist.update(est, now, req)
        t3 = tt()
        safety.apply(req, est, inp, out)
        t4 = tt()
        rec["telemetry"][i], rec["estimates"][i] = t1 - t0, t2 - t1
        rec["assist"][i], rec["safety"][i] = t3 - t2, t4 - t3
    return {k: _pct(v) for k, v in rec.items()}


def _unwrap(wrapped: list[tuple[object, str]]) -> None:
    for obj, name in reversed(wrapped):
        with contextlib.suppress(AttributeError):
            delattr(obj, name)


def _probe_pair_ns(n: int = 20000) -> float:
    """What one probe (two clock reads and a record) costs, median, in this process."""
    tt = time.thread_time_ns
    p = _Probes(n)
    for _ in range(n):
        t0 = tt()
        p.add("read", tt() - t0)
    return float(np.median(p.get("read")))


def _per_tick_causes(st: dict[str, np.ndarray]) -> dict[str, Any]:
    """What the slow ticks of the stage-probed half had that the others did not: page faults,
    involuntary and voluntary context switches of the loop's thread inside the tick."""
    tick = st["tick"]
    n = min(tick.size, st["minflt"].size)
    if n == 0:
        return {}
    tick, out = tick[:n], {}
    slow = tick >= np.percentile(tick, 99)
    for k in ("minflt", "nivcsw", "nvcsw"):
        a = st[k][:n] > 0
        out[k] = {
            "ticks_with_share": round(float(a.mean()), 4),
            "share_among_slowest_1pct": round(float(a[slow].mean()), 4) if slow.any() else None,
            "tick_p50_us_with": round(float(np.median(tick[a])) / 1e3, 1) if a.any() else None,
            "tick_p50_us_without": round(float(np.median(tick[~a])) / 1e3, 1)
            if (~a).any() else None,
        }  # fmt: skip
    return out


def _gc_facts(gcs: list[tuple[int, int, bool]], span: float) -> dict[str, Any]:
    out: dict[str, Any] = {"seconds": round(span, 1)}
    for g in (0, 1, 2):
        d = [ns for gen, ns, _ in gcs if gen == g]
        out[f"gen{g}"] = {"count": len(d), "in_loop_thread": sum(1 for gen, _, lt in gcs if gen == g and lt),
                          "max_us": round(max(d) / 1e3, 1) if d else None}  # fmt: skip
    return out
