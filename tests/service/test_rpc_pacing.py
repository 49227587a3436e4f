"""What a flood of requests may take from the daemon: the CPU budget for request
work, the fair turn, and the gate that starts at most one piece of request work per control
period. The budget and the turn are tested by themselves (a clock moved by hand; threads
queued in a known order), then through the real server over a real Unix socket."""

from __future__ import annotations

import math
import threading
import time
import types
from pathlib import Path

from exoctl.service import client as C
from exoctl.service import rpc
from exoctl.service.daemon import Daemon
from exoctl.service.rpc.pacing import CpuBudget, FairTurn


class HandClock:
    def __init__(self) -> None:
        self.t = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.t

    def sleep(self, s: float) -> None:
        self.slept.append(s)
        self.t += s


def test_cpu_budget_waits_what_was_used_over_the_share() -> None:
    clock = HandClock()
    b = CpuBudget(0.1, burst_s=0.05, clock=clock, sleep=clock.sleep)
    b.charge(0.05)  # the burst: no wait
    b.wait()
    assert clock.slept == []
    b.charge(0.02)  # 20 ms of CPU at a tenth of a core: 0.2 s
    b.wait()
    assert math.isclose(sum(clock.slept), 0.2, rel_tol=1e-9)
    assert math.isclose(b.charged_s, 0.07)
    clock.t += 10.0  # idle: refills to the burst, not beyond
    b.charge(0.06)
    clock.slept.clear()
    b.wait()
    assert math.isclose(sum(clock.slept), 0.1, rel_tol=1e-9)


def test_one_heavy_call_costs_at_most_max_wait() -> None:
    clock = HandClock()
    b = CpuBudget(0.1, burst_s=0.0, max_wait_s=1.0, clock=clock, sleep=clock.sleep)
    b.charge(30.0)  # e.g. a model load: the socket does not close for five minutes
    b.wait()
    assert math.isclose(sum(clock.slept), 1.0, rel_tol=1e-9)
    assert b.charged_s == 30.0


def test_fair_turn_is_taken_in_arrival_order() -> None:
    turn = FairTurn()
    order: list[int] = []
    turn.__enter__()  # held: everyone below queues

    def take(i: int) -> None:
        with turn:
            order.append(i)

    threads = []
    for i in range(20):
        t = threading.Thread(target=take, args=(i,))
        t.start()
        threads.append(t)
        deadline = time.monotonic() + 10
        while len(turn._waiters) < i + 1:  # queued before the next one starts
            assert time.monotonic() < deadline
            time.sleep(0.001)
    turn.__exit__(None, None, None)
    for t in threads:
        t.join(10)
    assert order == list(range(20))
    with turn:  # free again
        pass


class Burner:
    RPC_METHODS = {"burn": "burn", "estop": "estop", "status": "status"}
    BURN_S = 0.02

    def __init__(self) -> None:
        self.estops = 0

    def burn(self) -> float:
        """20 ms of this thread's CPU, however fast the machine is."""
        t0 = time.thread_time()
        while time.thread_time() - t0 < self.BURN_S:
            sum(range(200))
        return time.thread_time() - t0

    def estop(self) -> dict:
        self.estops += 1
        return {"safety_state": "ESTOP"}

    def status(self) -> dict:
        return {"estops": self.estops}


def _server(path: Path, share: float) -> rpc.RpcServer:
    lim = rpc.Limits(request_cpu_share=share, request_cpu_burst_s=0.001)
    return rpc.RpcServer(
        path, rpc.methods_from(Burner()), allowed_users=["root"], limits=lim
    ).start()


