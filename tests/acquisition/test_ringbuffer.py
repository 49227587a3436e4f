from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from exoctl.acquisition.ringbuffer import RingBuffer


def _chunk(start: int, n: int, ch: int = 3) -> tuple[np.ndarray, np.ndarray]:
    idx = np.arange(start, start + n)
    return np.repeat(idx[:, None], ch, axis=1).astype(np.float32), idx * 0.5


@settings(max_examples=200, deadline=None)
@given(
    capacity=st.integers(4, 64),
    ops=st.lists(st.tuples(st.integers(0, 20), st.integers(1, 30)), min_size=1, max_size=40),
)
def test_reader_sees_every_sample_in_order_or_counts_the_loss(capacity, ops):
    ring = RingBuffer(capacity, 3)
    out = np.zeros((30, 3), np.float32)
    stamps, arrival = np.zeros(30), np.zeros(30)
    written = 0
    seen: list[np.ndarray] = []
    for w, r in ops:
        data, ts = _chunk(written, w)
        ring.write(data, ts, arrival=float(written))
        written += w
        n = ring.read_new(out[:r], stamps[:r], arrival[:r])
        assert np.array_equal(out[:n, 0], stamps[:n] * 2)  # samples and stamps travel together
        seen.append(out[:n, 0].copy())
    got = np.concatenate(seen) if seen else np.zeros(0)
    assert np.all(np.diff(got) > 0)  # strictly in order, never repeated
    assert ring.written == written
    # Everything not delivered is either still pending or counted as lost.
    assert got.size + ring.overflow_samples + ring.pending == written


def test_overflow_is_counted_and_reader_resumes_at_oldest_held():
    ring = RingBuffer(8, 1)
    data, ts = _chunk(0, 20, 1)
    ring.write(data[:10], ts[:10], 1.0)
    ring.write(data[10:], ts[10:], 2.0)
    out, st_, ar = np.zeros((16, 1), np.float32), np.zeros(16), np.zeros(16)
    n = ring.read_new(out, st_, ar)
    assert n == 8 and ring.overflow_samples == 12 and ring.overflow_events == 1
    assert out[:n, 0].tolist() == list(range(12, 20))
    assert ring.last_arrival == 2.0


def test_copy_since_observes_without_consuming_and_counts_laps():
    ring = RingBuffer(8, 1)
    data, ts = _chunk(0, 6, 1)
    ring.write(data, ts, 1.0)
    cursor, got, stamps, lost = ring.copy_since(0)
    assert cursor == 6 and got[:, 0].tolist() == list(range(6)) and lost == 0
    assert ring.pending == 6  # the control loop's own cursor did not move
    data, ts = _chunk(6, 12, 1)
    ring.write(data, ts, 2.0)  # laps the observer
    cursor, got, stamps, lost = ring.copy_since(cursor)
    assert cursor == 18 and got[:, 0].tolist() == list(range(11, 18)) and lost == 5
    assert np.array_equal(stamps * 2, got[:, 0])
