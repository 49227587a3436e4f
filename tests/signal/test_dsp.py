"""EmgConditioner against scipy's offline sosfilt, and chunking independence."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import signal

from exoctl.signal.dsp import EmgConditioner, design_filters


def _offline(c: EmgConditioner, x: np.ndarray) -> np.ndarray:
    """The same chain run one-shot through scipy (band-pass starts at x[0]'s steady state)."""
    zi = signal.sosfilt_zi(c.pre_sos)[:, :, None] * x[0]
    mid, _ = signal.sosfilt(c.pre_sos, x, axis=0, zi=zi)
    return signal.sosfilt(c.envelope_sos, np.abs(mid), axis=0) / c.mvc


def _emg(rng: np.random.Generator, n: int, ch: int, fs: float) -> np.ndarray:
    t = np.arange(n) / fs
    bursts = 0.5 + 0.5 * np.sin(2 * np.pi * 0.9 * t)[:, None] ** 2
    hum = 20.0 * np.sin(2 * np.pi * 50.0 * t)[:, None]
    return 100.0 * bursts * rng.standard_normal((n, ch)) + hum + rng.normal(0, 30, ch)


def _stream(c: EmgConditioner, x: np.ndarray, sizes: list[int]) -> np.ndarray:
    out, i, j = [], 0, 0
    while i < len(x):
        n = sizes[j % len(sizes)]
        j += 1
        out.append(c.process(x[i : i + n]).copy())
        i += n
    return np.vstack(out)


@pytest.mark.parametrize("notch", [None, 50.0])
@pytest.mark.parametrize("fs", [1000.0, 2000.0])
def test_matches_scipy_sosfilt_in_random_chunks(notch, fs):
    rng = np.random.default_rng(7)
    x = _emg(rng, 6000, 5, fs)
    mvc = rng.uniform(5.0, 50.0, 5)
    c = EmgConditioner(fs, 5, notch_hz=notch, mvc=mvc)
    y = _stream(c, x, [int(s) for s in rng.integers(1, 300, 100)])
    ref = _offline(c, x)
    assert y.shape == x.shape
    np.testing.assert_allclose(y, ref, rtol=0, atol=1e-9 * np.abs(ref).max())


@settings(deadline=None, max_examples=40)
@given(
    sizes=st.lists(st.integers(1, 97), min_size=1, max_size=20),
    seed=st.integers(0, 2**31 - 1),
)
def test_result_independent_of_chunking(sizes, seed):
    rng = np.random.default_rng(seed)
    x = _emg(rng, 700, 3, 2000.0)
    one = EmgConditioner(2000.0, 3, notch_hz=60.0, max_chunk=700).process(x).copy()
    streamed = _stream(EmgConditioner(2000.0, 3, notch_hz=60.0), x, sizes)
    np.testing.assert_allclose(streamed, one, rtol=0, atol=1e-10 * np.abs(one).max())


def test_notch_removes_mains_and_envelope_tracks_amplitude():
    fs = 2000.0
    t = np.arange(int(4 * fs)) / fs
    hum = 500.0 * np.sin(2 * np.pi * 50 * t)[:, None]
    c = EmgConditioner(fs, 1, notch_hz=50.0)
    assert np.abs(c.process(hum[:4000])[-1000:]).max() < 0.02 * 500.0
    rng = np.random.default_rng(3)
    quiet, loud = rng.standard_normal((4000, 1)), 10.0 * rng.standard_normal((4000, 1))
    c2 = EmgConditioner(fs, 1)
    q = c2.process(quiet)[-2000:].mean()
    lo = c2.process(loud)[-2000:].mean()
    assert 8.0 < lo / q < 12.0


def test_enveloped_input_only_normalises():
    x = np.array([[0.2, 4.0], [0.4, 8.0]])
    c = EmgConditioner(1000.0, 2, mvc=np.array([0.4, 8.0]), enveloped_input=True)
    np.testing.assert_allclose(c.process(x), [[0.5, 0.5], [1.0, 1.0]])


def test_output_is_a_reused_buffer_and_reset_restarts():
    rng = np.random.default_rng(0)
    x = _emg(rng, 400, 2, 2000.0)
    c = EmgConditioner(2000.0, 2)
    first = c.process(x).copy()
    # a tick's result lives in the filter's own (two, alternating) buffers: no allocation
    views = [c.process(x[i : i + 4]) for i in range(0, 12, 4)]
    assert np.shares_memory(views[0], views[2])
    big = [c.process(x[:100]), c.process(x[100:200])]
    assert np.shares_memory(big[0], big[1])
    c.reset()
    np.testing.assert_allclose(c.process(x), first, atol=1e-12)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"bandpass_hz": (20.0, 600.0)}, "fs/2"),
        ({"bandpass_hz": (100.0, 50.0)}, "0 < low < high"),
        ({"notch_hz": 700.0}, "notch_hz"),
        ({"envelope_hz": 0.0}, "envelope_hz"),
        ({"mvc": np.array([1.0, 0.0])}, "bad channels \\[1\\]"),
        ({"mvc": np.array([1.0])}, "one value per channel"),
    ],
)
def test_bad_settings_are_refused(kwargs, match):
    with pytest.raises(ValueError, match=match):
        EmgConditioner(1000.0, 2, **kwargs)