def test_request_cpu_is_charged_and_paid_back_by_waiting(tmp_path: Path) -> None:
    """Six calls that each use 20 ms of CPU, at a fifth of a core: whatever the machine, the
    last cannot start before the first five are paid back, 5 x 20 ms / 0.2 = 0.5 s."""
    srv = _server(tmp_path / "c.sock", share=0.2)
    try:
        t0 = time.monotonic()
        with C.Client(srv.path) as c:
            used = [c.call("burn") for _ in range(6)]
        took = time.monotonic() - t0
        assert all(u >= Burner.BURN_S for u in used)
        assert took >= 5 * Burner.BURN_S / 0.2 * 0.999, took
        deadline = time.monotonic() + 10  # the last call is charged just after its answer
        while srv._pacer.cpu.charged_s < sum(used):
            assert time.monotonic() < deadline, (srv._pacer.cpu.charged_s, sum(used))
            time.sleep(0.01)
    finally:
        srv.close()


def test_estop_does_not_wait_for_the_budget(tmp_path: Path) -> None:
    """With the budget in debt for a second, an e-stop sent after a ``status`` is answered
    before it, on the control socket and on the e-stop socket."""
    srv = _server(tmp_path / "c.sock", share=0.1)
    try:
        srv._pacer.charge(10.0)  # in debt: the next paced request waits ~1 s
        answered: list[str] = []
        t = threading.Thread(target=lambda: (C.call(srv.path, "status"), answered.append("status")))
        t.start()
        time.sleep(0.05)
        assert C.call(srv.path, "estop") == {"safety_state": "ESTOP"}
        answered.append("estop")
        assert C.estop(srv.path)["safety_state"] == "ESTOP"
        answered.append("estop socket")
        t.join(10)
        assert answered == ["estop", "estop socket", "status"]
    finally:
        srv.close()


class TicksByTheClock:
    """A control loop's timing as the gate reads it: a tick at each multiple of ``period``
    that wrote its command ``cost`` after it started."""

    loop_running = True
    loop_idle = False  # a session's full-rate loop

    def __init__(self, period: float, cost: float) -> None:
        self.period, self.last_tick_cost = period, cost

    @property
    def next_deadline(self) -> float:
        return (math.floor(time.monotonic() / self.period) + 1) * self.period

    @property
    def last_write_time(self) -> float:
        start = self.next_deadline - self.period
        return (
            start + self.last_tick_cost if time.monotonic() >= start + self.last_tick_cost else -1.0
        )


def test_the_gate_starts_one_caller_per_control_period() -> None:
    """Three callers in a row each start in their own period, each after that period's tick
    wrote its command: the second and third wait for the next tick instead of starting
    behind the first and running into the next tick together."""
    period = 0.05
    clock = TicksByTheClock(period, cost=0.01)
    fake = types.SimpleNamespace(controller=clock, _gate_lock=threading.Lock(), _gate_slot=0.0)
    started = []
    for _ in range(3):
        Daemon._after_tick(fake)  # type: ignore[arg-type]
        started.append((time.monotonic(), fake._gate_slot))
    periods = [round(slot / period) for _, slot in started]
    assert periods == sorted(set(periods)), periods  # one each, in order
    for t, slot in started:
        assert slot - period + clock.last_tick_cost <= t < slot + period * 0.5


def test_an_idle_loop_lets_a_caller_through_at_once() -> None:
    """Without a session the loop ticks slowly and commands nothing: no caller waits for a
    tick (at the idle rate that would be up to ten idle periods per call), so the gate does
    not even look at the loop's timing."""

    class Idle(TicksByTheClock):
        loop_idle = True
        looked = 0

        @property
        def next_deadline(self) -> float:
            Idle.looked += 1
            return super().next_deadline

    fake = types.SimpleNamespace(
        controller=Idle(0.05, cost=0.01), _gate_lock=threading.Lock(), _gate_slot=0.0
    )
    for _ in range(3):
        Daemon._after_tick(fake)  # type: ignore[arg-type]
    assert Idle.looked == 0 and fake._gate_slot == 0.0
    fake.controller.loop_idle = False  # the same loop in a session: the gate waits for ticks
    Daemon._after_tick(fake)  # type: ignore[arg-type]
    assert Idle.looked > 0 and fake._gate_slot > 0.0
