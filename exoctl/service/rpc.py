"""JSON-RPC 2.0 over a Unix domain socket: the daemon's local control API.

Why a Unix socket: the kernel tells us who is on the other end (SO_PEERCRED), file modes and
the group add a second fence, and nothing listens on the network next to a patient.

Framing: one JSON document per line (UTF-8, ``\\n``-terminated) each way. A request line
longer than ``max_request_bytes`` gets a JSON-RPC error and the connection is closed; the
server and every other connection carry on.

Only the methods in an explicit table are callable (``methods_from`` reads a handler's
``RPC_METHODS`` mapping); nothing is looked up by name on arbitrary objects.

Threads: one acceptor and one thread per connection (bounded). Handler calls are serialised
by a lock, so the object behind them sees one supervisor request at a time. None of this
runs on, or waits for, the control thread.
"""

from __future__ import annotations

import contextlib
import grp
import inspect
import json
import os
import pwd
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000 to -32099).
REFUSED = -32000
"""The daemon understood the request and declines it (fault latched, no session, ...)."""
PERMISSION_DENIED = -32001
"""The peer's credentials are not among the allowed users and groups."""

DEFAULT_MAX_REQUEST_BYTES = 64 * 1024

log = structlog.get_logger("exoctl.rpc")


class RpcError(Exception):
    """Raised by a handler to return a specific JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            d["data"] = self.data
        return d


class InvalidParams(RpcError):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(INVALID_PARAMS, message, data)


class Refused(RpcError):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(REFUSED, message, data)


# ---------------------------------------------------------------------------------------
# credentials
@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int
    user: str | None
    groups: tuple[str, ...]


def peer_credentials(sock: socket.socket) -> PeerCredentials:
    """Who is connected: SO_PEERCRED (pid, uid, gid at connect time), plus the user's name
    and group names from the user database (supplementary groups via getgrouplist)."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    try:
        user: str | None = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    gids = {gid}
    if user is not None:
        with contextlib.suppress(OSError):
            gids.update(os.getgrouplist(user, gid))
    names = []
    for g in sorted(gids):
        try:
            names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    return PeerCredentials(pid, uid, gid, user, tuple(names))


def check_allowed(
    cred: PeerCredentials, allowed_users: Iterable[str], allowed_groups: Iterable[str]
) -> tuple[bool, str]:
    """(allowed, reason). A peer is allowed if its user or any of its groups is listed."""
    users = set(allowed_users)
    groups = set(allowed_groups)
    if cred.user is not None and cred.user in users:
        return True, f"user {cred.user} is allowed"
    hit = sorted(groups.intersection(cred.groups))
    if hit:
        return True, f"group {hit[0]} is allowed"
    who = cred.user if cred.user is not None else f"uid {cred.uid}"
    return False, (
        f"{who} (groups: {', '.join(cred.groups) or 'none'}) may not use this socket; "
        f"allowed users: {', '.join(sorted(users)) or 'none'}; "
        f"allowed groups: {', '.join(sorted(groups)) or 'none'}"
    )


# ---------------------------------------------------------------------------------------
# dispatch
def methods_from(handler: Any) -> dict[str, Callable[..., Any]]:
    """Bound methods for the names in ``handler.RPC_METHODS`` ({rpc name: attribute})."""
    table: Mapping[str, str] = handler.RPC_METHODS
    out = {}
    for rpc_name, attr in table.items():
        fn = getattr(handler, attr)
        if not callable(fn):
            raise TypeError(f"RPC method {rpc_name!r} -> {attr!r} is not callable")
        out[rpc_name] = fn
    return out


