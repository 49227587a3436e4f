"""Method tables and the dispatcher: one decoded request (or batch) to its encoded reply,
handler calls serialised except the concurrent ones, cached replies for ``status``."""

from __future__ import annotations

import inspect
import json
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import structlog

from exoctl.service.rpc.errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    RpcError,
)
from exoctl.service.rpc.sockets import ESTOP_METHOD

log = structlog.get_logger("exoctl.rpc")


def is_single_estop(msg: Any) -> bool:
    """A request that is one e-stop call: it never waits for pacing or a gate."""
    return isinstance(msg, dict) and msg.get("method") == ESTOP_METHOD


def has_estop(msg: Any) -> bool:
    """A request or batch with an e-stop call in it: the relay's e-stop channel carries it."""
    calls = msg if isinstance(msg, list) else [msg]
    return any(isinstance(c, dict) and c.get("method") == ESTOP_METHOD for c in calls)


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


def encode_json(value: Any) -> bytes:
    """Strict, compact JSON (NaN and infinity refused: other tools must be able to read it)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False).encode()


def encode_error(rid: Any, code: int, message: str, data: Any = None) -> bytes:
    err: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        err["data"] = data
    return encode_json({"jsonrpc": "2.0", "id": rid, "error": err})


def internal_error(e: Exception) -> bytes:
    """The last guard's reply, where an exception escaped what maps handler errors (the
    dispatcher itself, the relay): a bug, answered rather than dropping the connection."""
    return encode_error(None, INTERNAL_ERROR, f"{type(e).__name__}: {e}")


def _id_json(rid: Any) -> bytes:
    """An id as JSON; integers and null without the encoder (a batch of 32 cached
    ``status`` calls spent a fifth of its time building encoders for its ids)."""
    if rid is None:
        return b"null"
    if type(rid) is int:
        return str(rid).encode()
    return encode_json(rid)


def _result(rid: Any, body: bytes) -> bytes:
    return b'{"jsonrpc":"2.0","id":' + _id_json(rid) + b',"result":' + body + b"}"


def _takes_no_arguments(sig: inspect.Signature) -> bool:
    """Whether a call without parameters binds (every parameter has a default, or is * or
    **): then such calls skip ``Signature.bind``, a third of a cached call's cost."""
    return all(
        p.default is not p.empty or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        for p in sig.parameters.values()
    )


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
        self._bare_ok = {name for name, sig in self._sigs.items() if _takes_no_arguments(sig)}
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
        if args or kwargs or method not in self._bare_ok:
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
        return encode_json(result)
    except (TypeError, ValueError) as e:  # fail here, as an internal error, not mid-send
        raise RpcError(INTERNAL_ERROR, f"{method} returned what JSON cannot carry: {e}") from None
