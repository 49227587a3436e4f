"""Every model input kind's record: its entry round-trips, its streaming feeder gives what its
batch form gives on the same ticks, a push allocates no array, bad entries are refused by key.

One example record per registered kind: a kind added without an example here fails
``test_every_registered_kind_has_an_example``, so every kind goes through the rest.
"""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest

import exoctl
from exoctl.estimation.input_kinds import (
    KINDS,
    Decimated,
    InputKindError,
    Instant,
    ModelInput,
    Sums,
    Window,
    parse_input,
)
from exoctl.estimation.torque_model import TorqueModel

EXAMPLES: list[ModelInput] = [
    Instant(),
    Window(40, 500.0),
    Sums((1, 5, 10, 20, 40), 500.0),
    Decimated(8, 5, 500.0),
    Decimated(6, 1, 250.0),
]
N_SOURCE, N_FEATURES = 12, 7


def _ids(kinds):
    return [k.describe() for k in kinds]


def test_every_registered_kind_has_an_example():
    assert {k.name for k in EXAMPLES} == set(KINDS)


@pytest.mark.parametrize("kind", EXAMPLES, ids=_ids(EXAMPLES))
def test_the_entry_parses_back_to_the_same_record(kind):
    assert parse_input(kind.entry()) == kind
    assert kind.shape(N_FEATURES)[-1] == N_FEATURES


def test_an_absent_entry_is_instantaneous():
    assert parse_input(None) == Instant() and parse_input({}) == Instant()


def _stream(kind, X, idx):
    """The feeder's output at every tick of the source rows ``X`` (n, N_SOURCE)."""
    out = np.zeros(kind.shape(len(idx)), dtype=np.float32)
    feeder = kind.feeder(out, idx)
    got = []
    for row in X:
        feeder.push(row)
        got.append(out.copy())
    return np.array(got), feeder


@pytest.mark.parametrize("kind", EXAMPLES, ids=_ids(EXAMPLES))
def test_streaming_equals_batch_on_the_same_ticks_and_after_a_reset(kind):
    rng = np.random.default_rng(7)
    src = rng.normal(size=(3 * kind.span_ticks + 40, N_SOURCE)).astype(np.float32)
    idx = np.array([3, 0, 11, 5, 5, 8, 1], dtype=np.intp)  # a gather, a feature twice
    want = kind.batch(src[:, idx], np.arange(len(src)))
    got, feeder = _stream(kind, src, idx)
    assert got.shape == want.shape == (len(src), *kind.shape(len(idx)))
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    # a reset starts again from the past taken as equal to the first step
    feeder.reset()
    out = np.zeros(kind.shape(len(idx)), dtype=np.float32)
    again = kind.feeder(out, idx)
    for row in src[5:30]:
        feeder.push(row)
        again.push(row)
    b = kind.batch(src[5:30][:, idx], np.array([24]))[0]
    np.testing.assert_allclose(out, b, rtol=1e-5, atol=1e-5)


def test_the_decimated_rows_are_block_means_oldest_first():
    kind = Decimated(3, 4, 500.0)
    X = np.arange(20, dtype=np.float32)[:, None]  # feature value = tick number
    rows = kind.batch(X, np.array([19, 5]))[:, :, 0]
    np.testing.assert_array_equal(rows[0], [9.5, 13.5, 17.5])  # ticks 8-11, 12-15, 16-19
    # before the first tick the past repeats tick 0: ticks -6..-3 -> 0, -2..1 -> 0,0,0,1
    np.testing.assert_array_equal(rows[1], [0.0, 0.25, 3.5])


@pytest.mark.parametrize("kind", [k for k in EXAMPLES if k.has_history], ids=lambda k: k.describe())
def test_a_push_allocates_no_array(kind):
    """Traced memory (numpy's buffers included) may grow by a few Python objects (views),
    never by a buffer the size of the model's input."""
    n_f = 256
    idx = np.arange(n_f, dtype=np.intp) % N_SOURCE
    out = np.zeros(kind.shape(n_f), dtype=np.float32)
    feeder = kind.feeder(out, idx)
    src = np.random.default_rng(1).normal(size=N_SOURCE).astype(np.float32)
    for _ in range(2 * kind.span_ticks):
        feeder.push(src)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(200):
            feeder.push(src)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert out.nbytes > 4096
    assert peak - base < 4096


@pytest.mark.parametrize(
    "entry,match",
    [
        ({"kind": "hologram"}, r"input kind 'hologram', expected one of \('instant', 'window'"),
        ({"kind": "window", "tick_rate_hz": 500}, "'window' needs 'ticks'"),
        ({"kind": "window", "ticks": "many", "tick_rate_hz": 500}, "'ticks' is 'many'"),
        ({"kind": "window", "ticks": 0, "tick_rate_hz": 500}, "ticks >= 1"),
        ({"kind": "sums", "lags": [3, 2], "tick_rate_hz": 500}, "strictly increasing lags"),
        ({"kind": "decimated", "ticks": 4, "tick_rate_hz": 500}, "'decimated' needs 'every'"),
        ({"kind": "decimated", "ticks": 4, "every": 0, "tick_rate_hz": 500}, "every >= 1"),
        ({"kind": "decimated", "ticks": 4, "every": 2, "tick_rate_hz": -1}, "positive rate"),
        ([1, 2], "expected an object with a 'kind'"),
    ],
)
def test_a_bad_entry_is_refused_naming_the_key(entry, match):
    with pytest.raises(InputKindError, match=match):
        parse_input(entry)


def test_the_shipped_models_load_with_their_kinds():
    models = Path(exoctl.__file__).parent / "models"
    kinds = {p.name: TorqueModel(p).info.input for p in sorted(models.glob("*.onnx"))}
    assert kinds["default.onnx"] == Instant()
    assert isinstance(kinds["network.onnx"], Sums) and kinds["network.onnx"].rate_hz == 500.0
