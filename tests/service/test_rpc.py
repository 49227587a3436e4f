"""JSON-RPC server and client over a real Unix socket, with real peer credentials."""

from __future__ import annotations

import grp
import json
import os
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
from pathlib import Path

import pytest

from exoctl.service import client as C
from exoctl.service import rpc


class Handler:
    RPC_METHODS = {"status": "status", "add": "add", "refuse": "refuse", "boom": "boom"}

    def __init__(self) -> None:
        self.calls = 0

    def status(self) -> dict:
        self.calls += 1
        return {"calls": self.calls}

    def add(self, a: float, b: float = 0.0) -> float:
        if not isinstance(a, int | float) or not isinstance(b, int | float):
            raise ValueError("a and b must be numbers")
        return a + b

    def refuse(self) -> None:
        raise rpc.Refused("fault latched: clear it first", {"fault": "emg_timeout"})

    def boom(self) -> None:
        raise RuntimeError("kaput")

    def shutdown(self) -> None:  # public, but not in the allow-list
        raise AssertionError("must never be reachable over RPC")


def _server(path: Path, **kw) -> tuple[rpc.RpcServer, Handler]:
    h = Handler()
    kw.setdefault("allowed_users", ["root"])
    srv = rpc.RpcServer(path, rpc.methods_from(h), **kw).start()
    return srv, h


