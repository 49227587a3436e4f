"""Round-trip times of torque commands: sent (by sequence number) to applied (telemetry).

The control thread notes each command's send time (``note_sent``: two list stores, nothing
else on the hot path); the reader thread, when telemetry names the last applied sequence
number, turns it into a round trip: a log-spaced histogram (10 us to 10 s, ~4 % wide bins,
for percentiles over the whole session) and a ring of the newest exact samples.
"""

from __future__ import annotations

import math

import numpy as np

from firmware_bridge.link_stats import RttStats as RttSummary

RTT_EDGES_MS = np.logspace(-2, 4, 181)
SEQ_SLOTS = 4096  # send times remembered per sequence number (a power of two)


class RttStats:
    def __init__(self) -> None:
        self._sent_t = [0.0] * SEQ_SLOTS
        self._sent_seq = [0] * SEQ_SLOTS
        self._counts = np.zeros(len(RTT_EDGES_MS) + 1, dtype=np.int64)
        self._max_ms = 0.0
        self._n = 0
        self._ring = np.zeros(SEQ_SLOTS, dtype=np.float64)  # the newest exact samples

    def note_sent(self, seq: int, t: float) -> None:
        """Control thread: command ``seq`` went out at ``t`` (time.monotonic)."""
        slot = seq & (SEQ_SLOTS - 1)
        self._sent_seq[slot] = seq
        self._sent_t[slot] = t

    def on_applied(self, seq: int, now: float) -> None:
        """Reader thread: telemetry at ``now`` says command ``seq`` was applied."""
        slot = seq & (SEQ_SLOTS - 1)
        if self._sent_seq[slot] != seq:
            return  # older than the ring remembers
        rtt = (now - self._sent_t[slot]) * 1000.0
        self._counts[int(np.searchsorted(RTT_EDGES_MS, rtt))] += 1
        self._ring[self._n & (SEQ_SLOTS - 1)] = rtt
        self._n += 1
        if rtt > self._max_ms:
            self._max_ms = rtt

    @property
    def count(self) -> int:
        return self._n

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """(bin edges in ms, counts); counts[0] is below the first edge, counts[-1] above."""
        return RTT_EDGES_MS.copy(), self._counts.copy()

    def samples_ms(self) -> np.ndarray:
        """The newest (up to SEQ_SLOTS) exact round-trip times in ms, oldest first."""
        n = self._n
        if n <= SEQ_SLOTS:
            return self._ring[:n].copy()
        i = n & (SEQ_SLOTS - 1)
        return np.concatenate((self._ring[i:], self._ring[:i]))

    def percentile(self, q: float) -> float | None:
        n = self._n
        if n == 0:
            return None
        c = np.cumsum(self._counts)
        i = int(np.searchsorted(c, q * n))
        if i == 0:
            return float(RTT_EDGES_MS[0])
        if i >= len(RTT_EDGES_MS):
            return float(self._max_ms)
        # geometric centre of the bin, never above the observed maximum
        return float(min(math.sqrt(RTT_EDGES_MS[i - 1] * RTT_EDGES_MS[i]), self._max_ms))

    def summary(self) -> RttSummary:
        p50, p99 = self.percentile(0.5), self.percentile(0.99)
        rtt_max = float(self._max_ms) if self._n else None
        return {
            "p50": p50,
            "p99": p99,
            "max": rtt_max,
            "count": self._n,
            # non-empty bins as [upper edge in ms, count]; the last bin is "above 10 s"
            "histogram": [
                [float(RTT_EDGES_MS[i]) if i < len(RTT_EDGES_MS) else None, int(c)]
                for i, c in enumerate(self._counts)
                if c
            ],
        }
