"""The C reference codec passes the same vectors as the Python codec (gcc, host-compiled)."""

from __future__ import annotations

import json
import random
import shutil
import subprocess
from pathlib import Path

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.vectors.generate import VECTORS_PATH

C_DIR = Path(P.__file__).with_name("c")
CC = shutil.which("gcc") or shutil.which("cc")
pytestmark = pytest.mark.skipif(CC is None, reason="no C compiler (gcc/cc) on PATH")


def flatten(fields: dict, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in fields.items():
        key = f"{prefix}{k}"
        if isinstance(v, list):
            for i, item in enumerate(v):
                if isinstance(item, dict):
                    out.update(flatten(item, f"{key}.{i}."))
                else:
                    out[f"{key}.{i}"] = str(item)
        else:
            out[key] = str(v)
    return out


def parse_kv(tokens: list[str]) -> dict[str, str]:
    return dict(t.split("=", 1) for t in tokens)


@pytest.fixture(scope="module")
def c_runner(tmp_path_factory):
    d = tmp_path_factory.mktemp("cproto")
    exe = d / "test_vectors"
    cmd = [
        CC,
        "-std=c99",
        "-O2",
        "-Wall",
        "-Wextra",
        "-Wpedantic",
        "-Wconversion",
        "-Werror",
        "-fsanitize=address,undefined",
        "-fno-sanitize-recover=all",
        str(C_DIR / "exoctl_proto.c"),
        str(C_DIR / "test_vectors.c"),
        "-o",
        str(exe),
    ]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "sanitize" in r.stderr:
        # toolchains without libasan/libubsan: build plain rather than not at all
        cmd = [
            c for c in cmd if not c.startswith("-fsanitize") and c != "-fno-sanitize-recover=all"
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, f"C codec failed to compile:\n{r.stderr}"

    def run(lines: list[str]) -> list[str]:
        inp = d / "in.txt"
        inp.write_text("\n".join(lines) + "\n")
        p = subprocess.run([str(exe), str(inp)], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout + p.stderr
        out = p.stdout.splitlines()
        assert out[0] == "crc_check 29b1"
        return out[1:]

    return run


_R = {P.DEVICE: "d", P.HOST: "h", None: "a"}


def _frame_line(receiver: str | None, wire: bytes) -> str:
    return f"F {_R[receiver]} {wire.hex()}"


def _python_verdict(wire: bytes, receiver: str | None) -> list[str]:
    """The C harness's output line for one frame, as the Python codec sees it (tokens)."""
    from firmware_bridge.vectors.generate import to_fields

    try:
        m = P.decode(wire[:-1], receiver)
    except P.FrameError as e:
        tok = ["err", e.kind]
        if receiver == P.DEVICE and e.hello_nonce is not None:
            tok.append(f"answer_nonce={e.hello_nonce}")
        return tok
    return ["ok", f"type={m.TYPE}", *(f"{k}={v}" for k, v in flatten(to_fields(m)).items())]


def test_c_codec_passes_vectors(c_runner) -> None:
    v = json.loads(VECTORS_PATH.read_text())
    frames = v["frames"]
    out = c_runner([_frame_line(f["receiver"], bytes.fromhex(f["hex"])) for f in frames])
    assert len(out) == len(frames)
    for f, line in zip(frames, out, strict=True):
        tok = line.split()
        if f["expect"] == "ok":
            assert tok[0] == "ok", (f["name"], line)
            assert tok[-1] == "reencode=1", (f["name"], "C re-encoding differs")
            got = parse_kv(tok[1:-1])
            assert got.pop("type") == str(f["type"])
            assert got == flatten(f["fields"]), f["name"]
        else:
            want = ["err", f["expect"]]
            if f.get("answer_nonce") is not None:
                want.append(f"answer_nonce={f['answer_nonce']}")
            assert tok == want, (f["name"], line)


def test_c_receiver_passes_stream_vectors(c_runner) -> None:
    v = json.loads(VECTORS_PATH.read_text())
    by_name = {f["name"]: f for f in v["frames"]}
    out = iter(c_runner([f"S {_R[s['receiver']]} {s['hex']}" for s in v["streams"]]))
    for s in v["streams"]:
        head = next(out).split()
        assert head[0] == "stream"
        counts = {k: int(x) for k, x in parse_kv(head[1:]).items()}
        assert counts.pop("good") == len(s["expect_messages"]), s["name"]
        assert {k: x for k, x in counts.items() if x} == s["expect_errors"], s["name"]
        for name in s["expect_messages"]:
            tok = next(out).split()
            assert tok[0] == "msg"
            got = parse_kv(tok[1:])
            got.pop("type")
            assert got == flatten(by_name[name]["fields"]), (s["name"], name)
        for nonce in s["expect_answers"]:
            assert next(out) == f"answer nonce={nonce}", s["name"]


def test_c_fixed_point_passes_vectors(c_runner) -> None:
    """Ties to even on the binary64 product, saturation at +-32767, the u16 limit refused
    outside 0..65535: the C helpers give exactly the vectors' counts."""
    v = json.loads(VECTORS_PATH.read_text())
    cases = v["fixed_point"]
    out = c_runner([f"R {c['wire_type']} {c['counts_per_unit']} {c['si']}" for c in cases])
    for c, line in zip(cases, out, strict=True):
        want = "err arg" if c["count"] is None else f"count {c['count']}"
        assert line == want, (c, line)


def test_c_and_python_agree_on_random_and_mutated_frames(c_runner) -> None:
    """Same verdict (and same fields) from both codecs on garbage and on mutated valid frames,
    at each kind of receiver."""
    rng = random.Random(1234)
    v = json.loads(VECTORS_PATH.read_text())
    valid = [bytes.fromhex(f["hex"]) for f in v["frames"]]
    cases: list[tuple[str | None, bytes]] = []
    for _ in range(2000):
        w = bytearray(rng.choice(valid)[:-1])
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.6 and w:
                w[rng.randrange(len(w))] ^= 1 << rng.randrange(8)
            elif op < 0.8 and w:
                del w[rng.randrange(len(w))]
            else:
                w.insert(rng.randrange(len(w) + 1), rng.randrange(1, 256))
        # keep it one frame
        cases.append((rng.choice((P.DEVICE, P.HOST, None)), bytes(b for b in w if b) + b"\0"))
    for _ in range(500):
        junk = bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 260))) + b"\x00"
        cases.append((rng.choice((P.DEVICE, P.HOST, None)), junk))
    # valid CRC and structure, random payload bytes: exercises the direction and value checks
    for _ in range(1500):
        mtype = rng.choice([*P.MESSAGE_TYPES, 0x00, 0x7F, 0x86, 0xFF])
        payload = bytes(rng.randrange(256) for _ in range(rng.choice((2, 4, 5, 7, 8, 9, 17, 28))))
        body = P.HEADER.pack(rng.choice((1, 1, 1, 2)), mtype, len(payload)) + payload
        body += P.CRC.pack(P.crc16(body))
        cases.append((rng.choice((P.DEVICE, P.HOST, None)), P.cobs_encode(body) + b"\x00"))
    out = c_runner([_frame_line(r, c) for r, c in cases])
    kinds: set[str] = set()
    for (r, c), line in zip(cases, out, strict=True):
        tok = line.split()
        if tok[0] == "ok":
            assert tok[-1] == "reencode=1", (c.hex(), line)
            tok = tok[:-1]
        assert tok == _python_verdict(c, r), (r, c.hex(), line)
        kinds.add(tok[1] if tok[0] == "err" else "ok")
    # the sample reaches every verdict, or the agreement above proves less than it says
    assert kinds == {"ok", *P.FrameError.KINDS}, kinds


