"""An independent peer written from docs/protocol.md alone.

It imports nothing from firmware_bridge: message ids, layouts and constants are parsed from
the machine-readable tables of the document, and the vectors come from frames.json. If the
document is wrong or incomplete, this peer disagrees with the vectors and the test fails.
"""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text()
VECTORS = json.loads((ROOT / "firmware_bridge" / "vectors" / "frames.json").read_text())


def _section(tag: str) -> list[list[str]]:
    m = re.search(rf"<!-- peer-spec:{tag}.*?-->(.*?)<!-- /peer-spec:{tag} -->", DOC, re.S)
    assert m, f"docs/protocol.md lacks the peer-spec:{tag} table"
    rows = []
    for line in m.group(1).strip().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        header = ("id", "constant", "message")
        if cells and not set(cells[0]) <= set("-: ") and cells[0] not in header:
            rows.append(cells)
    return rows


def _num(s: str) -> float | int:
    return int(s, 16) if s.lower().startswith("0x") else (float(s) if "." in s else int(s))


C = {r[0]: _num(r[1]) for r in _section("constants")}
SCALAR = {"u8": "B", "u16": "H", "u32": "I", "i16": "h"}
TOKEN = re.compile(r"(\w+):(\{[^}]*\}\[\w+\]|\w+\[\w+\]|\w+)")


def _layout(spec: str) -> list[tuple]:
    """'a:u32 b:i16[n] c:{x:u8 y:char[8]}[n]' -> [(name, kind, arg, count), ...]."""
    out = []
    for name, t in TOKEN.findall(spec):
        if t.startswith("{"):
            inner, count = re.fullmatch(r"\{(.*)\}\[(\w+)\]", t).groups()
            out.append((name, "records", _layout(inner), count))
        elif m := re.fullmatch(r"char\[(\d+)\]", t):
            out.append((name, "char", int(m.group(1)), None))
        elif m := re.fullmatch(r"(\w+)\[(\w+)\]", t):
            out.append((name, "array", m.group(1), m.group(2)))
        else:
            out.append((name, "scalar", t, None))
    return out


MESSAGES = {_num(r[0]): (r[1], _layout(r[3].strip("`"))) for r in _section("messages")}
DIRECTION = {_num(r[0]): r[2].split("->")[1] for r in _section("messages")}  # the receiver
TYPE_OF = {name: t for t, (name, _l) in MESSAGES.items()}
VALUES: dict[int, list[tuple[str, str]]] = {}
for _msg, _field, _allowed in _section("values"):
    VALUES.setdefault(TYPE_OF[_msg], []).append((_field.strip("`"), _allowed.strip("`")))


class Reject(Exception):
    def __init__(self, kind: str, answer_nonce: int | None = None) -> None:
        self.kind = kind
        self.answer_nonce = answer_nonce  # a foreign HELLO the device answers (section 5.1)


def _crc(data: bytes) -> int:
    crc = C["CRC_INIT"]
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ C["CRC_POLY"]) if crc & 0x8000 else crc << 1
            crc &= 0xFFFF
    return crc ^ C["CRC_XOROUT"]


def _unstuff(frame: bytes) -> bytes:
    out, i = bytearray(), 0
    while i < len(frame):
        code = frame[i]
        if code == 0 or i + code > len(frame) or 0 in frame[i + 1 : i + code]:
            raise Reject("framing")
        out += frame[i + 1 : i + code]
        i += code
        if code != 0xFF and i < len(frame):
            out.append(0)
    return bytes(out)


def _stuff(body: bytes) -> bytes:
    out = bytearray()
    for chunk in body.split(b"\x00"):
        while len(chunk) >= 254:
            out += b"\xff" + chunk[:254]
            chunk = chunk[254:]
        out += bytes([len(chunk) + 1]) + chunk
    return bytes(out)