def _raw(path: Path, data: bytes) -> list[dict]:
    """Send raw bytes on a fresh connection, read every response line until EOF."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(5)
    s.connect(str(path))
    try:
        s.sendall(data)
        s.shutdown(socket.SHUT_WR)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
    finally:
        s.close()
    return [json.loads(x) for x in out.splitlines() if x.strip()]


def test_calls_and_standard_errors(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    srv, h = _server(path)
    try:
        with C.Client(path) as c:
            assert c.call("status") == {"calls": 1}
            assert c.call("add", {"a": 2, "b": 3.5}) == 5.5
            assert c.call("add", [1, 2]) == 3
            with pytest.raises(C.RemoteError) as e:
                c.call("shutdown")
            assert e.value.code == rpc.METHOD_NOT_FOUND and "status" in e.value.data["methods"]
            with pytest.raises(C.RemoteError) as e:
                c.call("add", {"b": 1})  # missing a
            assert e.value.code == rpc.INVALID_PARAMS and "a" in e.value.message
            with pytest.raises(C.RemoteError) as e:
                c.call("add", {"a": 1, "zz": 2})
            assert e.value.code == rpc.INVALID_PARAMS
            with pytest.raises(C.RemoteError) as e:
                c.call("add", {"a": "x"})
            assert e.value.code == rpc.INVALID_PARAMS and "numbers" in e.value.message
            with pytest.raises(C.RemoteError) as e:
                c.call("refuse")
            assert e.value.refused and e.value.data == {"fault": "emg_timeout"}
            with pytest.raises(C.RemoteError) as e:
                c.call("boom")
            assert e.value.code == rpc.INTERNAL_ERROR and "kaput" in e.value.message
            # the same connection still works after all of that
            assert c.call("status") == {"calls": 2}
        r = _raw(
            path,
            b"{not json\n"
            b"[]\n"
            b'"str"\n'
            b'{"jsonrpc":"1.0","id":1,"method":"status"}\n'
            b'{"jsonrpc":"2.0","id":2,"method":"status","params":5}\n'
            b'{"jsonrpc":"2.0","method":"status"}\n'  # notification: runs, no answer
            b'[{"jsonrpc":"2.0","id":"a","method":"add","params":[1,1]},'
            b'{"jsonrpc":"2.0","id":"b","method":"nope"}]\n'
            b"\xff\xfe\n",
        )
        assert [x.get("error", {}).get("code") for x in r[:5]] == [
            rpc.PARSE_ERROR,
            rpc.INVALID_REQUEST,
            rpc.INVALID_REQUEST,
            rpc.INVALID_REQUEST,
            rpc.INVALID_PARAMS,
        ]
        batch = r[5]
        assert batch[0] == {"jsonrpc": "2.0", "id": "a", "result": 2}
        assert batch[1]["error"]["code"] == rpc.METHOD_NOT_FOUND
        assert r[6]["error"]["code"] == rpc.PARSE_ERROR
        assert len(r) == 7
        assert h.calls == 3  # the notification ran
    finally:
        srv.close()
    assert not path.exists()


def test_oversized_request_closes_only_that_connection(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    srv, h = _server(path, max_request_bytes=1024)
    try:
        other = C.Client(path).connect()
        assert other.call("status") == {"calls": 1}
        big = json.dumps(
            {"jsonrpc": "2.0", "id": 1, "method": "add", "params": {"a": 1, "pad": "x" * 200_000}}
        )
        c = C.Client(path).connect()
        resp = c.send_raw(big.encode() + b"\n")
        assert (
            resp["error"]["code"] == rpc.INVALID_REQUEST
            and "1024 bytes" in resp["error"]["message"]
        )
        with pytest.raises(C.ProtocolError, match="closed"):
            c.call("status")
        c.close()
        # no newline at all: also caught once the buffer passes the limit
        r = _raw(path, b"{" * 5000)
        assert r[0]["error"]["code"] == rpc.INVALID_REQUEST
        # the server and the other connection carry on
        assert other.call("status") == {"calls": 2}
        assert C.call(path, "add", {"a": 1, "b": 1}) == 2
        other.close()
    finally:
        srv.close()


def test_socket_mode_group_and_stale_socket(tmp_path: Path) -> None:
    path = tmp_path / "run" / "ctl.sock"
    path.parent.mkdir()
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(path))  # bound, never listening: what a killed daemon leaves
    stale.close()
    with pytest.raises(C.DaemonNotRunning, match="nobody listens"):
        C.call(path, "status")
    group = grp.getgrgid(1).gr_name  # some existing group other than root's
    srv, _ = _server(path, socket_group=group)
    try:
        st = path.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert st.st_gid == 1
        with pytest.raises(RuntimeError, match="already listening"):
            rpc.RpcServer(path, {}).start()
        assert C.call(path, "status") == {"calls": 1}  # the live one was left alone
    finally:
        srv.close()
    srv, _ = _server(path, socket_group="no-such-group-exoctl")  # warns, still serves
    try:
        assert C.call(path, "status") == {"calls": 1}
    finally:
        srv.close()
    with pytest.raises(C.DaemonNotRunning, match="no control socket"):
        C.call(path, "status")


def test_peer_credentials_checked(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    me = os.getuid()
    # allowed lists that exclude this process's user and every one of its groups
    srv, h = _server(path, allowed_users=["nobody"], allowed_groups=["no-such-group-exoctl"])
    try:
        with pytest.raises(C.PermissionDenied, match="may not use this socket"):
            C.call(path, "status")
        assert h.calls == 0 and srv.counters["refused"] == 1
    finally:
        srv.close()
    primary = grp.getgrgid(os.getgid()).gr_name
    srv, h = _server(path, allowed_users=[], allowed_groups=[primary])
    try:
        assert C.call(path, "status") == {"calls": 1}  # allowed through its group
    finally:
        srv.close()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as a:
        srv, _ = _server(path)
        try:
            a.connect(str(path))
            cred = rpc.peer_credentials(a)
        finally:
            srv.close()
    assert cred.uid == me and cred.pid == os.getpid()


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run a client as another user")
def test_file_permission_denied_for_other_user() -> None:
    d = Path(tempfile.mkdtemp(prefix="exoctl-rpc-"))
    try:
        os.chmod(d, 0o755)
        path = d / "ctl.sock"
        srv, _ = _server(path, socket_group="root")  # root:root 0660: nobody has no access
        code = textwrap.dedent(
            f"""
            import os, sys
            from exoctl.service import client as C  # import first: the stdlib may be root-only
            os.setgroups([]); os.setgid(65534); os.setuid(65534)
            try:
                C.call({str(path)!r}, "status")
            except C.PermissionDenied as e:
                print("DENIED", e); sys.exit(0)
            sys.exit(1)
            """
        )
        try:
            r = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, cwd="/"
            )
        finally:
            srv.close()
        assert r.returncode == 0, r.stdout + r.stderr
        assert "usermod -aG" in r.stdout
    finally:
        for p in d.iterdir():
            p.unlink()
        d.rmdir()


def test_many_concurrent_clients(tmp_path: Path) -> None:
    path = tmp_path / "ctl.sock"
    srv, h = _server(path)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            with C.Client(path) as c:
                for i in range(20):
                    assert c.call("add", [i, 1]) == i + 1
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    ts = [threading.Thread(target=worker) for _ in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(30)
    srv.close()
    assert not errors
    assert srv.counters["requests"] == 160
