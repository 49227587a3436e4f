"""Property tests (hypothesis) of the Python codec."""

from __future__ import annotations

import json
import random

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P
from firmware_bridge.vectors.generate import VECTORS_PATH

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
i16 = st.integers(-32768, 32767)
# the values docs/protocol.md allows (section 4, field values)
name_chars = st.characters(min_codepoint=P.NAME_FIRST_BYTE, max_codepoint=P.NAME_LAST_BYTE)
seq = st.integers(1, 0xFFFFFFFF)
faults = st.integers(0, P.FAULTS_DEFINED)
n_joints = st.integers(1, P.MAX_JOINTS)


@st.composite
def torque_cmd(draw):
    n = draw(n_joints)
    return P.TorqueCommand(draw(seq), draw(u32), tuple(draw(st.lists(i16, min_size=n, max_size=n))))


@st.composite
def telemetry(draw):
    n = draw(n_joints)
    col = st.lists(i16, min_size=n, max_size=n).map(tuple)
    return P.Telemetry(
        draw(u32),
        draw(u32),
        draw(u32),
        draw(st.integers(0, P.FLAGS_DEFINED)),
        draw(faults),
        draw(col),
        draw(col),
        draw(col),
        draw(col),
        draw(col),
        draw(st.lists(st.integers(0, P.JFAULTS_DEFINED), min_size=n, max_size=n).map(tuple)),
    )


@st.composite
def device_info(draw):
    name = st.text(alphabet=name_chars, min_size=1, max_size=P.JOINT_NAME_LEN)
    joints = draw(
        st.lists(st.builds(P.JointInfo, name, u16, i16, i16), min_size=1, max_size=P.MAX_JOINTS)
    )
    did = draw(st.text(alphabet=name_chars, min_size=1, max_size=P.DEVICE_ID_LEN))
    timing = st.integers(1, 0xFFFF)
    return P.DeviceInfo(draw(u32), draw(timing), draw(timing), did, tuple(joints))


@st.composite
def fault_report(draw):
    code = draw(st.integers(0, P.N_FAULT_CODES - 1))
    latched = int(bool((1 << code) & P.LATCHED_FAULTS))
    joint = draw(st.one_of(st.integers(0, P.MAX_JOINTS - 1), st.just(P.JOINT_DEVICE)))
    return P.FaultReport(draw(u32), code, latched, joint, draw(faults))


messages = st.one_of(
    st.builds(P.Hello, u32),
    st.builds(P.Enable, u16),
    st.builds(P.Disable, u16),
    st.builds(P.ClearFaults, u16),
    torque_cmd(),
    st.builds(P.Heartbeat, u32, u32),
    device_info(),
    st.builds(
        P.Ack,
        u16,
        st.sampled_from(P.REQUEST_TYPES),
        st.sampled_from(P.ACK_RESULTS),
        st.sampled_from(P.STATES),
        faults,
    ),
    telemetry(),
    fault_report(),
    st.builds(P.EstopState, u32, st.integers(0, 1)),
)


@settings(deadline=None, max_examples=600)
@given(messages)
def test_decode_encode_round_trip(m) -> None:
    wire = P.encode(m)
    assert wire[-1] == 0 and 0 not in wire[:-1]
    assert len(wire) <= P.MAX_ENCODED + 1
    assert P.decode(wire[:-1]) == m
    d = P.StreamDecoder(receiver=P.meant_for(m.TYPE))
    assert d.feed(wire) == [m]


def test_every_message_type_is_generated() -> None:
    seen: set[int] = set()

    @settings(deadline=None, max_examples=300, suppress_health_check=list(HealthCheck))
    @given(messages)
    def collect(m) -> None:
        seen.add(m.TYPE)

    collect()
    assert seen == set(P.MESSAGE_TYPES)


@settings(deadline=None, max_examples=1500)
@given(st.binary(max_size=600), st.sampled_from((P.DEVICE, P.HOST, None)))
def test_stream_decoder_never_raises(data: bytes, receiver: str | None) -> None:
    d = P.StreamDecoder(receiver=receiver)
    msgs = d.feed(data)
    assert d.good == len(msgs)
    assert receiver is None or all(P.meant_for(m.TYPE) == receiver for m in msgs)
    # whatever came before, a delimiter followed by a valid frame is always recovered
    m = P.Heartbeat(1, 2) if receiver != P.HOST else P.EstopState(1, 0)
    assert d.feed(b"\x00" + P.encode(m)) == [m]


@settings(deadline=None, max_examples=1500)
@given(st.binary(max_size=300))
def test_decode_raises_only_frame_error(data: bytes) -> None:
    try:
        P.decode(data)
    except P.FrameError as e:
        assert e.kind in P.FrameError.KINDS


def _accepts(bad: bytes) -> list:
    d = P.StreamDecoder(receiver=None)  # either end: a corrupted frame is accepted by neither
    return d.feed(b"\x00" + bad + b"\x00")


def _valid_vector_frames() -> list[bytes]:
    v = json.loads(VECTORS_PATH.read_text())
    return [bytes.fromhex(f["hex"]) for f in v["frames"] if f["expect"] == "ok"]


def test_every_single_byte_corruption_is_rejected() -> None:
    """Exhaustive: every position (delimiter included) x every other byte value, every valid
    vector frame. A frame changed in one byte is never accepted (CRC-16 catches every burst
    of up to 16 bits; a corrupted COBS code byte breaks the structure or the length)."""
    for wire in _valid_vector_frames():
        for pos in range(len(wire)):
            for val in range(256):
                if val == wire[pos]:
                    continue
                bad = wire[:pos] + bytes([val]) + wire[pos + 1 :]
                assert _accepts(bad) == [], (wire.hex(), pos, val)


def test_every_double_bit_flip_is_rejected() -> None:
    """Exhaustive over all pairs of bit flips of a torque command and an ack frame."""
    v = {f["name"]: bytes.fromhex(f["hex"]) for f in json.loads(VECTORS_PATH.read_text())["frames"]}
    for name in ("torque_4_joints", "ack_enable_ok"):
        wire = v[name]
        nbits = 8 * len(wire)
        for a in range(nbits):
            for b in range(a + 1, nbits):
                w = bytearray(wire)
                w[a >> 3] ^= 1 << (a & 7)
                w[b >> 3] ^= 1 << (b & 7)
                assert _accepts(bytes(w)) == [], (name, a, b)


# Random double-byte corruptions are *not* all detectable by a 16-bit CRC: about 1 in 65 536
# passes the CRC and the structural checks reject most of those (measured: 1 in 400 000 on the
# vector frames, see docs/protocol.md section 2). This test therefore runs a fixed, reproducible
# sample (derandomize) rather than claiming a guarantee the code does not have.
@settings(deadline=None, max_examples=300, derandomize=True)
@given(messages, st.integers(0, 2**32 - 1))
def test_random_single_and_double_corruptions_are_rejected(m, seed: int) -> None:
    rng = random.Random(seed)
    wire = P.encode(m)
    for n_err in (1, 2):
        for _ in range(20):
            w = bytearray(wire)
            for p in rng.sample(range(len(w)), min(n_err, len(w))):
                w[p] ^= rng.randrange(1, 256)  # any change of the byte, 0x00 included
            assert _accepts(bytes(w)) == [], (m, w.hex())
