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


def test_c_codec_passes_vectors(c_runner) -> None:
    v = json.loads(VECTORS_PATH.read_text())
    frames = v["frames"]
    out = c_runner([f"F {f['hex']}" for f in frames])
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
            assert tok == ["err", f["expect"]], (f["name"], line)


def test_c_receiver_passes_stream_vectors(c_runner) -> None:
    v = json.loads(VECTORS_PATH.read_text())
    by_name = {f["name"]: f for f in v["frames"]}
    out = iter(c_runner([f"S {s['hex']}" for s in v["streams"]]))
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


def test_c_and_python_agree_on_random_and_mutated_frames(c_runner) -> None:
    """Same verdict (and same fields) from both codecs on garbage and on mutated valid frames."""
    rng = random.Random(1234)
    v = json.loads(VECTORS_PATH.read_text())
    valid = [bytes.fromhex(f["hex"]) for f in v["frames"] if f["expect"] == "ok"]
    cases: list[bytes] = []
    for _ in range(1500):
        w = bytearray(rng.choice(valid)[:-1])
        for _ in range(rng.randint(1, 3)):
            op = rng.random()
            if op < 0.6 and w:
                w[rng.randrange(len(w))] ^= 1 << rng.randrange(8)
            elif op < 0.8 and w:
                del w[rng.randrange(len(w))]
            else:
                w.insert(rng.randrange(len(w) + 1), rng.randrange(1, 256))
        cases.append(bytes(b for b in w if b != 0) + b"\x00")  # keep it one frame
    for _ in range(500):
        cases.append(bytes(rng.randrange(1, 256) for _ in range(rng.randint(1, 260))) + b"\x00")
    out = c_runner([f"F {c.hex()}" for c in cases])
    from firmware_bridge.vectors.generate import to_fields

    for c, line in zip(cases, out, strict=True):
        tok = line.split()
        try:
            m = P.decode(c[:-1])
        except P.FrameError as e:
            assert tok == ["err", e.kind], (c.hex(), line)
            continue
        assert tok[0] == "ok", (c.hex(), line)
        got = parse_kv(tok[1:-1])
        got.pop("type")
        assert got == flatten(to_fields(m))


def test_c_and_python_receivers_agree_on_noisy_streams(c_runner) -> None:
    """Valid frames with random bit flips, dropped and inserted bytes: the byte-at-a-time C
    receiver and the Python StreamDecoder report the same messages and counters."""
    from firmware_bridge.vectors.generate import to_fields

    rng = random.Random(99)
    v = json.loads(VECTORS_PATH.read_text())
    valid = [bytes.fromhex(f["hex"]) for f in v["frames"] if f["expect"] == "ok"]
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
        streams.append(bytes(s))
    out = iter(c_runner([f"S {s.hex()}" for s in streams]))
    for s in streams:
        d = P.StreamDecoder()
        msgs = d.feed(s)
        head = next(out).split()
        counts = {k: int(x) for k, x in parse_kv(head[1:]).items()}
        assert counts.pop("good") == d.good == len(msgs)
        assert counts == d.errors, s.hex()
        for m in msgs:
            got = parse_kv(next(out).split()[1:])
            assert got.pop("type") == str(m.TYPE)
            assert got == flatten(to_fields(m))
