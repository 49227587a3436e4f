"""A small JSON-RPC client for the daemon's control socket.

Its errors are written for the person at the terminal: "the daemon is not running" and "you
may not use the socket" are the two problems a clinician actually meets, and each says what
to do about it.
"""

from __future__ import annotations

import errno
import itertools
import json
import socket
from pathlib import Path
from typing import Any

from exoctl.service import rpc


class ClientError(RuntimeError):
    """Any failure to get an answer from the daemon."""


class DaemonNotRunning(ClientError):
    pass


class PermissionDenied(ClientError):
    pass


class ProtocolError(ClientError):
    pass


class RemoteError(ClientError):
    """The daemon answered with a JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    @property
    def refused(self) -> bool:
        return self.code == rpc.REFUSED


class Client:
    """One connection; ``call()`` sends a request and waits for its response."""

    def __init__(self, path: str | Path, *, timeout_s: float = 10.0) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self._ids = itertools.count(1)

    def connect(self) -> Client:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout_s)
        try:
            s.connect(str(self.path))
        except FileNotFoundError:
            s.close()
            raise DaemonNotRunning(
                f"the exoctl daemon is not running: no control socket at {self.path} "
                "(start it with `systemctl start exoctl`, or check service.socket_path)"
            ) from None
        except ConnectionRefusedError:
            s.close()
            raise DaemonNotRunning(
                f"the exoctl daemon is not running: nobody listens on {self.path} "
                "(a stale socket; start it with `systemctl start exoctl`)"
            ) from None
        except PermissionError:
            s.close()
            raise PermissionDenied(
                f"permission denied on {self.path}: your user may not use the control socket "
                "(ask an administrator to add you to the daemon's group, e.g. "
                "`usermod -aG exoctl $USER`, then log in again)"
            ) from None
        except OSError as e:
            s.close()
            if e.errno in (errno.ENOTSOCK, errno.ENOTDIR):
                raise DaemonNotRunning(f"{self.path} is not a control socket: {e}") from None
            raise ClientError(f"cannot connect to {self.path}: {e}") from None
        self._sock = s
        self._rfile = s.makefile("rb")
        return self

    def close(self) -> None:
        if self._rfile is not None:
            self._rfile.close()
        if self._sock is not None:
            self._sock.close()
        self._sock = self._rfile = None

    def __enter__(self) -> Client:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def call(self, method: str, params: dict[str, Any] | list[Any] | None = None) -> Any:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        rid = next(self._ids)
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        resp = self.send_raw(json.dumps(req).encode() + b"\n")
        if "error" in resp:
            self._raise(resp["error"])
        if resp.get("id") != rid:
            raise ProtocolError(f"response id {resp.get('id')!r} does not match {rid}")
        return resp.get("result")

    def send_raw(self, data: bytes) -> dict[str, Any]:
        """Send bytes as they are and read one response line (also used by tests)."""
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        try:
            self._sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the daemon may have answered and closed (refusal, oversized): read it
        except TimeoutError:
            raise ClientError(
                f"the daemon did not accept the request within {self.timeout_s} s"
            ) from None
        try:
            line = self._rfile.readline()
        except TimeoutError:
            raise ClientError(f"no answer from the daemon within {self.timeout_s} s") from None
        except ConnectionResetError:
            line = b""
        if not line:
            raise ProtocolError("the daemon closed the connection without an answer")
        try:
            resp = json.loads(line)
        except json.JSONDecodeError as e:
            raise ProtocolError(f"unreadable answer from the daemon: {e}") from None
        if not isinstance(resp, dict):
            raise ProtocolError("unexpected answer from the daemon (not an object)")
        if "error" in resp and resp["error"].get("code") == rpc.PERMISSION_DENIED:
            self._raise(resp["error"])
        return resp

    @staticmethod
    def _raise(err: dict[str, Any]) -> None:
        code = int(err.get("code", rpc.INTERNAL_ERROR))
        msg = str(err.get("message", "unknown error"))
        if code == rpc.PERMISSION_DENIED:
            raise PermissionDenied(f"permission denied by the daemon: {msg}")
        raise RemoteError(code, msg, err.get("data"))


def call(path: str | Path, method: str, params: Any = None, *, timeout_s: float = 10.0) -> Any:
    """Connect, call once, close."""
    with Client(path, timeout_s=timeout_s) as c:
        return c.call(method, params)
