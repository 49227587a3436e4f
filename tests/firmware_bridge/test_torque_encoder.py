"""The send path's preallocated encoder equals the reference codec, frame for frame."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge import protocol as P


@settings(max_examples=600, deadline=None)
@given(
    counts=st.lists(st.integers(-32767, 32767), min_size=1, max_size=P.MAX_JOINTS),
    seq=st.integers(1, 2**32 - 1),  # 0 is reserved (never sent)
    t=st.integers(0, 2**32 - 1),
)
def test_encoder_equals_encode_of_the_message(counts, seq, t):
    enc = P.TorqueFrameEncoder(len(counts))
    frame = bytes(enc.encode(seq, t, counts))
    assert frame == P.encode(P.TorqueCommand(seq, t, tuple(counts)))
    assert P.decode(frame[:-1]) == P.TorqueCommand(seq, t, tuple(counts))
    assert bytes(enc.encode(seq, t, [0] * len(counts))) != frame or not any(counts)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(min_size=0, max_size=253))
def test_cobs_encode_into_equals_cobs_encode(data):
    out = bytearray(len(data) + 2)
    n = P.cobs_encode_into(bytearray(data), out)
    assert bytes(out[:n]) == P.cobs_encode(data) + b"\x00"


def test_cobs_encode_into_refuses_long_frames():
    with pytest.raises(ValueError, match="shorter than 254"):
        P.cobs_encode_into(bytearray(254), bytearray(300))