def test_c_and_python_receivers_agree_on_noisy_streams(c_runner) -> None:
    """Valid frames with random bit flips, dropped and inserted bytes: the byte-at-a-time C
    receiver and the Python StreamDecoder report the same messages, counters and answers."""
    from firmware_bridge.vectors.generate import to_fields

    rng = random.Random(99)
    v = json.loads(VECTORS_PATH.read_text())
    valid = [bytes.fromhex(f["hex"]) for f in v["frames"]]
    streams = []
    for _ in range(300):
        s = bytearray(b"".join(rng.choice(valid) for _ in range(rng.randint(1, 12))))
        for _ in range(rng.randint(0, 6)):
            op, p = rng.random(), rng.randrange(len(s))
            if op < 0.6:
                s[p] ^= 1 << rng.randrange(8)
            elif op < 0.8:
                del s[p]
            else:
                s[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        streams.append((rng.choice((P.DEVICE, P.HOST, None)), bytes(s)))
    out = iter(c_runner([f"S {_R[r]} {s.hex()}" for r, s in streams]))
    for r, s in streams:
        answers: list[int] = []

        def on_version(e: P.FrameError, answers: list[int] = answers, r: str | None = r) -> None:
            if r == P.DEVICE and e.hello_nonce is not None:
                answers.append(e.hello_nonce)

        d = P.StreamDecoder(on_version, receiver=r)
        msgs = d.feed(s)
        head = next(out).split()
        counts = {k: int(x) for k, x in parse_kv(head[1:]).items()}
        assert counts.pop("good") == d.good == len(msgs)
        assert counts == d.errors, s.hex()
        for m in msgs:
            got = parse_kv(next(out).split()[1:])
            assert got.pop("type") == str(m.TYPE)
            assert got == flatten(to_fields(m))
        for nonce in answers:
            assert next(out) == f"answer nonce={nonce}"