def _parse(layout: list[tuple], p: bytes, off: int, fields: dict) -> int:
    for name, kind, arg, count in layout:
        if kind == "scalar":
            fmt = "<" + SCALAR[arg]
            if off + struct.calcsize(fmt) > len(p):
                raise Reject("length")
            (fields[name],) = struct.unpack_from(fmt, p, off)
            off += struct.calcsize(fmt)
        elif kind == "char":
            raw = p[off : off + arg]
            if len(raw) != arg:
                raise Reject("length")
            fields[name] = raw  # a name: checked with the values (check 10), after the sizes
            off += arg
        else:
            n = fields[count]
            if not 1 <= n <= C["MAX_JOINTS"]:
                raise Reject("length")
            if kind == "array":
                fmt = f"<{n}{SCALAR[arg]}"
                if off + struct.calcsize(fmt) > len(p):
                    raise Reject("length")
                fields[name] = list(struct.unpack_from(fmt, p, off))
                off += struct.calcsize(fmt)
            else:
                fields[name] = []
                for _ in range(n):
                    rec: dict = {}
                    off = _parse(arg, p, off, rec)
                    fields[name].append(rec)
    return off


def _name(raw: bytes) -> str:
    """The "Names" rule of section 4: 1..N bytes of NAME_FIRST_BYTE..NAME_LAST_BYTE, NULs."""
    s = raw.split(b"\x00", 1)[0]
    if not s or raw[len(s) :].strip(b"\x00"):
        raise Reject("value")
    if any(not C["NAME_FIRST_BYTE"] <= b <= C["NAME_LAST_BYTE"] for b in s):
        raise Reject("value")
    return s.decode("ascii")


def _allowed(rule: str, v: int, fields: dict) -> bool:
    """One cell of the peer-spec:values table."""
    if m := re.fullmatch(r"mask (\w+)", rule):
        return v & ~_num(m.group(1)) == 0
    if m := re.fullmatch(r"(\w+) if (\w+) <= (\w+) else (\w+)", rule):
        yes, other, bound, no = m.groups()
        return v == (_num(yes) if fields[other] <= _num(bound) else _num(no))
    for item in rule.split(","):
        lo, _, hi = item.strip().partition("..")
        if _num(lo) <= v <= _num(hi or lo):
            return True
    return False


def _check_values(mtype: int, fields: dict) -> None:
    for path, rule in VALUES.get(mtype, []):
        head, _, sub = path.partition(".")
        targets = [(r, sub) for r in fields[head]] if sub else [(fields, head)]
        for rec, key in targets:
            if rule == "name":
                rec[key] = _name(rec[key])
            elif not _allowed(rule, rec[key], fields):
                raise Reject("value")
    for rec in [fields, *[r for v in fields.values() if isinstance(v, list) for r in v]]:
        if isinstance(rec, dict):  # every char[N] field is a name
            for k, v in rec.items():
                if isinstance(v, bytes):
                    rec[k] = _name(v)


def peer_decode(frame: bytes, receiver: str | None = None) -> tuple[int, dict]:
    """Receiver rules of docs/protocol.md section 2, in the documented order (check 8 only
    when the receiver is named)."""
    if len(frame) > C["MAX_RUN"]:
        raise Reject("framing")
    body = _unstuff(frame)
    hs, cs = C["HEADER_SIZE"], C["CRC_SIZE"]
    if not hs + cs <= len(body) <= hs + C["MAX_PAYLOAD"] + cs:
        raise Reject("framing")
    if _crc(body[:-cs]) != int.from_bytes(body[-cs:], "little"):
        raise Reject("crc")
    version, mtype, length = struct.unpack_from("<BBH", body)
    if length != len(body) - hs - cs:
        raise Reject("length")
    payload = body[hs:-cs]
    if version != C["PROTOCOL_VERSION"]:
        # section 5.1: a device answers a HELLO (type 0x01 in every version) with a nonce
        hello = mtype == TYPE_OF["HELLO"] and len(payload) >= 4 and receiver == "device"
        raise Reject("version", int.from_bytes(payload[:4], "little") if hello else None)
    if mtype not in MESSAGES:
        raise Reject("type")
    if receiver is not None and DIRECTION[mtype] != receiver:
        raise Reject("direction")
    fields: dict = {}
    if _parse(MESSAGES[mtype][1], payload, 0, fields) != len(payload):
        raise Reject("length")
    _check_values(mtype, fields)
    return mtype, fields


def _emit(layout: list[tuple], fields: dict) -> bytes:
    out = b""
    for name, kind, arg, _count in layout:
        v = fields[name]
        if kind == "scalar":
            out += struct.pack("<" + SCALAR[arg], v)
        elif kind == "char":
            out += v.encode("ascii").ljust(arg, b"\x00")
        elif kind == "array":
            out += struct.pack(f"<{len(v)}{SCALAR[arg]}", *v)
        else:
            out += b"".join(_emit(arg, r) for r in v)
    return out


