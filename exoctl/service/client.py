"""A small JSON-RPC client for the daemon's control socket, and the e-stop.

Its errors are written for the person at the terminal: "the daemon is not running" and "you
may not use the socket" are the two problems a clinician actually meets, and each says what
to do about it.

Retry: a daemon that is busy answers without reading the request (``BUSY``: every connection
slot is mid-request; ``CONNECTION_CLOSED``: an idle connection was closed; or the listen
queue is full), so sending it again cannot do anything twice. ``Client.call`` does that by
itself, with a growing pause (10 ms doubling to 250 ms), for up to ``retry_s`` (3 s by
default), then raises ``DaemonBusy``. Nothing else is retried: a request the daemon may have
read is never sent twice.

The e-stop (``estop``) goes to the e-stop socket beside the control socket, where connecting
is pressing; only if that socket is missing or fails does it fall back to the ``estop`` method
on the control socket.
"""

from __future__ import annotations

import errno
import itertools
import json
import random
import socket
import time
from pathlib import Path
from typing import Any

from exoctl.errors import ExoctlError
from exoctl.service.rpc import errors as rpc  # the codes; the package's server is not needed
from exoctl.service.rpc.sockets import ESTOP_METHOD, estop_listening, estop_socket_path

DEFAULT_RETRY_S = 3.0
FIRST_PAUSE_S = 0.01
MAX_PAUSE_S = 0.25


class ClientError(ExoctlError, RuntimeError):
    """Any failure to get an answer from the daemon."""


class DaemonNotRunning(ClientError):
    pass


class PermissionDenied(ClientError):
    pass


class ProtocolError(ClientError):
    pass


class DaemonBusy(ClientError):
    """The daemon turned the request away unread for longer than the retry allowed."""


class ControlSocketRestarting(DaemonBusy):
    """The daemon is alive (its e-stop socket listens) but its control socket is not there:
    the process serving it is being restarted. Not "the daemon is not running"."""


class _Retry(Exception):
    """Internal: the daemon did not read the request; send it again on a new connection.
    ``final``: the error to raise when retrying has lasted long enough (default DaemonBusy)."""

    def __init__(self, why: str, final: ClientError | None = None) -> None:
        super().__init__(why)
        self.why = why
        self.final = final


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
    """One connection (re-opened when the daemon turns a request away unread); ``call()``
    sends a request and waits for its response."""

    def __init__(
        self, path: str | Path, *, timeout_s: float = 10.0, retry_s: float = DEFAULT_RETRY_S
    ) -> None:
        self.path = Path(path)
        self.timeout_s = timeout_s
        self.retry_s = retry_s
        self._sock: socket.socket | None = None
        self._rfile: Any = None
        self._ids = itertools.count(1)

    def connect(self) -> Client:
        """Connect, retrying while the daemon's listen queue is full (within ``retry_s``)."""
        self._with_retry(self._connect_once)
        return self

    def _connect_once(self) -> None:
        try:
            self._sock = _connect(self.path, self.timeout_s)
        except DaemonNotRunning:
            if not estop_listening(self.path):
                raise
            # The daemon is alive; the process serving its control socket is restarting
            # (about a second): wait for it within the retry time, then say so.
            raise _Retry(
                "its control socket is restarting",
                ControlSocketRestarting(
                    f"the daemon is running (its e-stop socket listens) but its control socket "
                    f"{self.path} is restarting; retry in a few seconds (`exoctl estop` works "
                    "meanwhile). If this persists, see the daemon's journal"
                ),
            ) from None
        self._rfile = self._sock.makefile("rb")

    def _with_retry(self, fn: Any) -> Any:
        deadline = time.monotonic() + self.retry_s
        pause = FIRST_PAUSE_S
        while True:
            try:
                return fn()
            except _Retry as e:
                self.close()
                if time.monotonic() + pause > deadline:
                    if e.final is not None:
                        raise e.final from None
                    raise DaemonBusy(
                        f"the daemon at {self.path} is busy ({e.why}); gave up after "
                        f"{self.retry_s:g} s of retrying. Try again; if it persists, "
                        "something is holding its control socket (see its journal)"
                    ) from None
                time.sleep(pause * random.uniform(0.5, 1.0))
                pause = min(2 * pause, MAX_PAUSE_S)

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
        rid = next(self._ids)
        req: dict[str, Any] = {"jsonrpc": "2.0", "id": rid, "method": method}
        if params is not None:
            req["params"] = params
        data = json.dumps(req).encode() + b"\n"

        def once() -> dict[str, Any]:
            if self._sock is None:
                self._connect_once()
            resp = self.send_raw(data)
            err = resp.get("error")
            if (
                resp.get("id") is None
                and isinstance(err, dict)
                and err.get("code") in rpc.RETRYABLE
            ):
                raise _Retry(str(err.get("message")))
            return resp

        resp = self._with_retry(once)
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
        return _read_answer(self._rfile, self.timeout_s)

    @staticmethod
    def _raise(err: dict[str, Any]) -> None:
        code = int(err.get("code", rpc.INTERNAL_ERROR))
        msg = str(err.get("message", "unknown error"))
        if code == rpc.PERMISSION_DENIED:
            raise PermissionDenied(f"permission denied by the daemon: {msg}")
        raise RemoteError(code, msg, err.get("data"))


