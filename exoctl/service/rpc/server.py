"""The control and e-stop socket server: accepting, admitting or evicting connections, one
thread per connection reading bounded request lines, and the e-stop socket's own thread with
its protocol (*connecting is pressing*: nothing is ever read from a client, so no client, slow
or silent, can stall the thread that answers it).

What it enforces and why is in the package docstring (``exoctl.service.rpc``). Near 500 lines
because it is one class whose threads (acceptor, connections, e-stop) share its connection
table, counters, peer check and pacing; decoding, dispatch and binding live beside it."""

from __future__ import annotations

import contextlib
import math
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from exoctl.service.rpc.credentials import check_allowed, peer_credentials
from exoctl.service.rpc.decode import decode_request
from exoctl.service.rpc.dispatch import (
    ESTOP_METHOD,
    Dispatcher,
    encode_error,
    internal_error,
    is_single_estop,
)
from exoctl.service.rpc.errors import (
    BUSY,
    CONNECTION_CLOSED,
    INTERNAL_ERROR,
    INVALID_REQUEST,
    PERMISSION_DENIED,
    RpcError,
)
from exoctl.service.rpc.limits import Limits
from exoctl.service.rpc.pacing import Pacer, TokenBucket
from exoctl.service.rpc.sockets import bind_socket, estop_socket_path, send_nowait

GATED_LINE_BYTES = 1024
"""Lines longer than this are parsed inside the server's gated work section (a CLI request
is 50-300 bytes and parses in microseconds; 16 KiB take a few hundred)."""
MAX_ESTOP_ROUND = 1024
"""At most this many waiting connections are answered by one press of the e-stop socket."""
log = structlog.get_logger("exoctl.rpc")

IDLE, READING, WORKING = "idle", "reading", "working"


