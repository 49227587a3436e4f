"""The control socket's bounds and its e-stop path, over real Unix sockets with the real
server, against every slot held, a client trickling bytes, hostile lines and many clients at
once: every limit answered with a JSON-RPC error, the e-stop through its own socket however
the control socket is attacked, a busy daemon answered by retrying, the accept loop never held
by one client."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from exoctl.service import client as C
from exoctl.service import rpc


class Handler:
    RPC_METHODS = {"status": "status", "estop": "estop", "slow": "slow", "echo": "echo"}

    def __init__(self) -> None:
        self.status_calls = 0
        self.estops = 0
        self.release = threading.Event()

    def status(self) -> dict:
        self.status_calls += 1
        return {"calls": self.status_calls, "estops": self.estops}

    def estop(self) -> dict:
        self.estops += 1
        return {"safety_state": "ESTOP"}

    def slow(self) -> str:
        self.release.wait(10)
        return "done"

    def echo(self, x: object = None) -> object:
        return x


def _server(path: Path, **kw) -> tuple[rpc.RpcServer, Handler]:
    h = Handler()
    kw.setdefault("allowed_users", ["root"])
    return rpc.RpcServer(path, rpc.methods_from(h), **kw).start(), h


def _conn(path: Path, timeout: float = 5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(path))
    return s


def _lines(s: socket.socket, n: int = 1) -> list[dict]:
    """n answer lines from a connection (fewer if it closes first)."""
    out, buf = [], b""
    while len(out) < n:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        while b"\n" in buf and len(out) < n:
            line, buf = buf.split(b"\n", 1)
            out.append(json.loads(line))
    return out


def _ask(s: socket.socket, line: bytes) -> dict:
    s.sendall(line + b"\n")
    (r,) = _lines(s)
    return r


STATUS = b'{"jsonrpc":"2.0","id":7,"method":"status"}'


def test_each_limit_is_a_json_rpc_error_and_the_connection_carries_on(tmp_path: Path) -> None:
    srv, h = _server(tmp_path / "c.sock")
    lim = srv.limits
    batch = b"[" + b",".join([STATUS] * (lim.max_batch + 1)) + b"]"
    cases = {
        "max_number_digits": b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"status"}',
        "max_depth": b"[" * 10000,
        "max_batch": batch,
        "max_items": b'{"jsonrpc":"2.0","id":1,"method":"echo","params":['
        + b",".join([b"1"] * lim.max_items)
        + b"]}",
    }
    try:
        with _conn(srv.path) as s:
            for limit, line in cases.items():
                r = _ask(s, line)
                assert r["error"]["code"] == rpc.INVALID_REQUEST, (limit, r)
                assert r["error"]["data"] == {"limit": limit, "max": getattr(lim, limit)}
                assert r["id"] is None
            for line in (b'{"jsonrpc":"2.0","id":NaN,"method":"status"}', b"[-Infinity]"):
                assert _ask(s, line)["error"]["code"] == rpc.PARSE_ERROR
            r = _ask(s, b'{"jsonrpc":"2.0","id":1,"method":"echo","params":[1e999]}')
            assert r["error"]["data"]["limit"] == "max_number_digits"
            # exactly at the limits: answered
            ok_batch = b"[" + b",".join([STATUS] * lim.max_batch) + b"]"
            assert len(_ask(s, ok_batch)) == lim.max_batch
            deep = b"[" * (lim.max_depth - 1) + b"1" + b"]" * (lim.max_depth - 1)
            line = b'{"jsonrpc":"2.0","id":2,"method":"echo","params":[' + deep + b"]}"
            assert _ask(s, line)["error"]["data"]["limit"] == "max_depth"  # one level more
            line = b'{"jsonrpc":"2.0","id":2,"method":"echo","params":' + deep + b"}"
            assert _ask(s, line)["result"] == json.loads(deep)[0]
            # strings may hold anything: brackets, digits, quotes, commas
            tricky = "[[[{{{" * 100 + "9" * 100 + '\\"' + "," * 2000
            line = json.dumps({"jsonrpc": "2.0", "id": 3, "method": "echo", "params": [tricky]})
            assert _ask(s, line.encode())["result"] == tricky
            assert _ask(s, STATUS)["result"]["calls"] >= 1  # the same connection, still served
        assert srv.counters["errors"] >= len(cases) + 3
    finally:
        srv.close()


def test_slow_client_loses_its_connection_nobody_waits(tmp_path: Path) -> None:
    """A client trickling bytes (reproduction 1: more than 5 bytes/s) gets an error when its
    request deadline passes; meanwhile the accept loop and every other client are served."""
    srv, h = _server(
        tmp_path / "c.sock", limits=rpc.Limits(max_connections=4, request_timeout_s=0.6)
    )
    stop = threading.Event()
    try:
        slow = _conn(srv.path)
        t0 = time.monotonic()

        def trickle() -> None:
            while not stop.wait(0.1):  # 10 bytes/s, never a newline
                try:
                    slow.send(b" ")
                except OSError:
                    return

        threading.Thread(target=trickle, daemon=True).start()
        for _ in range(10):  # served promptly while the slow client trickles
            t = time.monotonic()
            assert C.call(srv.path, "echo", [1], retry_s=0) == 1
            assert time.monotonic() - t < 0.5
        (r,) = _lines(slow)
        took = time.monotonic() - t0
        assert r["error"]["data"] == {"limit": "request_timeout_s", "max": 0.6}
        assert 0.5 < took < 3.0
        assert _lines(slow) == []  # and closed
    finally:
        stop.set()
        srv.close()


def test_idle_connections_are_evicted_for_a_newcomer(tmp_path: Path) -> None:
    srv, h = _server(tmp_path / "c.sock", limits=rpc.Limits(max_connections=3))
    try:
        idle = [_conn(srv.path) for _ in range(3)]
        time.sleep(0.05)
        keep = C.Client(srv.path).connect()  # the 4th: the oldest idle one makes room
        assert keep.call("echo", ["x"]) == "x"
        (r,) = _lines(idle[0])
        assert r["error"]["code"] == rpc.CONNECTION_CLOSED and r["id"] is None
        # a client whose idle connection was evicted reconnects by itself
        for _ in range(3):
            _conn(srv.path).close()
        time.sleep(0.05)
        assert keep.call("echo", ["y"]) == "y"
        keep.close()
        assert srv.counters["evicted"] >= 2
        for s in idle:
            s.close()
    finally:
        srv.close()


def test_busy_daemon_is_retried_and_the_cap_holds(tmp_path: Path) -> None:
    """Every slot mid-request: a newcomer gets BUSY (nothing was read); the client retries
    until a slot frees (the stuck requests time out)."""
    srv, h = _server(
        tmp_path / "c.sock", limits=rpc.Limits(max_connections=4, request_timeout_s=0.8)
    )
    try:
        stuck = [_conn(srv.path) for _ in range(4)]
        for s in stuck:
            s.sendall(b'{"jsonrpc":')  # a request begun, never finished
        time.sleep(0.1)
        with _conn(srv.path) as s:
            (r,) = _lines(s)
        assert r["error"]["code"] == rpc.BUSY and r["id"] is None
        with pytest.raises(C.DaemonBusy, match="busy"):
            C.call(srv.path, "status", retry_s=0.2)
        t0 = time.monotonic()
        assert C.call(srv.path, "echo", [5], retry_s=5.0) == 5
        assert 0.3 < time.monotonic() - t0 < 3.0  # after the stuck ones' deadline
        assert srv.counters["busy"] >= 2
        for s in stuck:
            s.close()
    finally:
        srv.close()


def test_reader_that_never_reads_is_dropped(tmp_path: Path) -> None:
    srv, h = _server(tmp_path / "c.sock", limits=rpc.Limits(send_timeout_s=0.3))
    try:
        s = _conn(srv.path)
        big = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "echo", "params": ["x" * 60000]}
        ).encode()
        t0 = time.monotonic()
        with pytest.raises(OSError):  # the server gives up on us and closes
            while time.monotonic() - t0 < 10:
                s.sendall(big + b"\n")
        assert C.call(srv.path, "echo", [1]) == 1
        s.close()
    finally:
        srv.close()


def test_status_is_cached_and_invalidated(tmp_path: Path) -> None:
    srv, h = _server(tmp_path / "c.sock", cached={"status": 10.0})
    try:
        with C.Client(srv.path) as c:
            first = c.call("status")
            assert [c.call("status") for _ in range(5)] == [first] * 5
            assert h.status_calls == 1
            c.call("echo", [0])  # any other request: the next status is built afresh
            assert c.call("status")["calls"] == 2
            assert C.estop(srv.path)["safety_state"] == "ESTOP"  # through the e-stop socket
            assert c.call("status") == {"calls": 3, "estops": 1}
    finally:
        srv.close()


def test_estop_never_waits_behind_another_request(tmp_path: Path) -> None:
    """A serialised handler that blocks (a session's ramp-out) holds neither the e-stop
    method on the control socket nor the e-stop socket."""
    srv, h = _server(tmp_path / "c.sock")
    try:
        blocked = threading.Thread(target=C.call, args=(srv.path, "slow"), daemon=True)
        blocked.start()
        time.sleep(0.1)
        t0 = time.monotonic()
        assert C.call(srv.path, "estop", retry_s=0) == {"safety_state": "ESTOP"}
        assert C.estop(srv.path) == {"safety_state": "ESTOP"}
        assert time.monotonic() - t0 < 1.0 and h.estops == 2
        h.release.set()
        blocked.join(5)
    finally:
        h.release.set()
        srv.close()


FLOOD = """
import socket, sys, time
held = []
while len(held) < int(sys.argv[2]):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
    except BlockingIOError:
        s.close()
        continue
    held.append(s)
print(len(held), flush=True)
time.sleep(60)
"""


def _estop_ms(path: Path) -> float:
    t0 = time.monotonic()
    assert C.estop(path, retry_s=0) == {"safety_state": "ESTOP"}
    return (time.monotonic() - t0) * 1e3


def test_estop_accepted_under_connection_exhaustion_and_a_slow_client(tmp_path: Path) -> None:
    """Reproduction 1: 16 connections that never send a newline (then every slot), one more
    client trickling 6 bytes/s, and a flood of connections to the e-stop socket itself (from
    another process, as an attacker would): the e-stop is accepted within 100 ms each time."""
    srv, h = _server(tmp_path / "c.sock")
    hogs: list[socket.socket] = []
    stop = threading.Event()
    try:
        for _ in range(16):
            s = _conn(srv.path)
            s.sendall(b'{"jsonrpc":"2.0",')
            hogs.append(s)
        time.sleep(0.1)
        assert _estop_ms(srv.path) < 100.0

        def trickle() -> None:
            with _conn(srv.path) as s:
                while not stop.wait(1 / 6):
                    try:
                        s.send(b"x")
                    except OSError:  # its request deadline closed it: start over
                        return

        threading.Thread(target=trickle, daemon=True).start()
        for _ in range(srv.limits.max_connections):  # every slot
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(str(srv.path))
            s.sendall(b"[")
            hogs.append(s)
        time.sleep(0.3)
        assert _estop_ms(srv.path) < 100.0
        with pytest.raises(C.DaemonBusy):  # the control socket is indeed full ...
            C.call(srv.path, "status", retry_s=0.1)
        # ... and the e-stop socket is flooded by another process: 200 connections, never read
        flood = subprocess.Popen(
            [sys.executable, "-c", FLOOD, str(srv.estop_path), "200"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            assert flood.stdout.readline().strip() == "200"
            assert _estop_ms(srv.path) < 100.0
        finally:
            flood.kill()
            flood.wait(10)
        assert h.estops >= 3
    finally:
        stop.set()
        for s in hogs:
            s.close()
        srv.close()


def test_estop_socket_checks_the_peer_and_is_removed_on_close(tmp_path: Path) -> None:
    path = tmp_path / "c.sock"
    srv, h = _server(path, allowed_users=["nobody"], allowed_groups=[])
    try:
        assert srv.estop_path == tmp_path / "c.estop.sock" and srv.estop_path.is_socket()
        with pytest.raises(C.PermissionDenied, match="may not use this socket"):
            C.estop(path)
        assert h.estops == 0
    finally:
        srv.close()
    assert not path.exists() and not (tmp_path / "c.estop.sock").exists()
    with pytest.raises(C.DaemonNotRunning):
        C.estop(path)


def test_estop_falls_back_to_the_control_socket(tmp_path: Path) -> None:
    """A daemon without the e-stop socket (older, or it was removed): the method on the
    control socket."""
    srv, h = _server(tmp_path / "c.sock")
    try:
        srv.estop_path.unlink()
        assert C.estop(srv.path) == {"safety_state": "ESTOP"} and h.estops == 1
    finally:
        srv.close()


def test_fifty_clients_twenty_calls_each(tmp_path: Path) -> None:
    """Reproduction 6 against the server: 50 clients x 20 calls, each a fresh connection (as
    50 CLIs would), all answered."""
    srv, h = _server(tmp_path / "c.sock", cached={"status": 0.1})
    answered = [0] * 50
    barrier = threading.Barrier(50)

    def client(i: int) -> None:
        barrier.wait()
        for _ in range(20):
            try:
                C.call(srv.path, "status", timeout_s=20.0)
                answered[i] += 1
            except C.ClientError:
                pass

    try:
        ts = [threading.Thread(target=client, args=(i,)) for i in range(50)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
    finally:
        srv.close()
    assert sum(answered) >= 990, answered
