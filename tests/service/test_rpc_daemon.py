"""The control socket of a real daemon under attack: every slot held, long batches, floods.

The daemon runs in this process (so its control loop's own timing record can be read), the
HIL simulator in another (EMG over LSL on loopback, the firmware on a pty), and the attackers
in a third, so that their work is not this process's. Real-time set-up as the other daemon
tests ask for it (tests/conftest.py): the loop at SCHED_FIFO 50, the simulator at 60.
Nothing is mocked."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from exoctl.config.schema import load_config
from exoctl.service import client as C
from exoctl.service import rpc

pytestmark = pytest.mark.hil
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory, write_config, realtime_config):
    from exoctl.service.daemon import Daemon
    from exoctl.service.sdnotify import Notifier

    tmp = tmp_path_factory.mktemp("rpc-daemon")
    info = tmp / "sim.json"
    sim = subprocess.Popen(
        [sys.executable, "-m", "exoctl.cli", "--config", str(realtime_config), "sim",
         "--info-file", str(info)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=ROOT,
    )  # fmt: skip
    d = None
    try:
        deadline = time.monotonic() + 120
        while not info.exists():
            assert sim.poll() is None and time.monotonic() < deadline, "simulator did not start"
            time.sleep(0.05)
        ep = json.loads(info.read_text())
        cfg = load_config(
            write_config(
                tmp,
                device={"serial": {"port": ep["port"]}},
                emg={"lsl": {"source_id": ep["source_id"]}},
            )
        )
        for attempt in range(2):  # EMG not flowing within 2 s on a loaded machine: retry once
            d = Daemon(cfg, Notifier({}))
            try:
                d.start()
                break
            except Exception:
                d.shutdown()
                if attempt:
                    raise
        yield d
    finally:
        if d is not None:
            d.shutdown()
        sim.terminate()
        sim.wait(30)


def _attacker(code: str, *args: str, timeout: float = 120) -> dict:
    """Run ``code`` in another interpreter; it prints one JSON line, returned here."""
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, timeout=timeout, cwd=ROOT,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def _clear(d, timeout: float = 15.0) -> None:
    """Clear the e-stop (and any load-induced fault), as a clinician would."""
    deadline = time.monotonic() + timeout
    while d.rpc_status()["safety_state"] in ("ESTOP", "FAULT_LATCHED", "SAFE_STOP"):
        with contextlib.suppress(rpc.Refused):
            d.rpc_fault_clear()
        assert time.monotonic() < deadline, d.rpc_status()["safety_state"]
        time.sleep(0.3)


def _tick_starts(d, since: int) -> tuple[np.ndarray, np.ndarray]:
    """(time each tick started, its start error) for ticks since counter ``since``, from
    the loop's own records: the command's write time minus the tick's cost is its start."""
    _, rows = d.controller.read_ticks(since)
    return rows["t"] - rows["tick_cost"], rows["start_error"]


BATCH = r"""
    import json, socket, sys, time
    path, reps, gap = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])

    def batch(n):
        body = ",".join('{"jsonrpc":"2.0","id":%d,"method":"status"}' % i for i in range(n))
        return ("[" + body + "]\n").encode()

    windows, answers = [], []
    for i in range(reps):
        req = batch(1000 if i % 2 == 0 else 300)  # 45 KB (over the size limit), 13 KB
        time.sleep(gap)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(30)
        t0 = time.monotonic()
        s.connect(path)
        try:
            s.sendall(req)
        except OSError:  # refused (and closed) before the whole line was read: read why
            pass
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        windows.append([t0, time.monotonic()])
        s.close()
        answers.append([len(req), json.loads(buf)])
    print(json.dumps({"windows": windows, "answers": answers}))
"""