def peer_encode(mtype: int, fields: dict) -> bytes:
    payload = _emit(MESSAGES[mtype][1], fields)
    body = struct.pack("<BBH", C["PROTOCOL_VERSION"], mtype, len(payload)) + payload
    body += _crc(body).to_bytes(2, "little")
    return _stuff(body) + bytes([C["DELIMITER"]])


def peer_stream(
    data: bytes, receiver: str | None = None
) -> tuple[list[tuple[int, dict]], dict[str, int], list[int]]:
    msgs, errors, answers, buf, overflow = [], {}, [], bytearray(), False
    for b in data:
        if b != 0:
            if not overflow:
                buf.append(b)
                if len(buf) > C["MAX_RUN"]:  # the 248th byte: over-long
                    overflow, buf = True, bytearray()
            continue
        if overflow:  # counted at the 0x00 that ends the run
            errors["framing"] = errors.get("framing", 0) + 1
        elif buf:
            try:
                msgs.append(peer_decode(bytes(buf), receiver))
            except Reject as r:
                errors[r.kind] = errors.get(r.kind, 0) + 1
                if r.answer_nonce is not None:
                    answers.append(r.answer_nonce)
        overflow, buf = False, bytearray()
    return msgs, errors, answers


def test_document_declares_the_core_constants() -> None:
    assert C["PROTOCOL_VERSION"] == VECTORS["protocol_version"]
    assert C["MAX_RUN"] == C["MAX_ENCODED"]
    # every field the values table names exists in the message layouts
    for mtype, rules in VALUES.items():
        names = {n for n, *_ in MESSAGES[mtype][1]}
        for path, _rule in rules:
            head, _, sub = path.partition(".")
            assert head in names, (MESSAGES[mtype][0], path)
            if sub:
                rec = next(a for n, k, a, _c in MESSAGES[mtype][1] if n == head)
                assert sub in {n for n, *_ in rec}, (MESSAGES[mtype][0], path)
    assert C["CRC_CHECK"] == int(VECTORS["crc_check"]["crc"], 16)
    assert _crc(b"123456789") == C["CRC_CHECK"]
    names = {n for n, _ in MESSAGES.values()}
    assert {"HELLO", "TORQUE_CMD", "HEARTBEAT", "TELEMETRY", "ACK", "FAULT_REPORT"} <= names
    assert {"DEVICE_INFO", "ENABLE", "DISABLE", "ESTOP_STATE", "CLEAR_FAULTS"} <= names


@pytest.mark.parametrize("vec", VECTORS["frames"], ids=lambda v: v["name"])
def test_peer_agrees_with_vector(vec: dict) -> None:
    wire = bytes.fromhex(vec["hex"])
    assert wire[-1] == C["DELIMITER"]
    if vec["expect"] == "ok":
        mtype, fields = peer_decode(wire[:-1], vec["receiver"])
        assert mtype == vec["type"]
        assert fields == vec["fields"]
        assert peer_encode(mtype, fields) == wire
    else:
        with pytest.raises(Reject) as r:
            peer_decode(wire[:-1], vec["receiver"])
        assert r.value.kind == vec["expect"]
        assert r.value.answer_nonce == vec.get("answer_nonce")


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
def test_peer_agrees_with_stream_vector(vec: dict) -> None:
    by_name = {f["name"]: f for f in VECTORS["frames"]}
    msgs, errors, answers = peer_stream(bytes.fromhex(vec["hex"]), vec["receiver"])
    assert [f for _, f in msgs] == [by_name[n]["fields"] for n in vec["expect_messages"]]
    assert errors == vec["expect_errors"]
    assert answers == vec["expect_answers"]


def peer_to_count(si: str, k: int, wire_type: str) -> int | None:
    """Section 3: value * K in binary64, ties to even, i16 saturated, u16 refused outside."""
    x = float(si) * k
    if x != x or abs(x) == float("inf"):
        return None
    c = round(x)  # Python's round is round-half-to-even
    if wire_type == "i16":
        return max(-C["I16_SATURATION"], min(C["I16_SATURATION"], c))
    return c if 0 <= c <= C["TORQUE_LIMIT_MAX_COUNT"] else None


