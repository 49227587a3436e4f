"""The control socket served by its own process (``exoctl.service.rpc.relay``): a real front
process, real Unix sockets, the CLI's client; the handlers and their dispatcher run here, in
the test's process, as they do in the daemon's."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exoctl.service import client as C
from exoctl.service import rpc
from exoctl.service.rpc.relay import Front


class Handler:
    RPC_METHODS = {"status": "status", "estop": "estop", "slow": "slow"}

    def __init__(self) -> None:
        self.threads: list[str] = []
        self.estops = 0
        self.release = threading.Event()

    def status(self) -> dict:
        self.threads.append(threading.current_thread().name)
        return {"pid": os.getpid(), "estops": self.estops}

    def estop(self) -> dict:
        self.estops += 1
        return {"safety_state": "ESTOP"}

    def slow(self) -> str:
        self.release.wait(10)
        return "done"


@pytest.fixture
def served(tmp_path: Path):
    h = Handler()
    gated: list[str] = []
    d = rpc.Dispatcher(rpc.methods_from(h), concurrent=("status", "estop"))
    path = tmp_path / "run" / "control.sock"
    estop = rpc.RpcServer(path, {}, dispatcher=d, sockets="estop", allowed_users=["root"]).start()
    front = Front(
        path,
        d.handle,
        gate=lambda: gated.append(threading.current_thread().name),
        read_methods=("status",),
        allowed_users=["root"],
    ).start()
    try:
        yield h, front, estop, gated
    finally:
        h.release.set()
        front.close()
        estop.close()


def test_calls_are_served_by_another_process_and_handled_here(served) -> None:
    h, front, _, gated = served
    assert front.pid is not None and front.pid != os.getpid()
    assert C.call(front.path, "status") == {"pid": os.getpid(), "estops": 0}
    assert h.threads == ["exoctl-rpc-read"]  # the daemon's relay thread for reads
    assert gated == ["exoctl-rpc-read"]  # after the gate (a tick), as in the daemon
    assert C.call(front.path, "estop") == {"safety_state": "ESTOP"}
    assert gated == ["exoctl-rpc-read"]  # a lone e-stop never waits for the gate
    with pytest.raises(C.RemoteError) as e:
        C.call(front.path, "nope")
    assert e.value.code == rpc.METHOD_NOT_FOUND  # the daemon's table answers
    assert C.call(front.path, "status") == {"pid": os.getpid(), "estops": 1}


def test_status_and_estop_do_not_wait_behind_a_slow_call(served) -> None:
    h, front, _, _ = served
    out: list[str] = []
    t = threading.Thread(target=lambda: out.append(C.call(front.path, "slow")))
    t.start()
    time.sleep(0.2)  # slow is running in the daemon's write channel
    assert C.call(front.path, "status")["estops"] == 0
    assert C.call(front.path, "estop") == {"safety_state": "ESTOP"}
    assert out == []
    h.release.set()
    t.join(10)
    assert out == ["done"]


def test_a_killed_front_is_restarted_and_the_estop_socket_never_stops(served) -> None:
    h, front, estop, _ = served
    first = front.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    assert C.estop(front.path)["safety_state"] == "ESTOP"  # served here, front or no front
    deadline = time.monotonic() + 30
    while True:
        try:
            if C.call(front.path, "status", retry_s=0.5)["estops"] == 1:
                break
        except C.ClientError:
            pass
        assert time.monotonic() < deadline, "the front was not restarted"
        time.sleep(0.1)
    assert front.restarts == 1 and front.pid not in (None, first)


def test_close_stops_the_front_and_removes_the_control_socket(served) -> None:
    _, front, _, _ = served
    pid = front.pid
    front.close()
    assert not front.path.exists()
    with pytest.raises(ProcessLookupError):
        for _ in range(100):
            os.kill(pid, 0)
            time.sleep(0.05)


def test_a_front_that_cannot_listen_says_why(tmp_path: Path) -> None:
    path = tmp_path / "control.sock"
    path.write_text("not a socket")
    d = rpc.Dispatcher(rpc.methods_from(Handler()))
    with pytest.raises(RuntimeError, match="exists and is not a socket"):
        Front(path, d.handle, allowed_users=["root"]).start()


DAEMON = r"""
import sys, time
from exoctl.service import rpc
from exoctl.service.rpc.relay import Front

class H:
    RPC_METHODS = {"status": "status"}
    def status(self):
        return {}

front = Front(sys.argv[1], rpc.Dispatcher(rpc.methods_from(H())).handle, allowed_users=["root"])
front.start()
print(front.pid, flush=True)
time.sleep(60)
"""


def test_the_front_goes_when_its_daemon_is_killed(tmp_path: Path) -> None:
    """A SIGKILLed daemon leaves no control socket answering for it: its front gets SIGTERM
    from the kernel (PR_SET_PDEATHSIG), closes and removes the socket."""
    import subprocess
    import sys

    path = tmp_path / "control.sock"
    daemon = subprocess.Popen(
        [sys.executable, "-c", DAEMON, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert daemon.stdout is not None
        front_pid = int(daemon.stdout.readline())
        assert C.call(path, "status") == {}
        daemon.kill()
        daemon.wait(10)
        deadline = time.monotonic() + 10
        while True:
            try:
                os.kill(front_pid, 0)
            except ProcessLookupError:
                break
            assert time.monotonic() < deadline, "the front outlived its daemon"
            time.sleep(0.05)
        assert not path.exists()
    finally:
        daemon.kill()


@pytest.mark.parametrize("argv", [[], ["not json"], ['{"path": "/tmp/x.sock"}']])
def test_the_front_run_by_hand_says_to_run_the_daemon(argv: list[str]) -> None:
    """``python -m exoctl.service.rpc.front`` is the daemon's to start; a person who runs it
    gets what to run instead, not a traceback."""
    p = subprocess.run(
        [sys.executable, "-m", "exoctl.service.rpc.front", *argv],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2, p.stderr
    assert p.stdout == ""
    assert "Traceback" not in p.stderr
    assert "exoctl daemon" in p.stderr and "control socket" in p.stderr