class Dispatcher:
    """Turns one decoded JSON value into a response (or None for notifications)."""

    def __init__(self, methods: Mapping[str, Callable[..., Any]]) -> None:
        self.methods = dict(methods)
        self._sigs = {name: inspect.signature(fn) for name, fn in self.methods.items()}
        self._lock = threading.Lock()

    def handle(self, msg: Any, context: dict[str, Any] | None = None) -> Any:
        if isinstance(msg, list):
            if not msg:
                return _error(None, INVALID_REQUEST, "empty batch")
            out = [r for r in (self._one(m, context) for m in msg) if r is not None]
            return out or None
        return self._one(msg, context)

    def _one(self, req: Any, context: dict[str, Any] | None) -> dict[str, Any] | None:
        if not isinstance(req, dict):
            return _error(None, INVALID_REQUEST, "a request must be a JSON object")
        rid = req.get("id")
        if not (rid is None or isinstance(rid, str | int | float)) or isinstance(rid, bool):
            return _error(None, INVALID_REQUEST, "id must be a string, number or null")
        if req.get("jsonrpc") != "2.0":
            return _error(rid, INVALID_REQUEST, 'missing "jsonrpc": "2.0"')
        method = req.get("method")
        if not isinstance(method, str):
            return _error(rid, INVALID_REQUEST, "method must be a string")
        is_notification = "id" not in req
        fn = self.methods.get(method)
        if fn is None:
            if is_notification:
                return None
            return _error(
                rid,
                METHOD_NOT_FOUND,
                f"unknown method {method!r}",
                {"methods": sorted(self.methods)},
            )
        params = req.get("params", {})
        if isinstance(params, list):
            args, kwargs = params, {}
        elif isinstance(params, dict):
            args, kwargs = [], params
        else:
            return _error(rid, INVALID_PARAMS, "params must be an object or an array")
        try:
            self._sigs[method].bind(*args, **kwargs)
        except TypeError as e:
            return _error(rid, INVALID_PARAMS, f"{method}: {e}")
        try:
            with self._lock:
                result = fn(*args, **kwargs)
            json.dumps(result)  # fail here, as an internal error, not mid-send
        except RpcError as e:
            resp = {"jsonrpc": "2.0", "id": rid, "error": e.to_dict()}
            return None if is_notification else resp
        except ValueError as e:
            # Handlers validate their parameters and raise ValueError with a message meant
            # for the caller (pydantic's ValidationError is one).
            return None if is_notification else _error(rid, INVALID_PARAMS, f"{method}: {e}")
        except Exception as e:
            log.exception("rpc_handler_failed", method=method)
            return (
                None
                if is_notification
                else _error(rid, INTERNAL_ERROR, f"{method} failed: {type(e).__name__}: {e}")
            )
        return None if is_notification else {"jsonrpc": "2.0", "id": rid, "result": result}


def _error(rid: Any, code: int, message: str, data: Any = None) -> dict[str, Any]:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return {"jsonrpc": "2.0", "id": rid, "error": err}


