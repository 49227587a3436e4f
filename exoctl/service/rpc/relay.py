"""The control socket served by its own process (the *front*), the handlers run in the daemon.

Why a second process: the daemon's control loop is a Python thread, and any thread of the
same process that holds the interpreter (the GIL) when a tick is due delays that tick. The
control socket's threads hold it in many short moments that no gate can all place: a
connection's thread started and ended, its reads, its replies, a line parsed, a credential
looked up. Measured with the server in the daemon, 8 clients flooding ``status`` moved the
loop's start-error p99 from 0.3 to 0.9-1.4 ms even with every request gated and budgeted.
In the front, none of that shares the loop's interpreter; the daemon sees one decoded call at
a time per channel, started just after a tick.

What stays in the daemon: the e-stop socket (connecting presses it; it works when the front
is gone), the method table, the reply cache and the handlers' lock (``Dispatcher``). What the
front does: accepting, admitting, reading, every limit, credentials, pacing and the CPU budget
(``RpcServer`` with a ``RelayDispatcher``), at a lower CPU priority than the daemon. This
module is the daemon's side and the channels' framing; the front process's body is
``exoctl.service.rpc.front``.

Between the two: three socket pairs, one per channel, each carrying one call at a time
(a 4-byte length, then the call's JSON; back, the encoded reply or nothing). ``estop``
carries any line with an e-stop (never gated, never behind another call), ``read`` the
methods that only read (``status``), ``write`` the rest: a ``status`` does not wait behind a
session's ramp-out, as with the in-process server. If the front exits, the daemon starts
another after a second and logs it; the control loop and the e-stop socket are not touched.
"""

from __future__ import annotations

import contextlib
import json
import select
import signal
import socket
import struct
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import structlog

from exoctl.runtime.children import stop_children
from exoctl.service.rpc.dispatch import (
    encode_error,
    encode_json,
    has_estop,
    internal_error,
    is_single_estop,
)
from exoctl.service.rpc.errors import INTERNAL_ERROR
from exoctl.service.rpc.limits import Limits

log = structlog.get_logger("exoctl.rpc")

CHANNELS = ("estop", "read", "write")
FRONT_NICE = 5
"""The front's niceness: under CPU contention the daemon's own threads (the pump, the
recorder) go first; the loop and its inputs are SCHED_FIFO where granted, above both."""
START_TIMEOUT_S = 30.0
RESTART_DELAY_S = 1.0
_LEN = struct.Struct(">I")
_MAX_FRAME = 64 << 20


def send_frame(sock: socket.socket, payload: bytes) -> None:
    sock.sendall(_LEN.pack(len(payload)) + payload)


def recv_frame(sock: socket.socket) -> bytes | None:
    """One frame, or None when the other end has closed."""
    head = _recv_exact(sock, _LEN.size)
    if head is None:
        return None
    (n,) = _LEN.unpack(head)
    if n > _MAX_FRAME:
        raise OSError(f"relay frame of {n} bytes")
    return _recv_exact(sock, n) if n else b""


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


class RelayDispatcher:
    """The front's dispatcher: each decoded call goes to the daemon on its channel and the
    daemon's encoded reply comes back. One call at a time per channel (a lock each)."""

    def __init__(self, socks: dict[str, socket.socket], read_methods: Iterable[str]) -> None:
        self.methods: dict[str, Any] = {}  # the table is the daemon's; the front has none
        self._socks = socks
        self._read = frozenset(read_methods)
        self._locks = {ch: threading.Lock() for ch in socks}

    def channel(self, msg: Any) -> str:
        if has_estop(msg):
            return "estop"
        if isinstance(msg, dict) and msg.get("method") in self._read:
            return "read"
        return "write"

    def handle(self, msg: Any, context: dict[str, Any] | None = None) -> bytes | None:
        ch = self.channel(msg)
        payload = encode_json(msg)
        try:
            with self._locks[ch]:
                send_frame(self._socks[ch], payload)
                reply = recv_frame(self._socks[ch])
        except OSError as e:
            reply = None
            log.error("relay_failed", channel=ch, error=str(e))
        if reply is None:
            rid = msg.get("id") if isinstance(msg, dict) else None
            return encode_error(
                rid, INTERNAL_ERROR, "the daemon did not answer (it is stopping or has stopped)"
            )
        return reply or None