def test_oversize_batch_refused_without_delaying_a_tick(daemon) -> None:
    """Reproduction 2: batches of 1,000 ``status`` calls (45 KB: over the size limit) and of
    300 (13 KB: over the batch limit), ten in turn, each after a quiet gap of 0.3 s. Each is
    refused with a JSON-RPC error within a second (the 1,000 used to be answered after
    8-25 s), and no tick that started while one was in flight (from the attacker's connect
    to its answer; the control socket is served by its own process, so the attacker's view is
    the record) comes near the firmware's command timeout (it used to hold the loop 235-601 ms
    and latch a host timeout): under 10 ms, five periods.

    Not asserted, reported (a warning when over): whether those ticks are later than the
    loop's normal p99 (over the quiet gaps of the same run) beyond the 1 % that p99 lets
    through. On this 2-core machine a tick costs ~1.25 ms of the 2 ms period, and refusing a
    13-45 KB line costs the interpreter 0.3-1 ms, which does not always fit in what is left:
    a few ticks come ~1 ms late (see docs/control-api.md, "Measured")."""
    d = daemon
    first = d.controller.ticks_written
    r = _attacker(BATCH, str(d.svc.socket_path), "10", "0.3")
    time.sleep(0.1)
    lim = rpc.Limits()
    for size, a in r["answers"]:
        assert a["error"]["code"] == rpc.INVALID_REQUEST, a
        if size > lim.max_request_bytes:
            assert a["error"]["data"] == {
                "limit": "max_request_bytes",
                "max": lim.max_request_bytes,
            }
        else:
            assert a["error"]["data"] == {"limit": "max_batch", "max": lim.max_batch}
    assert {size > lim.max_request_bytes for size, _ in r["answers"]} == {True, False}
    held = [tuple(w) for w in r["windows"]]  # connect to answer, as the attacker saw it
    assert len(held) == 10
    start, err = _tick_starts(d, first)
    period = d.controller.period
    during = np.zeros(len(start), bool)
    for t0, t1 in held:
        during |= (start >= t0) & (start <= t1 + period)
    quiet = ~during & (start >= r["windows"][0][0] - 0.3)
    p99 = float(np.percentile(err[quiet], 99))
    n = int(during.sum())
    late = int((err[during] > p99).sum())
    allowance = 2 + int(np.ceil(0.01 * n + 3 * np.sqrt(0.01 * n)))  # mean + 3 sigma, +2
    worst = float(err[during].max()) if n else 0.0
    held_ms = [round((t1 - t0) * 1e3, 1) for t0, t1 in held]
    report = (
        f"{n} ticks while the daemon held the requests ({held_ms} ms), {late} later than the "
        f"quiet p99 {p99 * 1e3:.3f} ms (allowed {allowance}); worst {worst * 1e3:.3f} ms; "
        f"{int(quiet.sum())} quiet ticks (max {err[quiet].max() * 1e3:.3f} ms)"
    )
    print(report)
    assert max(t1 - t0 for t0, t1 in r["windows"]) < 1.0, report
    assert worst < 5 * period, report  # far from the firmware's 0.1 s command timeout
    if late > allowance:
        warnings.warn(f"ticks later than the loop's quiet p99: {report}", stacklevel=1)
    assert d.controller.loop_error is None


HOG = r"""
    import json, socket, sys, threading, time
    from exoctl.service import client as C
    path, n, ready = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    hogs = []
    while len(hogs) < n:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            s.sendall(b'{"jsonrpc":"2.0",')  # never the newline
        except OSError:
            s.close()
            time.sleep(0.005)
            continue
        hogs.append(s)

    def trickle():  # 6 bytes/s into one more connection, for as long as it is kept open
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        while True:
            try:
                s.send(b"x")
            except OSError:
                return
            time.sleep(1 / 6)

    threading.Thread(target=trickle, daemon=True).start()
    open(ready, "w").close()
    time.sleep(float(sys.argv[4]))
    print(json.dumps({"hogs": len(hogs)}))
"""


@pytest.mark.parametrize("hogs", [16, 80])
def test_estop_accepted_within_100ms_while_the_socket_is_attacked(daemon, tmp_path, hogs):
    """Reproduction 1: connections that never send a newline (16, then more than there are
    slots) and a client trickling 6 bytes/s: ``exoctl estop``'s path answers within 100 ms
    and the loop is in ESTOP."""
    d = daemon
    _clear(d)
    ready = tmp_path / "ready"
    box: dict = {}
    t = threading.Thread(
        target=lambda: box.update(
            _attacker(HOG, str(d.svc.socket_path), str(hogs), str(ready), "4")
        )
    )
    t.start()
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert t.is_alive() and time.monotonic() < deadline, "the attacker did not start"
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        r = C.estop(d.svc.socket_path, retry_s=0)
        took_ms = (time.monotonic() - t0) * 1e3
        assert r == {"safety_state": "ESTOP"}
        assert d.rpc_status()["safety_state"] == "ESTOP"
        assert took_ms < 100.0, f"e-stop answered after {took_ms:.1f} ms"
    finally:
        t.join(30)
    assert box.get("hogs") == hogs
    _clear(d)


CONCURRENT = r"""
    import json, sys, threading
    from exoctl.service import client as C
    path = sys.argv[1]
    ok = [0] * 50
    errors = {}
    barrier = threading.Barrier(50)

    def client(i):
        barrier.wait()
        for _ in range(20):
            try:
                C.call(path, "status", timeout_s=30.0)
                ok[i] += 1
            except C.ClientError as e:
                errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1

    ts = [threading.Thread(target=client, args=(i,)) for i in range(50)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    print(json.dumps({"answered": sum(ok), "errors": errors}))
"""


def test_fifty_clients_twenty_status_calls_each(daemon) -> None:
    """Reproduction 6: 50 clients x 20 ``status`` calls, each a fresh connection with the
    CLI's client (and its retry): at least 99 % answered (it was 157 of 1,000)."""
    r = _attacker(CONCURRENT, str(daemon.svc.socket_path), timeout=300)
    assert r["answered"] >= 990, r
    assert daemon.controller.loop_error is None
