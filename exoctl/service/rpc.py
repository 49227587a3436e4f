"""JSON-RPC 2.0 over Unix domain sockets: the daemon's local control API.

Why a Unix socket: the kernel tells us who is on the other end (SO_PEERCRED), file modes and
the group add a second fence, and nothing listens on the network next to a patient.

Two sockets, side by side (same mode, group and allowed peers):

* the **control socket** (``service.socket_path``): every method in an explicit table
  (``methods_from`` reads a handler's ``RPC_METHODS``; nothing is looked up by name on
  arbitrary objects). One JSON document per line (UTF-8, ``\\n``-terminated) each way.
* the **e-stop socket** (``estop_socket_path``: ``control.sock`` -> ``control.estop.sock``):
  *connecting is pressing the e-stop*. The daemon reads nothing from it, so no client, slow
  or silent, can hold it up: its one thread accepts every connection waiting, checks each
  peer, calls the handler's ``estop`` once for all of them, and answers each with one line
  (``{"jsonrpc":"2.0","id":null,"result":...}``) before closing it. Nothing else shares its
  thread, its listen queue or its slots.

Bounds on the control socket (``Limits``; each is answered with a JSON-RPC error, the
connection is closed only when the line itself cannot be trusted: too long or too slow):

* a request line of at most ``max_request_bytes``, completed within ``request_timeout_s`` of
  its first byte (a client trickling bytes loses its connection, nobody else waits for it);
* at most ``max_batch`` calls per batch, ``max_depth`` levels of nesting, ``max_items``
  values in all, ``max_number_digits`` digits in a number; NaN, Infinity and floats that
  overflow are refused. These are checked on the raw bytes before the parser runs, and a
  batch is refused at its first call too many, so a hostile line costs about as much as a
  well-formed one of the same size;
* ``max_connections`` connections. When all are taken, a new one evicts the connection idle
  longest (connected, no request in progress); if every one is mid-request the newcomer gets
  ``BUSY``. Evicted and idle-timed-out connections get ``CONNECTION_CLOSED``. Both mean
  "nothing was done, connect again", which ``exoctl.service.client`` does by itself;
* replies must be read within ``send_timeout_s``;
* requests are taken at most ``requests_per_s`` a second (a burst of ``request_burst``; a
  line costs one plus one per 4 KiB), one at a time, each just after a control tick (the
  daemon's ``gate``), and connections at most ``connections_per_s``. Beyond that a client
  waits (in the listen queue, or for its turn), it is not refused; the e-stop never waits.

The acceptor never reads from, writes blocking to, or waits for a client.

Threads and the control loop: one thread per connection. Handler calls are serialised by a
lock, so the object behind them sees one supervisor request at a time, except methods named
``concurrent`` (the e-stop always is: it must never wait behind a session's ramp-out).
Methods named in ``cached`` (``status``) are built at most once per their time to live and
their encoded reply reused by every caller meanwhile; any other call invalidates them. So a
flood of ``status`` costs one build per period, not one per call. None of this runs on the
control thread.
"""

from __future__ import annotations

import collections
import contextlib
import grp
import inspect
import json
import math
import os
import pwd
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import structlog

from exoctl.errors import ExoctlError

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
BUSY = -32002
"""Every connection slot is mid-request; nothing was read or done. Connect again shortly."""
CONNECTION_CLOSED = -32003
"""The daemon closed this idle connection (evicted for a newcomer, or idle too long) without
reading a request from it; nothing was done. Connect again."""
RETRYABLE = (BUSY, CONNECTION_CLOSED)
"""Errors that say the request was never read: safe to send again on a new connection."""

