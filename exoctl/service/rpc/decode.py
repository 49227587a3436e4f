"""One request line to a JSON value, with ``Limits`` checked on the raw bytes before the
parser builds anything from it."""

from __future__ import annotations

import json
import re
from typing import Any

from exoctl.service.rpc.errors import PARSE_ERROR, RpcError
from exoctl.service.rpc.errors import limit_exceeded as _limit
from exoctl.service.rpc.limits import Limits

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


def _parse(
    decoder: json.JSONDecoder, text: str, max_batch: int, spans: list[tuple[int, int]]
) -> Any:
    """``decoder.decode(text)``, except that a batch (a top-level array) is parsed one call
    at a time and refused as soon as it has one call too many: a 1,000-call batch costs the
    parsing of 33 calls, not of 1,000. Each call's (start, end) in ``text`` goes to ``spans``
    (the depth check looks only into calls with enough brackets to be too deep)."""
    i = _skip_space(text, 0)
    if not text.startswith("[", i):
        return decoder.decode(text)
    calls: list[Any] = []
    i = _skip_space(text, i + 1)
    if text.startswith("]", i):
        i += 1
    else:
        while True:
            start = i
            call, i = decoder.raw_decode(text, i)
            calls.append(call)
            spans.append((start, i))
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


_DEFAULT_LIMITS = Limits()


def decode_request(line: bytes, limits: Limits = _DEFAULT_LIMITS) -> Any:
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
    spans: list[tuple[int, int]] = []
    try:
        msg = _parse(decoder, text, lim.max_batch, spans)
    except RecursionError:
        raise _limit(
            "max_depth", lim.max_depth, f"nesting deeper than {lim.max_depth} levels"
        ) from None
    except json.JSONDecodeError as e:
        raise RpcError(PARSE_ERROR, f"parse error: {e}") from None
    if line.count(b"[") + line.count(b"{") > lim.max_depth and _too_deep(
        msg, text, spans, lim.max_depth
    ):
        raise _limit("max_depth", lim.max_depth, f"nesting deeper than {lim.max_depth} levels")
    return msg


def _too_deep(msg: Any, text: str, spans: list[tuple[int, int]], limit: int) -> bool:
    """Whether ``msg`` nests deeper than ``limit``; in a batch (``spans`` given) only the
    calls with more than ``limit - 1`` openings in their text are walked: a batch of 32
    shallow calls has 33 openings in all and none too deep, and walking it cost 80 us."""
    if not spans:
        return _deeper_than(msg, limit)
    return any(
        text.count("[", a, b) + text.count("{", a, b) > limit - 1 and _deeper_than(call, limit - 1)
        for call, (a, b) in zip(msg, spans, strict=True)
    )