@pytest.mark.parametrize("case", VECTORS["fixed_point"], ids=lambda c: f"{c['quantity']}:{c['si']}")
def test_peer_agrees_with_fixed_point_vector(case: dict) -> None:
    per_unit = {
        "torque": "TORQUE_COUNTS_PER_NM",
        "torque_limit": "TORQUE_COUNTS_PER_NM",
        "angle": "ANGLE_COUNTS_PER_RAD",
        "velocity": "VELOCITY_COUNTS_PER_RAD_S",
        "current": "CURRENT_COUNTS_PER_A",
        "temperature": "TEMPERATURE_COUNTS_PER_C",
    }
    k = C[per_unit[case["quantity"]]]
    assert k == case["counts_per_unit"]
    assert peer_to_count(case["si"], k, case["wire_type"]) == case["count"]


class PeerDevice:
    """The sequence rules of section 5.3 (and what HELLO, ENABLE, DISABLE do to them)."""

    def __init__(self) -> None:
        self.handshaken = self.enabled = False
        self.last = 0
        self.applied: list[int] = []
        self.counts = {"not_newer": 0, "refused": 0, "dropped_seq_0": 0, "seq_gaps": 0}

    def event(self, e: str | int) -> None:
        if e in ("hello", "hello_v2"):  # a foreign HELLO: the same, but UNPAIRED
            self.handshaken, self.enabled, self.last = e == "hello", False, 0
        elif e == "enable":
            self.enabled = self.handshaken
        elif e == "disable":
            self.enabled = False
        elif e == 0:
            self.counts["dropped_seq_0"] += 1  # check 10: never reaches the device logic
        elif not self.enabled:
            self.counts["refused"] += 1
        elif self.last and not 0 < (e - self.last) % 2**32 < 2**31:
            self.counts["not_newer"] += 1
        else:
            if self.last:
                gap = (e - self.last - 1) % 2**32
                self.counts["seq_gaps"] += gap - 1 if e < self.last else gap
            self.last = e
            self.applied.append(e)


@pytest.mark.parametrize("vec", VECTORS["sequences"], ids=lambda v: v["name"])
def test_peer_agrees_with_sequence_vector(vec: dict) -> None:
    dev = PeerDevice()
    for e in vec["events"]:
        dev.event(e)
    assert dev.applied == vec["applied"]
    assert dev.last == vec["last_seq_applied"]
    assert dev.counts == {k: vec[k] for k in dev.counts}


def test_payload_sizes_stated_in_the_document_match_the_layouts() -> None:
    sizes = dict(re.findall(r"(\w+) (\d+(?: \+ \d+n)?)[;.]", DOC.split("Payload sizes:")[1][:400]))
    sizes.update({"ENABLE": sizes.get("CLEAR_FAULTS"), "DISABLE": sizes.get("CLEAR_FAULTS")})
    for name, layout in MESSAGES.values():
        fixed = per = 0
        for _n, kind, arg, _c in layout:
            if kind == "scalar":
                fixed += struct.calcsize(SCALAR[arg])
            elif kind == "char":
                fixed += arg
            elif kind == "array":
                per += struct.calcsize(SCALAR[arg])
            else:
                per += sum(
                    struct.calcsize(SCALAR[a]) if k == "scalar" else a for _x, k, a, _y in arg
                )
        expect = f"{fixed}" + (f" + {per}n" if per else "")
        assert sizes[name] == expect, name


def test_worked_example_in_the_document_matches_the_vector() -> None:
    sec = DOC.split("### Worked example: TORQUE_CMD")[1].split("###")[0]
    wire_line = sec.split("wire (")[1].splitlines()[1]
    wire = bytes.fromhex(wire_line.replace("[", "").replace("]", ""))
    body_hex = "".join(
        re.match(r"\s+((?:[0-9a-f]{2} )+)", ln).group(1)
        for ln in sec.split("body (")[1].split("wire (")[0].splitlines()[1:]
        if re.match(r"\s+(?:[0-9a-f]{2} )+", ln)
    )
    vec = next(f for f in VECTORS["frames"] if f["name"] == "torque_4_joints")
    assert wire.hex() == vec["hex"]
    assert _stuff(bytes.fromhex(body_hex)) + b"\x00" == wire
    assert peer_decode(wire[:-1])[1] == vec["fields"]