ESTOP_METHOD = "estop"


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the control socket (see the module docstring)."""

    max_request_bytes: int = 16 * 1024
    max_batch: int = 32
    max_depth: int = 32
    max_number_digits: int = 40
    max_items: int = 4096
    max_connections: int = 64
    request_timeout_s: float = 2.0
    idle_timeout_s: float = 60.0
    send_timeout_s: float = 2.0
    requests_per_s: float = 250.0
    request_burst: float = 25.0
    connections_per_s: float = 250.0
    connection_burst: float = 50.0


DEFAULT_MAX_REQUEST_BYTES = Limits.max_request_bytes
GATED_LINE_BYTES = 1024
"""Lines longer than this are parsed inside the server's gated work section (a CLI request
is 50-300 bytes and parses in microseconds; 16 KiB take a few hundred)."""
log = structlog.get_logger("exoctl.rpc")


def estop_socket_path(socket_path: str | Path) -> Path:
    """The e-stop socket beside the control socket: ``control.sock`` -> ``control.estop.sock``.

    Derived, not configured, so that the daemon and every client agree without a setting."""
    p = Path(socket_path)
    return p.with_name(f"{p.stem}.estop{p.suffix}")


class RpcError(ExoctlError):
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


def _limit(name: str, maximum: float, message: str) -> RpcError:
    return RpcError(INVALID_REQUEST, message, {"limit": name, "max": maximum})


# ---------------------------------------------------------------------------------------
# credentials
@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int
    user: str | None
    groups: tuple[str, ...]


NAMES_TTL_S = 10.0
"""How long a uid's user and group names are reused: a flood of connections costs one user
database lookup per uid, and a change of group membership takes effect within this."""


def peer_credentials(
    sock: socket.socket, names: dict[tuple[int, int], tuple[float, Any]] | None = None
) -> PeerCredentials:
    """Who is connected: SO_PEERCRED (pid, uid, gid at connect time), plus the user's name
    and group names from the user database (supplementary groups via getgrouplist). With a
    ``names`` dict, the lookups are remembered per (uid, gid) for ``NAMES_TTL_S``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    now = time.monotonic()
    hit = names.get((uid, gid)) if names is not None else None
    if hit is not None and now - hit[0] < NAMES_TTL_S:
        user, groups = hit[1]
        return PeerCredentials(pid, uid, gid, user, groups)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    gids = {gid}
    if user is not None:
        with contextlib.suppress(OSError):
            gids.update(os.getgrouplist(user, gid))
    group_names = []
    for g in sorted(gids):
        try:
            group_names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    if names is not None:
        names[(uid, gid)] = (now, (user, tuple(group_names)))
    return PeerCredentials(pid, uid, gid, user, tuple(group_names))


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
# decoding, with the limits checked before anything is built from the request
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
_OPENINGS = bytes.maketrans(b"{", b"[")
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _outside_strings(line: bytes) -> bytes:
    """The line with every string emptied: its structure, numbers and literals (exact for
    valid JSON; for anything else it only decides which error the line gets)."""
    return _STRING.sub(b'""', line) if b'"' in line else line


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether arrays and objects nest more than ``limit`` levels (iterative, stops early)."""
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        if d > limit:
            return True
        stack.extend((c, d + 1) for c in children if isinstance(c, list | dict))
    return False


_SPACE = re.compile(r"[ \t\n\r]*")


def _skip_space(text: str, i: int) -> int:
    m = _SPACE.match(text, i)
    return m.end() if m else i


def _parse(decoder: json.JSONDecoder, text: str, max_batch: int) -> Any:
    """``decoder.decode(text)``, except that a batch (a top-level array) is parsed one call
    at a time and refused as soon as it has one call too many: a 1,000-call batch costs the
    parsing of 33 calls, not of 1,000."""
    i = _skip_space(text, 0)
    if not text.startswith("[", i):
        return decoder.decode(text)
    calls: list[Any] = []
    i = _skip_space(text, i + 1)
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            call, i = decoder.raw_decode(text, i)
            calls.append(call)
            if len(calls) > max_batch:
                raise _limit("max_batch", max_batch, f"a batch of more than {max_batch} calls")
            i = _skip_space(text, i)
            if text.startswith(",", i):
                i = _skip_space(text, i + 1)
            elif text.startswith("]", i):
                i += 1
                break
            else:
                raise json.JSONDecodeError("Expecting ',' delimiter", text, i)
    if _skip_space(text, i) != len(text):
        raise json.JSONDecodeError("Extra data", text, i)
    return calls


def decode_request(line: bytes, limits: Limits = Limits()) -> Any:
    """One request line to a JSON value, or an RpcError (parse error or a limit) saying why.

    Why in this order, and each step a single call into C where it matters: a long line is
    parsed in the server's gated work section, right after a control tick, and must finish
    before the next one, so it must not be a stream of short steps that other threads can
    interleave. Digit runs and the number of values are checked on the bytes first (counted
    exactly, strings excluded, only when a cheap count says they may be over): converting a
    5,000-digit integer is what used to kill the connection thread, and ``max_items`` bounds
    what the parser may build (16 KiB of ``[],`` would be 5,000 lists). The parser's own
    recursion limit stops 50,000 brackets at once; a batch is refused at its first call too
    many (``_parse``); nesting is walked only when there are enough brackets for it to be
    over. The parser refuses NaN, Infinity and floats that overflow."""
    lim = limits
    if len(line) > lim.max_request_bytes:
        raise _limit(
            "max_request_bytes",
            lim.max_request_bytes,
            f"request larger than {lim.max_request_bytes} bytes",
        )
    n = lim.max_number_digits
    bare: bytes | None = None  # the line with its strings emptied, computed when needed
    if b"0" * (n + 1) in line.translate(_ZERO_DIGITS):
        bare = _outside_strings(line)
        if b"0" * (n + 1) in bare.translate(_ZERO_DIGITS):
            raise _limit("max_number_digits", n, f"a number with more than {n} digits")
    deep = b"[" * (lim.max_depth + 1)  # a run of openings, "{" read as "[", spaces dropped
    if deep in line.translate(_OPENINGS, b" \t\n\r"):
        bare = bare if bare is not None else _outside_strings(line)
        if deep in bare.translate(_OPENINGS, b" \t\n\r"):
            raise _limit("max_depth", lim.max_depth, f"nesting deeper than {lim.max_depth} levels")
    m = lim.max_items
    if line.count(b",") >= m or line.count(b"[") + line.count(b"{") > m:
        bare = bare if bare is not None else _outside_strings(line)
        if bare.count(b",") >= m or bare.count(b"[") + bare.count(b"{") > m:
            raise _limit("max_items", m, f"more than {m} values")
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        msg = f"parse error: not UTF-8 ({e.reason} at byte {e.start})"
        raise RpcError(PARSE_ERROR, msg) from None

    def finite(s: str) -> float:
        v = float(s)
        if v in (float("inf"), float("-inf")):
            raise _limit("max_number_digits", n, f"number {s[:50]} is out of range")
        return v

    def constant(s: str) -> Any:
        raise RpcError(PARSE_ERROR, f"parse error: {s} is not JSON")

    decoder = json.JSONDecoder(parse_float=finite, parse_constant=constant)
    try:
        msg = _parse(decoder, text, lim.max_batch)
    except RecursionError:
        raise _limit(
            "max_depth", lim.max_depth, f"nesting deeper than {lim.max_depth} levels"
        ) from None
    except json.JSONDecodeError as e:
        raise RpcError(PARSE_ERROR, f"parse error: {e}") from None
    if line.count(b"[") + line.count(b"{") > lim.max_depth and _deeper_than(msg, lim.max_depth):
        raise _limit("max_depth", lim.max_depth, f"nesting deeper than {lim.max_depth} levels")
    return msg


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


def _json(value: Any) -> bytes:
    """Strict, compact JSON (NaN and infinity refused: other tools must be able to read it)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def encode_error(rid: Any, code: int, message: str, data: Any = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return _json({"jsonrpc": "2.0", "id": rid, "error": err})


def _result(rid: Any, body: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + _json(rid) + b',"result":' + body + b"}"


class Dispatcher:
    """Turns one decoded JSON value into an encoded response (None for notifications).

    ``concurrent`` methods run without the lock that serialises the others. ``cached``
    ({method: seconds}) methods called without parameters reuse the last encoded result for
    that long; any call of another method invalidates it (an e-stop shows in the next
    ``status``). Building one starts after ``pace()`` (the server's: one request at a time,
    at a moment the control loop can spare)."""

    def __init__(
        self,
        methods: Mapping[str, Callable[..., Any]],
        *,
        concurrent: Iterable[str] = (),
        cached: Mapping[str, float] | None = None,
        pace: Callable[[], None] | None = None,
    ) -> None:
        self.methods = dict(methods)
        self._pace = pace or (lambda: None)
        self._sigs = {name: inspect.signature(fn) for name, fn in self.methods.items()}
        self.concurrent = frozenset(concurrent) | {ESTOP_METHOD}
        self.cached = dict(cached or {})
        self._lock = threading.Lock()
        self._build_locks = {m: threading.Lock() for m in self.cached}
        self._cache: dict[str, tuple[int, float, bytes]] = {}
        self._generation = 0
        self._gen_lock = threading.Lock()

    def handle(self, msg: Any, context: dict[str, Any] | None = None) -> bytes | None:
        if isinstance(msg, list):
            if not msg:
                return encode_error(None, INVALID_REQUEST, "empty batch")
            out = [r for r in (self._one(m, context) for m in msg) if r is not None]
            return b"[" + b",".join(out) + b"]" if out else None
        return self._one(msg, context)

    def _one(self, req: Any, context: dict[str, Any] | None) -> bytes | None:
        if not isinstance(req, dict):
            return encode_error(None, INVALID_REQUEST, "a request must be a JSON object")
        rid = req.get("id")
        if not (rid is None or isinstance(rid, str | int | float)) or isinstance(rid, bool):
            return encode_error(None, INVALID_REQUEST, "id must be a string, number or null")
        if req.get("jsonrpc") != "2.0":
            return encode_error(rid, INVALID_REQUEST, 'missing "jsonrpc": "2.0"')
        method = req.get("method")
        if not isinstance(method, str):
            return encode_error(rid, INVALID_REQUEST, "method must be a string")
        is_notification = "id" not in req
        fn = self.methods.get(method)
        if fn is None:
            if is_notification:
                return None
            return encode_error(
                rid,
                METHOD_NOT_FOUND,
                f"unknown method {method[:100]!r}",
                {"methods": sorted(self.methods)},
            )
        params = req.get("params", {})
        if isinstance(params, list):
            args, kwargs = params, {}
        elif isinstance(params, dict):
            args, kwargs = [], params
        else:
            return encode_error(rid, INVALID_PARAMS, "params must be an object or an array")
        try:
            self._sigs[method].bind(*args, **kwargs)
        except TypeError as e:
            return encode_error(rid, INVALID_PARAMS, f"{method}: {e}")
        try:
            if method in self.cached and not args and not kwargs:
                body = self._cached(method, fn)
            else:
                body = self._call(method, fn, args, kwargs)
        except RpcError as e:
            return None if is_notification else encode_error(rid, e.code, e.message, e.data)
        except ValueError as e:
            # Handlers validate their parameters and raise ValueError with a message meant
            # for the caller (pydantic's ValidationError is one).
            return None if is_notification else encode_error(rid, INVALID_PARAMS, f"{method}: {e}")
        except Exception as e:
            log.exception("rpc_handler_failed", method=method)
            return (
                None
                if is_notification
                else encode_error(rid, INTERNAL_ERROR, f"{method} failed: {type(e).__name__}: {e}")
            )
        return None if is_notification else _result(rid, body)

    def _invalidate(self) -> None:
        with self._gen_lock:
            self._generation += 1

    def _call(self, method: str, fn: Callable[..., Any], args: list, kwargs: dict) -> bytes:
        if method not in self.cached:
            self._invalidate()  # before: a status built meanwhile is not kept ...
        try:
            if method in self.concurrent:
                result = fn(*args, **kwargs)
            else:
                with self._lock:
                    result = fn(*args, **kwargs)
        finally:
            if method not in self.cached:
                self._invalidate()  # ... and after: the next status is built afresh
        return _encode_result(method, result)

    def _cached(self, method: str, fn: Callable[..., Any]) -> bytes:
        """The encoded result, built by one caller at a time and reused while fresh. While
        one caller builds it, the others get the previous one if nothing has invalidated it
        (it is then at most a build's time older than the time to live)."""
        lock = self._build_locks[method]
        if not lock.acquire(blocking=False):
            hit = self._cache.get(method)
            if hit is not None and hit[0] == self._generation:
                return hit[2]
            lock.acquire()
        try:
            gen = self._generation
            now = time.monotonic()
            hit = self._cache.get(method)
            if hit is not None and hit[0] == gen and now - hit[1] < self.cached[method]:
                return hit[2]
            self._pace()  # start in the loop's idle time (the build itself may wait on it)
            body = self._call(method, fn, [], {})
            if self._generation == gen:
                self._cache[method] = (gen, now, body)
            return body
        finally:
            lock.release()


def _encode_result(method: str, result: Any) -> bytes:
    try:
        return _json(result)
    except (TypeError, ValueError) as e:  # fail here, as an internal error, not mid-send
        raise RpcError(INTERNAL_ERROR, f"{method} returned what JSON cannot carry: {e}") from None


# ---------------------------------------------------------------------------------------
# server
def socket_in_use(path: str | Path) -> bool:
    """True if something accepts connections on ``path`` (another daemon is running).

    Never call it on an e-stop socket: connecting to one presses the e-stop."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


IDLE, READING, WORKING = "idle", "reading", "working"


class _Conn:
    """One control-socket connection and what it is doing (guarded by the server's lock)."""

    __slots__ = ("sock", "state", "since", "closed")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.state = IDLE
        self.since = time.monotonic()
        self.closed = False  # evicted or timed out: whatever it sends next is not read


def _send_nowait(sock: socket.socket, data: bytes) -> None:
    """A last line to a peer that may not be reading: never blocks, may be lost."""
    with contextlib.suppress(OSError):
        sock.send(data + b"\n", socket.MSG_DONTWAIT)


class _TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; ``take`` sleeps until enough."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = self.burst
        self.t = time.monotonic()

    def take(self, cost: float) -> None:
        """Callers are serialised (the server's work lock; the acceptor is one thread)."""
        while True:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
            self.t = now
            if self.tokens >= min(cost, self.burst):
                self.tokens -= cost  # may go negative for a big one: paid back by waiting
                return
            time.sleep((min(cost, self.burst) - self.tokens) / self.rate)


class RpcServer:
    """Listens on ``path`` (and on its e-stop socket if the table has ``estop``); call
    ``start()``, later ``close()``."""

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
    ) -> None:
        self.path = Path(path)
        self.limits = limits or Limits()
        if max_request_bytes is not None:
            self.limits = Limits(**{**asdict(self.limits), "max_request_bytes": max_request_bytes})
        self.gate = gate
        self._work_lock = threading.Lock()
        self._bucket = _TokenBucket(self.limits.requests_per_s, self.limits.request_burst)
        self._accepts = _TokenBucket(self.limits.connections_per_s, self.limits.connection_burst)
        self.dispatcher = Dispatcher(methods, concurrent=concurrent, cached=cached, pace=self._pace)
        self.estop_path = (
            estop_socket_path(path) if ESTOP_METHOD in self.dispatcher.methods else None
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
        self.recent: collections.deque[tuple[float, float, int]] = collections.deque(maxlen=256)
        """The last requests on the control socket: (first byte received, answer sent, line
        length), monotonic seconds; what the daemon spent on whom, for diagnosis and tests."""
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
        self._sock = self._bind(self.path, probe=True)
        if self.estop_path is not None:
            try:
                self._estop_sock = self._bind(self.estop_path, probe=False)
            except BaseException:
                self._sock.close()
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
                raise
        for target, name in (
            (self._accept_loop, "exoctl-rpc"),
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

    def _bind(self, path: Path, probe: bool) -> socket.socket:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            if probe and socket_in_use(path):
                raise RuntimeError(f"another daemon is already listening on {path}")
            if not path.is_socket():
                raise RuntimeError(f"{path} exists and is not a socket; remove it or move it")
            # Stale, left by a killed daemon. (The e-stop socket is never probed: connecting
            # presses it. It is ours because the control socket beside it was free.)
            path.unlink()
        # Bind under a temporary name, set mode and group, then rename into place: there is
        # never a moment when the final path exists with looser permissions.
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
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
                    log.warning("socket_group_missing", group=self.socket_group, path=str(path))
                else:
                    os.chown(tmp, -1, gid)
            os.rename(tmp, path)
            s.listen(socket.SOMAXCONN)  # bursts of CLI calls queue here, not in refusals
        except BaseException:
            s.close()
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        s.settimeout(0.2)  # so the accept loops notice close()
        return s

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
        while not self._closing.is_set():
            sock = self._accept(self._sock)
            if sock is None:
                continue
            self._accepts.take(1.0)  # a flood of connections waits in the listen queue
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
                _send_nowait(
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
        _send_nowait(
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
                        begun = deadline - lim.request_timeout_s if deadline else time.monotonic()
                        self.recent.append((begun, time.monotonic(), len(line)))
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
                    begun = deadline - lim.request_timeout_s if deadline else time.monotonic()
                    self.recent.append((begun, time.monotonic(), len(buf)))
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

    @contextlib.contextmanager
    def _work(self, cost: float = 0.0) -> Iterator[None]:
        """Work that holds the interpreter for a while (parsing a long line, building a cached
        reply): one thread at a time, started when ``gate`` returns. The daemon's gate returns
        just after a control tick, so the work fills the loop's idle time instead of holding
        the GIL when a tick is due. ``cost`` is taken from a token bucket first
        (``Limits.requests_per_s``), so a flood costs the process a bounded share of CPU."""
        with self._work_lock:
            if cost:
                self._bucket.take(cost)
            if self.gate is not None:
                try:
                    self.gate()
                except Exception:  # a gate that fails must not fail the request
                    log.exception("rpc_gate_failed")
            yield

    def _pace(self, cost: float = 1.0) -> None:
        """Wait for a token and the gate's next moment, one thread at a time: requests then
        start at most one per control tick and ``requests_per_s`` in all, each in the loop's
        idle time (an e-stop never waits here)."""
        with self._work(cost):
            pass

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
                with self._work(1.0 + len(line) / 4096):
                    msg = decode_request(line, self.limits)
            else:
                msg = decode_request(line, self.limits)
                if not (isinstance(msg, dict) and msg.get("method") == ESTOP_METHOD):
                    self._pace()
        except RpcError as e:
            error = e
        if "peer" not in ctx:
            denied = self._check_peer(sock, ctx)
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
            return encode_error(None, INTERNAL_ERROR, f"{type(e).__name__}: {e}")

    def _check_peer(self, sock: socket.socket, ctx: dict[str, Any]) -> bytes | None:
        """None if the peer may use the socket (its credentials go into ``ctx``), else the
        refusal to send before closing."""
        try:
            cred = peer_credentials(sock, self._names)
        except OSError as e:
            ctx["denied"] = True
            return encode_error(None, PERMISSION_DENIED, f"no credentials: {e}")
        ok, reason = check_allowed(cred, self.allowed_users, self.allowed_groups)
        if not ok:
            ctx["denied"] = True
            self.counters["refused"] += 1
            self._warn("rpc_peer_refused", pid=cred.pid, uid=cred.uid, reason=reason)
            return encode_error(None, PERMISSION_DENIED, reason)
        ctx["peer"] = cred
        return None

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
        """Accept, then every connection already waiting too (non-blocking): each is one
        press. The e-stop is called as soon as one allowed peer is found among them, once
        for all of them (each connected before that call started); each gets the answer,
        refused peers a refusal, then it is closed. Nothing is ever read from a client, so
        no client can stall this thread; connections that arrive while the e-stop runs wait
        in the listen queue and are the next round (a new call: they came after it began)."""
        assert self._estop_sock is not None
        while not self._closing.is_set():
            first = self._accept(self._estop_sock)
            if first is None:
                continue
            waiting = [first]
            self._estop_sock.setblocking(False)
            try:
                while len(waiting) < 1024:
                    waiting.append(self._estop_sock.accept()[0])
            except OSError:  # BlockingIOError: the queue is empty
                pass
            finally:
                self._estop_sock.settimeout(0.2)
            resp: bytes | None = None
            for s in waiting:
                try:
                    cred = peer_credentials(s, self._names)
                    ok, reason = check_allowed(cred, self.allowed_users, self.allowed_groups)
                except OSError as e:
                    ok, reason, cred = False, f"no credentials: {e}", None
                if not ok:
                    self.counters["refused"] += 1
                    self._warn("rpc_estop_refused", pid=getattr(cred, "pid", None), reason=reason)
                    _send_nowait(s, encode_error(None, PERMISSION_DENIED, reason))
                elif resp is None:
                    resp = self._press_estop()
                    _send_nowait(s, resp)
                else:
                    _send_nowait(s, resp)
                s.close()

    def _press_estop(self) -> bytes:
        self.counters["estops"] += 1
        try:
            resp = self.dispatcher.handle({"jsonrpc": "2.0", "id": None, "method": ESTOP_METHOD})
        except Exception as e:  # the dispatcher maps handler errors; this is a last guard
            resp = encode_error(None, INTERNAL_ERROR, f"{type(e).__name__}: {e}")
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
        for p in (self.path, self.estop_path):
            if p is not None:
                with contextlib.suppress(FileNotFoundError):
                    p.unlink()

    def __enter__(self) -> RpcServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
