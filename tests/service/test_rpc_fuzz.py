"""Property tests of the control socket (huge numbers, deep nesting, any bytes): whatever
arrives, the answer is a JSON-RPC error or a valid reply, never a dead connection thread.

Three levels, each against the real code: ``decode_request`` (checked against a plain
recursive reference of the limits), the ``Dispatcher`` on any JSON value, and the real server
on a real Unix socket fed random and mutated lines."""

from __future__ import annotations

import json
import math
import socket
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from exoctl.service import rpc

LIM = rpc.Limits()
JSON_CODES = {
    rpc.PARSE_ERROR,
    rpc.INVALID_REQUEST,
    rpc.METHOD_NOT_FOUND,
    rpc.INVALID_PARAMS,
    rpc.INTERNAL_ERROR,
    rpc.REFUSED,
}

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**60), max_value=10**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=6)
    ),
    max_leaves=60,
)


def _depth(v: Any) -> int:
    if isinstance(v, list):
        return 1 + max((_depth(x) for x in v), default=0)
    if isinstance(v, dict):
        return 1 + max((_depth(x) for x in v.values()), default=0)
    return 0


def _items(v: Any) -> int:
    """Values as the limit counts them: commas outside strings, plus one."""
    if isinstance(v, list):
        return max(len(v) - 1, 0) + sum(_items(x) - 1 for x in v) + 1
    if isinstance(v, dict):
        return max(len(v) - 1, 0) + sum(_items(x) - 1 for x in v.values()) + 1
    return 1


def _digits(v: Any) -> int:
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return 0
    if isinstance(v, int | float):
        runs = "".join(c if c.isdigit() else " " for c in json.dumps(v)).split()
        return max((len(r) for r in runs), default=0)
    children = v if isinstance(v, list) else list(v.values())
    return max((_digits(x) for x in children), default=0)


SMALL = rpc.Limits(
    max_request_bytes=600, max_depth=4, max_batch=3, max_items=20, max_number_digits=12
)
"""Small enough that generated values cross every limit often."""


@settings(max_examples=250, deadline=None)
@given(json_values, st.sampled_from([SMALL, LIM]))
def test_decode_agrees_with_a_plain_reference_of_the_limits(value: Any, lim: rpc.Limits) -> None:
    line = json.dumps(value).encode()
    expected = []
    if len(line) > lim.max_request_bytes:
        expected.append("max_request_bytes")
    if _depth(value) > lim.max_depth:
        expected.append("max_depth")
    if isinstance(value, list) and len(value) > lim.max_batch:
        expected.append("max_batch")
    if _items(value) > lim.max_items:
        expected.append("max_items")
    if _digits(value) > lim.max_number_digits:
        expected.append("max_number_digits")
    try:
        got = rpc.decode_request(line, lim)
    except rpc.RpcError as e:
        assert e.code == rpc.INVALID_REQUEST and e.data["limit"] in expected, (e.data, expected)
        return
    assert not expected
    assert got == value or (isinstance(value, float) and math.isnan(value))


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=3000))
@example(b"[" * 50000)
@example(b'{"id":' + b"9" * 5000 + b"}")
@example(b"1e999")
@example(b"NaN")
@example(b'"\\ud800"')
@example(b"\xff\xfe")
@example(b'"' + b"\\" * 99 + b'"[[[[')
def test_decode_any_bytes_is_a_value_or_a_json_rpc_error(line: bytes) -> None:
    try:
        rpc.decode_request(line, LIM)
    except rpc.RpcError as e:
        assert e.code in (rpc.PARSE_ERROR, rpc.INVALID_REQUEST)
        assert isinstance(e.message, str) and e.message


class Handler:
    RPC_METHODS = {"status": "status", "echo": "echo", "add": "add", "estop": "estop"}

    def status(self) -> dict:
        return {"ok": True}

    def echo(self, x: Any = None) -> Any:
        return x

    def add(self, a: float, b: float = 0) -> float:
        return a + b  # TypeError for strings: an internal error, still an answer

    def estop(self) -> dict:
        return {"safety_state": "ESTOP"}


def _check_response(r: Any) -> None:
    """A JSON-RPC 2.0 response object, result xor error, error code and message typed."""
    assert isinstance(r, dict) and r["jsonrpc"] == "2.0" and "id" in r
    assert ("result" in r) != ("error" in r)
    if "error" in r:
        assert r["error"]["code"] in JSON_CODES | {rpc.PERMISSION_DENIED}
        assert isinstance(r["error"]["message"], str)


requests = st.fixed_dictionaries(
    {"jsonrpc": st.sampled_from(["2.0", "2.0", "1.0"]),
     "method": st.sampled_from(["status", "echo", "add", "estop", "nope"]) | st.text(max_size=5)},
    optional={"id": st.none() | st.integers() | st.text(max_size=5) | st.floats(allow_nan=False, allow_infinity=False) | st.booleans() | st.lists(st.integers(), max_size=2),
              "params": json_values},
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(requests | st.lists(requests, max_size=5) | json_values)
def test_dispatcher_answers_any_json_value(msg: Any) -> None:
    d = rpc.Dispatcher(rpc.methods_from(Handler()), cached={"status": 1.0})
    out = d.handle(msg)
    if out is None:
        return  # only notifications (no id) and batches of them go unanswered
    r = json.loads(out)
    for x in r if isinstance(r, list) else [r]:
        _check_response(x)


def _mutate(data: st.DataObject, line: bytes) -> bytes:
    b = bytearray(line)
    for _ in range(data.draw(st.integers(0, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        if op == "insert" or not b:
            b.insert(data.draw(st.integers(0, len(b))), data.draw(st.integers(0, 255)))
        elif op == "flip":
            i = data.draw(st.integers(0, len(b) - 1))
            b[i] = data.draw(st.integers(0, 255))
        else:
            del b[data.draw(st.integers(0, len(b) - 1))]
    return bytes(b).replace(b"\n", b" ")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory):
    path = tmp_path_factory.mktemp("fuzz") / "c.sock"
    srv = rpc.RpcServer(
        path, rpc.methods_from(Handler()), allowed_users=["root"], cached={"status": 0.05}
    ).start()
    yield srv
    srv.close()


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_server_any_lines_get_answers_and_the_connection_lives(server, data) -> None:
    lines = data.draw(
        st.lists(
            st.binary(max_size=200).map(lambda b: b.replace(b"\n", b" "))
            | requests.map(lambda r: json.dumps(r).encode())
            | st.lists(requests, min_size=1, max_size=4).map(lambda r: json.dumps(r).encode()),
            min_size=1,
            max_size=8,
        )
    )
    lines = [_mutate(data, x) if data.draw(st.booleans()) else x for x in lines]
    crashes = server.counters.get("crashes", 0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(str(server.path))
        f = s.makefile("rb")
        for line in lines:
            s.sendall(line + b"\n")
            if not line.strip():
                continue  # blank lines are skipped
            # a reply, unless the line was a notification (or a batch of them): the status
            # sent next tells which, since replies come in order
            s.sendall(b'{"jsonrpc":"2.0","id":"probe","method":"status"}\n')
            while True:
                raw = f.readline()
                assert raw, f"connection closed after {line!r}"
                r = json.loads(raw)
                for x in r if isinstance(r, list) else [r]:
                    _check_response(x)
                if isinstance(r, dict) and r.get("id") == "probe" and "result" in r:
                    break
        f.close()
    assert server.counters.get("crashes", 0) == crashes
    assert all(t.is_alive() for t in server._threads)