# ---------------------------------------------------------------------------------------
# server
def socket_in_use(path: str | Path) -> bool:
    """True if something accepts connections on ``path`` (another daemon is running)."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


class RpcServer:
    """Listens on ``path``; call ``start()``, later ``close()``."""

    def __init__(
        self,
        path: str | Path,
        methods: Mapping[str, Callable[..., Any]],
        *,
        allowed_users: Iterable[str] = (),
        allowed_groups: Iterable[str] = (),
        socket_group: str | None = None,
        mode: int = 0o660,
        max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
        max_connections: int = 16,
        idle_timeout_s: float = 300.0,
    ) -> None:
        self.path = Path(path)
        self.dispatcher = Dispatcher(methods)
        self.allowed_users = tuple(allowed_users)
        self.allowed_groups = tuple(allowed_groups)
        self.socket_group = socket_group
        self.mode = mode
        self.max_request_bytes = int(max_request_bytes)
        self.max_connections = int(max_connections)
        self.idle_timeout_s = float(idle_timeout_s)
        self._sock: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._closing = threading.Event()
        self.counters = {"connections": 0, "refused": 0, "requests": 0, "errors": 0}

    def start(self) -> RpcServer:
        self._sock = self._bind()
        self._thread = threading.Thread(target=self._accept_loop, name="exoctl-rpc", daemon=True)
        self._thread.start()
        return self

    def _bind(self) -> socket.socket:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists() or self.path.is_symlink():
            if socket_in_use(self.path):
                raise RuntimeError(f"another daemon is already listening on {self.path}")
            self.path.unlink()  # stale socket left by a killed daemon
        # Bind under a temporary name, set mode and group, then rename into place: there is
        # never a moment when the final path exists with looser permissions.
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(str(tmp))
            os.chmod(tmp, self.mode)
            if self.socket_group:
                try:
                    gid = grp.getgrnam(self.socket_group).gr_gid
                except KeyError:
                    log.warning(
                        "socket_group_missing", group=self.socket_group, path=str(self.path)
                    )
                else:
                    os.chown(tmp, -1, gid)
            os.rename(tmp, self.path)
            s.listen(8)
        except BaseException:
            s.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        s.settimeout(0.2)  # so the accept loop notices close()
        return s

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._closing.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                if self._closing.is_set():
                    return
                continue
            conn.settimeout(self.idle_timeout_s)
            with self._conns_lock:
                busy = len(self._conns) >= self.max_connections
                if not busy:
                    self._conns.add(conn)
            if busy:
                self._send_and_close(conn, _error(None, REFUSED, "too many connections"))
                continue
            threading.Thread(
                target=self._serve_conn, args=(conn,), name="exoctl-rpc-conn", daemon=True
            ).start()

    def _serve_conn(self, conn: socket.socket) -> None:
        self.counters["connections"] += 1
        try:
            try:
                cred = peer_credentials(conn)
            except OSError as e:
                self._send_and_close(conn, _error(None, PERMISSION_DENIED, f"no credentials: {e}"))
                return
            ok, reason = check_allowed(cred, self.allowed_users, self.allowed_groups)
            if not ok:
                self.counters["refused"] += 1
                log.warning("rpc_peer_refused", pid=cred.pid, uid=cred.uid, reason=reason)
                self._send_and_close(conn, _error(None, PERMISSION_DENIED, reason))
                return
            ctx = {"peer": cred}
            buf = bytearray()
            while not self._closing.is_set():
                nl = buf.find(b"\n")
                if nl < 0:
                    if len(buf) > self.max_request_bytes:
                        self._oversized(conn, cred)
                        return
                    try:
                        chunk = conn.recv(65536)
                    except (TimeoutError, OSError):
                        return
                    if not chunk:
                        return
                    buf += chunk
                    continue
                line = bytes(buf[:nl])
                del buf[: nl + 1]
                if len(line) > self.max_request_bytes:
                    self._oversized(conn, cred)
                    return
                if not line.strip():
                    continue
                resp = self._handle_line(line, ctx)
                if resp is not None and not self._send(conn, resp):
                    return
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _oversized(self, conn: socket.socket, cred: PeerCredentials) -> None:
        self.counters["errors"] += 1
        log.warning("rpc_request_too_large", pid=cred.pid, limit=self.max_request_bytes)
        self._send_and_close(
            conn,
            _error(
                None,
                INVALID_REQUEST,
                f"request larger than {self.max_request_bytes} bytes; connection closed",
            ),
        )

    def _handle_line(self, line: bytes, ctx: dict[str, Any]) -> Any:
        self.counters["requests"] += 1
        try:
            msg = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            self.counters["errors"] += 1
            return _error(None, PARSE_ERROR, f"parse error: {e}")
        resp = self.dispatcher.handle(msg, ctx)
        if isinstance(resp, dict) and "error" in resp:
            self.counters["errors"] += 1
        return resp

    def _send(self, conn: socket.socket, resp: Any) -> bool:
        try:
            conn.sendall(json.dumps(resp, separators=(",", ":")).encode() + b"\n")
            return True
        except OSError:
            return False

    def _send_and_close(self, conn: socket.socket, resp: Any) -> None:
        """Send a last response and close. Whatever the peer is still sending is drained
        for a bounded time first, so it reads our error rather than a reset."""
        self._send(conn, resp)
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_WR)
            conn.settimeout(0.2)
            drained = 0
            while drained < 4 * 1024 * 1024:
                chunk = conn.recv(65536)
                if not chunk:
                    break
                drained += len(chunk)
        with contextlib.suppress(OSError):
            conn.close()

    def close(self) -> None:
        self._closing.set()
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
