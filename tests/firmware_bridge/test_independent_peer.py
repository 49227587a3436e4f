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
        if cells and not set(cells[0]) <= set("-: ") and cells[0] not in ("id", "constant"):
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


class Reject(Exception):
    def __init__(self, kind: str) -> None:
        self.kind = kind


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
            s = raw.split(b"\x00", 1)[0]
            if raw[len(s) :].strip(b"\x00") or any(b >= 0x80 for b in s):
                raise Reject("length")
            fields[name] = s.decode("ascii")
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


def peer_decode(frame: bytes) -> tuple[int, dict]:
    """Receiver rules of docs/protocol.md section 2, in the documented order."""
    if len(frame) > C["MAX_ENCODED"]:
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
    if version != C["PROTOCOL_VERSION"]:
        raise Reject("version")
    if mtype not in MESSAGES:
        raise Reject("type")
    payload = body[hs:-cs]
    fields: dict = {}
    if _parse(MESSAGES[mtype][1], payload, 0, fields) != len(payload):
        raise Reject("length")
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


def peer_stream(data: bytes) -> tuple[list[tuple[int, dict]], dict[str, int]]:
    msgs, errors, buf, overflow = [], {}, bytearray(), False
    for b in data:
        if b != 0:
            if not overflow:
                buf.append(b)
                if len(buf) > C["MAX_ENCODED"]:
                    overflow, buf = True, bytearray()
            continue
        if overflow:
            errors["framing"] = errors.get("framing", 0) + 1
        elif buf:
            try:
                msgs.append(peer_decode(bytes(buf)))
            except Reject as r:
                errors[r.kind] = errors.get(r.kind, 0) + 1
        overflow, buf = False, bytearray()
    return msgs, errors


def test_document_declares_the_core_constants() -> None:
    assert C["PROTOCOL_VERSION"] == VECTORS["protocol_version"]
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
        mtype, fields = peer_decode(wire[:-1])
        assert mtype == vec["type"]
        assert fields == vec["fields"]
        assert peer_encode(mtype, fields) == wire
    else:
        with pytest.raises(Reject) as r:
            peer_decode(wire[:-1])
        assert r.value.kind == vec["expect"]


@pytest.mark.parametrize("vec", VECTORS["streams"], ids=lambda v: v["name"])
def test_peer_agrees_with_stream_vector(vec: dict) -> None:
    by_name = {f["name"]: f for f in VECTORS["frames"]}
    msgs, errors = peer_stream(bytes.fromhex(vec["hex"]))
    assert [f for _, f in msgs] == [by_name[n]["fields"] for n in vec["expect_messages"]]
    assert errors == vec["expect_errors"]


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