def test_bad_chunks_are_refused_without_touching_state():
    c = EmgConditioner(2000.0, 2, max_chunk=8)
    with pytest.raises(ValueError, match="shape"):
        c.process(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="max_chunk"):
        c.process(np.zeros((9, 2)))
    good = np.ones((4, 2))
    ref = EmgConditioner(2000.0, 2).process(good).copy()
    bad = good.copy()
    bad[1, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        c.process(bad)
    np.testing.assert_array_equal(c.process(good), ref)


def test_design_filters_is_what_the_conditioner_runs():
    pre, post = design_filters(2000.0, notch_hz=50.0)
    c = EmgConditioner(2000.0, 1, notch_hz=50.0)
    np.testing.assert_array_equal(pre, c.pre_sos)
    np.testing.assert_array_equal(post, c.envelope_sos)
    assert pre.shape[0] == 5  # 4 band-pass sections + 1 notch section


@pytest.mark.parametrize(
    "kw", [{"notch_hz": 50.0}, {"bandpass_hz": (10.0, 300.0), "envelope_hz": 4.0}]
)
def test_a_design_made_apart_is_bit_identical_and_made_once(monkeypatch, kw):
    """The estimator process designs its filters in a short-lived interpreter (no scipy in a
    long-lived process): the arrays it reads back are exactly scipy's, asked for once."""
    from exoctl.signal import dsp

    here = design_filters(2000.0, **kw)
    monkeypatch.setattr(dsp, "_apart", True)
    monkeypatch.setattr(dsp, "_designed", {})
    apart = design_filters(2000.0, **kw)
    assert len(dsp._designed) == 1
    again = design_filters(2000.0, **kw)  # from the cache, a copy the caller may change
    assert len(dsp._designed) == 1
    for a, b, c in zip(here, apart, again, strict=True):
        assert a.dtype == b.dtype == np.float64 and a.tobytes() == b.tobytes() == c.tobytes()
    apart[0][:] = 0.0
    assert design_filters(2000.0, **kw)[0].tobytes() == here[0].tobytes()
    with pytest.raises(ValueError, match="notch_hz 1500 must be between 0 and fs/2"):
        design_filters(2000.0, notch_hz=1500.0)  # refused here, before any process starts


def test_designs_handed_over_are_used_as_they_are(monkeypatch):
    """A restarted estimator process gets its predecessor's designs (no new interpreter, no
    scipy): what it is handed is what it runs, also when it is not what scipy would give."""
    from exoctl.signal import dsp

    monkeypatch.setattr(dsp, "_apart", False)
    monkeypatch.setattr(dsp, "_designed", {})
    key = (2000.0, 20.0, 450.0, None, 6.0)
    handed = (np.zeros((4, 6)), np.ones((1, 6)))
    dsp.design_apart({key: handed})
    pre, post = design_filters(2000.0)
    assert np.array_equal(pre, handed[0]) and np.array_equal(post, handed[1])
    assert dsp.filter_designs() == {key: handed}