class Front:
    """The daemon's side: starts the front process, serves its calls (one thread per channel,
    each call after ``gate`` unless it is a lone e-stop), restarts it if it exits."""

    def __init__(
        self,
        path: str | Path,
        handle: Callable[[Any], bytes | None],
        *,
        gate: Callable[[], None] | None = None,
        read_methods: Iterable[str] = (),
        limits: Limits | None = None,
        allowed_users: Iterable[str] = (),
        allowed_groups: Iterable[str] = (),
        socket_group: str | None = None,
        mode: int = 0o660,
    ) -> None:
        self.path = Path(path)
        self._handle = handle
        self._gate = gate
        self._spec = {
            "path": str(self.path),
            "read_methods": sorted(read_methods),
            "limits": asdict(limits or Limits()),
            "allowed_users": list(allowed_users),
            "allowed_groups": list(allowed_groups),
            "socket_group": socket_group,
            "mode": mode,
        }
        self._closing = threading.Event()
        self._proc: subprocess.Popen[bytes] | None = None
        self._socks: list[socket.socket] = []
        self._lock = threading.Lock()
        self.restarts = 0

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> Front:
        """Start the front and wait until it listens; raises RuntimeError with its reason."""
        self._spawn()
        threading.Thread(target=self._supervise, name="exoctl-rpc-front", daemon=True).start()
        return self

    def _spawn(self, restart: bool = False) -> None:
        ours, theirs = {}, {}
        for ch in CHANNELS:
            a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            ours[ch], theirs[ch] = a, b
        spec = {**self._spec, "fds": {ch: s.fileno() for ch, s in theirs.items()}}
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "exoctl.service.rpc.front", json.dumps(spec)],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                pass_fds=[s.fileno() for s in theirs.values()],
            )
        finally:
            for s in theirs.values():
                s.close()
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
        line = proc.stdout.readline().decode(errors="replace").strip() if ready else ""
        if line != "ready":
            with contextlib.suppress(OSError):
                proc.kill()
            proc.wait(10)
            for s in ours.values():
                s.close()
            why = line.removeprefix("error: ") or f"no answer in {START_TIMEOUT_S:g} s"
            raise RuntimeError(f"the control socket's process did not start: {why}")
        proc.stdout.close()  # it said all it will say
        with self._lock:
            self._proc = proc
            self._socks = list(ours.values())
            self.restarts += restart  # counted before the new front's first call is served
        for ch, s in ours.items():
            threading.Thread(
                target=self._serve, args=(ch, s), name=f"exoctl-rpc-{ch}", daemon=True
            ).start()

    def _serve(self, ch: str, sock: socket.socket) -> None:
        """One call at a time: decode, wait for the gate (not for a lone e-stop), dispatch,
        answer. Returns when the front closes its end."""
        while True:
            try:
                payload = recv_frame(sock)
            except OSError:
                payload = None
            if payload is None:
                return
            try:
                msg = json.loads(payload)
                if self._gate is not None and not is_single_estop(msg):
                    self._gate()
                reply = self._handle(msg)
            except Exception as e:  # the dispatcher maps handler errors; a last guard
                log.exception("relay_call_failed", channel=ch)
                reply = internal_error(e)
            try:
                send_frame(sock, reply or b"")
            except OSError:
                return

    def _supervise(self) -> None:
        while not self._closing.is_set():
            proc = self._proc
            if proc is None:
                return
            code = proc.wait()
            if self._closing.is_set():
                return
            log.error(
                "rpc_front_exited", pid=proc.pid, exit_code=code, restart_in_s=RESTART_DELAY_S
            )
            self._close_socks()
            while not self._closing.wait(RESTART_DELAY_S):
                try:
                    self._spawn(restart=True)
                except Exception as e:
                    log.error("rpc_front_restart_failed", error=str(e))
                    continue
                log.info("rpc_front_restarted", pid=self.pid, restarts=self.restarts)
                break

    def _close_socks(self) -> None:
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            with contextlib.suppress(OSError):
                s.close()

    def close(self) -> None:
        """Stop the front (it closes and removes the control socket), then its channels."""
        self._closing.set()
        proc = self._proc
        stop_children([proc], term_wait_s=5.0)
        self._close_socks()
        with contextlib.suppress(FileNotFoundError):
            if proc is not None and proc.returncode not in (0, -signal.SIGTERM):
                self.path.unlink()  # a killed front leaves its socket behind