class _Conn:
    """One control-socket connection and what it is doing (guarded by the server's lock)."""

    __slots__ = ("sock", "state", "since", "closed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = IDLE
        self.since = time.monotonic()
        self.closed = False  # evicted or timed out: whatever it sends next is not read


class RpcServer:
    """Listens on ``path`` (and on its e-stop socket if the table has ``estop``); call
    ``start()``, later ``close()``.

    ``sockets``: ``"both"``, or one of them: the daemon serves its e-stop socket itself
    (``"estop"``) and leaves the control socket to its own process (``"control"``, with a
    ``dispatcher`` that relays calls: ``exoctl.service.rpc.relay``)."""

    def __init__(
        self,
        path: str | Path,
        methods: Mapping[str, Callable[..., Any]],
        *,
        allowed_users: Iterable[str] = (),
        allowed_groups: Iterable[str] = (),
        socket_group: str | None = None,
        mode: int = 0o660,
        limits: Limits | None = None,
        concurrent: Iterable[str] = (),
        cached: Mapping[str, float] | None = None,
        gate: Callable[[], None] | None = None,
        max_request_bytes: int | None = None,
        dispatcher: Any = None,
        sockets: str = "both",
    ) -> None:
        if sockets not in ("both", "control", "estop"):
            raise ValueError(f"sockets: {sockets!r}; allowed: both, control, estop")
        self.sockets = sockets
        self.path = Path(path)
        self.limits = limits or Limits()
        if max_request_bytes is not None:
            self.limits = Limits(**{**asdict(self.limits), "max_request_bytes": max_request_bytes})
        self.gate = gate
        self._pacer = Pacer(
            self.limits.requests_per_s,
            self.limits.request_burst,
            gate,
            cpu_share=self.limits.request_cpu_share,
            cpu_burst_s=self.limits.request_cpu_burst_s,
        )
        self._pace = self._pacer.pace
        self._accepts = TokenBucket(self.limits.connections_per_s, self.limits.connection_burst)
        self.dispatcher = dispatcher or Dispatcher(
            methods, concurrent=concurrent, cached=cached, pace=self._pace
        )
        self.estop_path = (
            estop_socket_path(path)
            if sockets != "control" and ESTOP_METHOD in self.dispatcher.methods
            else None
        )
        self.allowed_users = tuple(allowed_users)
        self.allowed_groups = tuple(allowed_groups)
        self.socket_group = socket_group
        self.mode = mode
        self._sock: socket.socket | None = None
        self._estop_sock: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._conns: set[_Conn] = set()
        self._conns_lock = threading.Lock()
        self._names: dict[tuple[int, int], tuple[float, Any]] = {}
        self._warned: dict[str, tuple[float, int]] = {}
        self._closing = threading.Event()
        self.counters = {
            "connections": 0,
            "refused": 0,
            "requests": 0,
            "errors": 0,
            "busy": 0,
            "evicted": 0,
            "estops": 0,
            "crashes": 0,  # exceptions that escaped the dispatcher: always a bug
        }

    # ------------------------------------------------------------------ listening
    def start(self) -> RpcServer:
        self._warm_up()
        if self.sockets != "estop":
            self._sock = bind_socket(self.path, self.mode, self.socket_group, probe=True)
        if self.estop_path is not None:
            try:
                self._estop_sock = bind_socket(
                    self.estop_path, self.mode, self.socket_group, probe=False
                )
            except BaseException:
                if self._sock is not None:
                    self._sock.close()
                    with contextlib.suppress(FileNotFoundError):
                        self.path.unlink()
                raise
        for target, name in (
            *(((self._accept_loop, "exoctl-rpc"),) if self._sock is not None else ()),
            *(((self._estop_loop, "exoctl-rpc-estop"),) if self._estop_sock is not None else ()),
        ):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _warn(self, event: str, **kw: Any) -> None:
        """A warning about a client, at most one per event a second (with how many were not
        logged): 64 connections timing out together must not become 64 synchronous log
        writes while the e-stop waits for the interpreter, nor flood the journal."""
        now = time.monotonic()
        last, quiet = self._warned.get(event, (-math.inf, 0))
        if now - last < 1.0:
            self._warned[event] = (last, quiet + 1)
            return
        self._warned[event] = (now, 0)
        log.warning(event, **kw, **({"not_logged_since": quiet} if quiet else {}))

    def _warm_up(self) -> None:
        """Pay the first-use costs (the user database's modules loaded, our own names looked
        up, the parser's first call) now, before any client, not on a client's first request
        while the control loop runs."""
        a, b = socket.socketpair(socket.AF_UNIX)
        with a, b, contextlib.suppress(Exception):
            check_allowed(peer_credentials(a, self._names), self.allowed_users, self.allowed_groups)
            decode_request(b'[{"jsonrpc":"2.0","id":1,"method":"status","params":[0.5]}]')

    def _accept(self, s: socket.socket) -> socket.socket | None:
        try:
            conn, _ = s.accept()
        except TimeoutError:
            return None
        except OSError:
            if not self._closing.is_set():
                time.sleep(0.01)  # e.g. EMFILE: do not spin
            return None
        return conn

    # ------------------------------------------------------------------ control socket
    def _accept_loop(self) -> None:
        """Accept, admit or turn away at once; never reads from or waits for a client."""
        assert self._sock is not None
        cpu0 = time.thread_time()
        while not self._closing.is_set():
            sock = self._accept(self._sock)
            if sock is None:
                continue
            now = time.thread_time()  # what the last admission cost, thread start included
            self._pacer.charge(now - cpu0)
            cpu0 = now
            self._accepts.take(1.0)  # a flood of connections waits in the listen queue
            # (not for the CPU budget, which its cost is charged to: an e-stop sent on this
            # socket must not wait in the listen queue for other clients' debt)
            if self.gate is not None:  # its thread starts in the loop's idle time
                with contextlib.suppress(Exception):
                    self.gate()
            conn = _Conn(sock)
            victim = None
            with self._conns_lock:
                if len(self._conns) >= self.limits.max_connections:
                    idle = [c for c in self._conns if c.state == IDLE]
                    if idle:
                        victim = min(idle, key=lambda c: c.since)
                        victim.closed = True
                        self._conns.discard(victim)
                admitted = len(self._conns) < self.limits.max_connections
                if admitted:
                    self._conns.add(conn)
            if victim is not None:
                self.counters["evicted"] += 1
                self._close_idle(victim, "evicted: every connection slot was taken")
            if not admitted:
                self.counters["busy"] += 1
                send_nowait(
                    sock,
                    encode_error(
                        None,
                        BUSY,
                        f"the daemon is busy: all {self.limits.max_connections} connections "
                        "are mid-request; nothing was done, connect again",
                    ),
                )
                with contextlib.suppress(OSError):
                    sock.close()
                continue
            threading.Thread(
                target=self._serve_conn, args=(conn,), name="exoctl-rpc-conn", daemon=True
            ).start()

    @staticmethod
    def _close_idle(conn: _Conn, why: str) -> None:
        """Tell an idle connection it is closed, then wake its thread (which closes it)."""
        send_nowait(
            conn.sock,
            encode_error(
                None, CONNECTION_CLOSED, f"connection closed by the daemon ({why}); reconnect"
            ),
        )
        with contextlib.suppress(OSError):
            conn.sock.shutdown(socket.SHUT_RDWR)

    def _set_state(self, conn: _Conn, state: str) -> bool:
        """False once the connection was closed by the acceptor (then nothing more is read)."""
        with self._conns_lock:
            if conn.closed:
                return False
            conn.state = state
            conn.since = time.monotonic()
            return True

    def _serve_conn(self, conn: _Conn) -> None:
        cpu0 = time.thread_time()  # this thread's CPU, charged to the budget request by request
        self.counters["connections"] += 1
        sock = conn.sock
        lim = self.limits
        try:
            ctx: dict[str, Any] = {}  # "peer": checked at the first request, in its paced turn
            buf = bytearray()
            deadline: float | None = None  # of the request being received
            while not self._closing.is_set():
                nl = buf.find(b"\n")
                if nl >= 0:
                    line = bytes(buf[:nl])
                    del buf[: nl + 1]
                    if not self._set_state(conn, WORKING):
                        return
                    if line.strip():
                        resp = self._handle_line(line, ctx, sock)
                        sent = resp is None or self._send(sock, resp)
                        now = time.thread_time()
                        self._pacer.charge(now - cpu0)
                        cpu0 = now
                        if not sent:
                            return
                        if ctx.get("denied") or len(line) > lim.max_request_bytes:
                            return  # the reply said why: nothing more is read
                    deadline = time.monotonic() + lim.request_timeout_s if buf else None
                    if not self._set_state(conn, READING if buf else IDLE):
                        return
                    continue
                if len(buf) > lim.max_request_bytes:  # no newline in sight: refuse it now
                    self._send(sock, self._handle_line(bytes(buf), ctx, sock) or b"")
                    return
                now = time.monotonic()
                wait = lim.idle_timeout_s if deadline is None else deadline - now
                try:
                    if wait <= 0:
                        raise TimeoutError
                    sock.settimeout(wait)
                    chunk = sock.recv(65536)
                except TimeoutError:
                    if deadline is None:
                        if self._set_state(conn, IDLE):
                            with self._conns_lock:
                                conn.closed = True
                            self._close_idle(conn, f"idle for {lim.idle_timeout_s:g} s")
                        return
                    self.counters["errors"] += 1
                    self._warn("rpc_request_timeout", limit=lim.request_timeout_s)
                    self._send(
                        sock,
                        encode_error(
                            None,
                            INVALID_REQUEST,
                            f"request not completed within {lim.request_timeout_s:g} s of its "
                            "first byte (end each request with a newline); connection closed",
                            {"limit": "request_timeout_s", "max": lim.request_timeout_s},
                        ),
                    )
                    return
                except OSError:
                    return
                if not chunk:
                    return
                if deadline is None:
                    deadline = time.monotonic() + lim.request_timeout_s
                if not self._set_state(conn, READING):
                    return  # evicted while the request arrived: its reply said "reconnect"
                buf += chunk
        except Exception:  # nothing a client sends may end here; log it if it does
            self.counters["crashes"] += 1
            log.exception("rpc_connection_failed")
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                sock.close()
            self._pacer.charge(time.thread_time() - cpu0)

    def _handle_line(self, line: bytes, ctx: dict[str, Any], sock: socket.socket) -> bytes | None:
        """Never raises: whatever the line holds, the answer is a reply or nothing.

        Order: parse (a long line in the gated work section), wait for this request's turn
        (``_pace``; not for an e-stop), check the peer's credentials (first request only),
        then answer the parse error or dispatch."""
        self.counters["requests"] += 1
        msg: Any = None
        error: RpcError | None = None
        try:
            if len(line) > self.limits.max_request_bytes:  # refused unread, in its turn
                self._pace()
                decode_request(line, self.limits)
            elif len(line) > GATED_LINE_BYTES:
                with self._pacer.work(1.0 + len(line) / 4096):
                    msg = decode_request(line, self.limits)
            else:
                msg = decode_request(line, self.limits)
                if not is_single_estop(msg):
                    self._pace()
        except RpcError as e:
            error = e
        if "peer" not in ctx:
            denied = self._check_peer(sock, ctx, "rpc_peer_refused")
            if denied is not None:
                return denied
        if error is not None:
            self.counters["errors"] += 1
            data = error.data
            if isinstance(data, dict) and data.get("limit") == "max_request_bytes":
                self._warn("rpc_request_too_large", pid=ctx["peer"].pid, limit=data["max"])
                return encode_error(None, error.code, error.message + "; connection closed", data)
            return encode_error(None, error.code, error.message, data)
        try:
            return self.dispatcher.handle(msg, ctx)
        except Exception as e:
            self.counters["crashes"] += 1
            log.exception("rpc_dispatch_failed")
            return internal_error(e)

    def _check_peer(self, sock: socket.socket, ctx: dict[str, Any], event: str) -> bytes | None:
        """None if the peer may use the socket (its credentials go into ``ctx["peer"]``), else
        the refusal to send before closing (``ctx["denied"]`` set, ``event`` logged). One check
        for both sockets: the control socket at a connection's first request, the e-stop
        socket for each connection it answers."""
        cred = None
        try:
            cred = peer_credentials(sock, self._names)
            ok, reason = check_allowed(cred, self.allowed_users, self.allowed_groups)
        except OSError as e:
            ok, reason = False, f"no credentials: {e}"
        if ok:
            ctx["peer"] = cred
            return None
        ctx["denied"] = True
        self.counters["refused"] += 1
        self._warn(
            event, pid=getattr(cred, "pid", None), uid=getattr(cred, "uid", None), reason=reason
        )
        return encode_error(None, PERMISSION_DENIED, reason)

    def _send(self, sock: socket.socket, data: bytes) -> bool:
        """A reply, which the peer must read within ``send_timeout_s``."""
        try:
            sock.settimeout(self.limits.send_timeout_s)
            sock.sendall(data + b"\n")
            return True
        except OSError:
            return False

    # ------------------------------------------------------------------ e-stop socket
    def _estop_loop(self) -> None:
        """Each round: every connection waiting is one press, answered once for all of them
        (``_answer_presses``); connections that arrive meanwhile are the next round."""
        assert self._estop_sock is not None
        while not self._closing.is_set():
            first = self._accept(self._estop_sock)
            if first is not None:
                self._answer_presses(_drain_waiting(self._estop_sock, first))

    def _answer_presses(self, waiting: list[socket.socket]) -> None:
        """Press the e-stop as soon as one allowed peer is found among ``waiting``, once for all
        of them (each connected before that call started); each gets the answer, refused peers
        a refusal; then each is closed."""
        resp: bytes | None = None
        for s in waiting:
            refused = self._check_peer(s, {}, "rpc_estop_refused")
            if refused is not None:
                send_nowait(s, refused)
            else:
                if resp is None:
                    resp = self._press_estop()
                send_nowait(s, resp)
            s.close()

    def _press_estop(self) -> bytes:
        self.counters["estops"] += 1
        try:
            resp = self.dispatcher.handle({"jsonrpc": "2.0", "id": None, "method": ESTOP_METHOD})
        except Exception as e:  # the dispatcher maps handler errors; this is a last guard
            resp = internal_error(e)
        return resp or encode_error(None, INTERNAL_ERROR, "the e-stop gave no answer")

    # ------------------------------------------------------------------ closing
    def close(self) -> None:
        self._closing.set()
        for s in (self._sock, self._estop_sock):
            if s is not None:
                with contextlib.suppress(OSError):
                    s.close()
        for t in self._threads:
            t.join(2.0)
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_RDWR)
        for p in (self.path if self._sock is not None else None, self.estop_path):
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drain_waiting(listener: socket.socket, first: socket.socket) -> list[socket.socket]:
    """``first`` and every connection already waiting in the listen queue (non-blocking).

    ``listener`` is left with the 0.2 s timeout the accept loops poll with."""
    waiting = [first]
    listener.setblocking(False)
    try:
        while len(waiting) < MAX_ESTOP_ROUND:
            waiting.append(listener.accept()[0])
    except OSError:  # BlockingIOError: the queue is empty
        pass
    finally:
        listener.settimeout(0.2)
    return waiting