def call(
    path: str | Path,
    method: str,
    params: Any = None,
    *,
    timeout_s: float = 10.0,
    retry_s: float = DEFAULT_RETRY_S,
) -> Any:
    """Connect, call once (retrying while the daemon is busy), close."""
    with Client(path, timeout_s=timeout_s, retry_s=retry_s) as c:
        return c.call(method, params)


def estop(
    path: str | Path, *, timeout_s: float = 5.0, retry_s: float = DEFAULT_RETRY_S
) -> dict[str, Any]:
    """Press the e-stop; ``path`` is the control socket. Returns the daemon's answer.

    Through the e-stop socket beside it (``rpc.estop_socket_path``), which no other client
    can hold up: connecting is pressing, the answer is one line. If that socket is missing
    (an older daemon) or gives no answer, the ``estop`` method on the control socket."""
    epath = estop_socket_path(path)
    deadline = time.monotonic() + retry_s
    first: ClientError | None = None
    while True:
        try:
            s = _connect(epath, timeout_s)
        except _Retry:  # its listen queue is full: someone is flooding it; keep pressing
            if time.monotonic() < deadline:
                time.sleep(FIRST_PAUSE_S)
                continue
            first = DaemonBusy(f"the e-stop socket {epath} did not accept a connection")
            break
        except PermissionDenied:
            raise
        except ClientError as e:
            first = e
            break
        try:
            with s, s.makefile("rb") as f:
                resp = _read_answer(f, timeout_s)
        except PermissionDenied:
            raise
        except ClientError as e:
            first = e
            break
        if "error" in resp:
            Client._raise(resp["error"])
        result: dict[str, Any] = resp.get("result") or {}
        return result
    try:
        return call(path, ESTOP_METHOD, timeout_s=timeout_s, retry_s=retry_s)
    except DaemonNotRunning:
        if isinstance(first, DaemonNotRunning):
            raise
        raise first from None


def _connect(path: Path, timeout_s: float) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout_s)
    try:
        s.connect(str(path))
    except FileNotFoundError:
        s.close()
        raise DaemonNotRunning(
            f"the exoctl daemon is not running: no control socket at {path} "
            "(start it with `systemctl start exoctl`, or check service.socket_path)"
        ) from None
    except ConnectionRefusedError:
        s.close()
        raise DaemonNotRunning(
            f"the exoctl daemon is not running: nobody listens on {path} "
            "(a stale socket; start it with `systemctl start exoctl`)"
        ) from None
    except PermissionError:
        s.close()
        raise PermissionDenied(
            f"permission denied on {path}: your user may not use the control socket "
            "(ask an administrator to add you to the daemon's group, e.g. "
            "`usermod -aG exoctl $USER`, then log in again)"
        ) from None
    except BlockingIOError:
        # EAGAIN: the listen queue is full (a socket with a timeout connects non-blocking).
        s.close()
        raise _Retry("its listen queue is full") from None
    except TimeoutError:
        s.close()
        raise ClientError(f"{path} did not accept a connection within {timeout_s} s") from None
    except OSError as e:
        s.close()
        if e.errno in (errno.ENOTSOCK, errno.ENOTDIR):
            raise DaemonNotRunning(f"{path} is not a control socket: {e}") from None
        if e.errno == errno.EAGAIN:
            raise _Retry("its listen queue is full") from None
        raise ClientError(f"cannot connect to {path}: {e}") from None
    return s


def _read_answer(rfile: Any, timeout_s: float) -> dict[str, Any]:
    """One response line, checked to be a JSON object."""
    try:
        line = rfile.readline()
    except TimeoutError:
        raise ClientError(f"no answer from the daemon within {timeout_s} s") from None
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
    if "error" in resp and (resp["error"] or {}).get("code") == rpc.PERMISSION_DENIED:
        Client._raise(resp["error"])
    return resp
