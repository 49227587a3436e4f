"""A preallocated single-producer ring buffer for multichannel samples.

One writer (the acquisition thread) and one reader (the control loop). The writer copies a
chunk in, then publishes it by advancing the total-written counter; the reader copies out
everything between its own cursor and that counter. Under CPython an int store is atomic, so
no lock is held at all: the only shared state is the counter. Each sample keeps its stream
timestamp (LSL clock) and the host's monotonic arrival time, which is what end-to-end latency
is measured from.

An overflow (the writer laps a reader that fell behind) is never silent: the reader skips to
the oldest sample still held and counts what it lost.
"""

from __future__ import annotations

import contextlib
from multiprocessing import shared_memory

import numpy as np


class RingBuffer:
    def __init__(self, capacity: int, n_channels: int, dtype: type = np.float32) -> None:
        if capacity < 2:
            raise ValueError("capacity must be at least 2 samples")
        self.capacity = capacity
        self.n_channels = n_channels
        self._data: np.ndarray = np.zeros((capacity, n_channels), dtype=dtype)
        self._stamp = np.zeros(capacity)
        self._arrival = np.zeros(capacity)
        self._written = 0  # total samples ever written; published last
        self._read = 0  # reader cursor (total samples consumed or skipped)
        self.overflow_samples = 0
        self.overflow_events = 0
        self.last_arrival = float("-inf")
        self.source_fault: str | None = None
        """Set by the writer when it refuses its source for good (why, in words): the loop
        reads it every tick for the safety layer. Like the counter, a plain attribute store."""

    @property
    def written(self) -> int:
        """Sample counter: how many samples the writer has published so far."""
        return self._written

    @property
    def pending(self) -> int:
        return self._written - self._read

    def write(self, chunk: np.ndarray, stamps: np.ndarray, arrival: float) -> None:
        """Copy (n, n_channels) samples in. Writer thread only."""
        n = chunk.shape[0]
        if n == 0:
            return
        if n > self.capacity:  # keep the newest; the dropped ones still count as written
            self._written += n - self.capacity
            chunk, stamps = chunk[-self.capacity :], stamps[-self.capacity :]
            n = self.capacity
        start = self._written % self.capacity
        first = min(n, self.capacity - start)
        self._data[start : start + first] = chunk[:first]
        self._stamp[start : start + first] = stamps[:first]
        self._arrival[start : start + first] = arrival
        if first < n:
            rest = n - first
            self._data[:rest] = chunk[first:]
            self._stamp[:rest] = stamps[first:]
            self._arrival[:rest] = arrival
        self.last_arrival = arrival
        self._written += n  # publish

    def read_new(self, out: np.ndarray, stamps: np.ndarray, arrival: np.ndarray) -> int:
        """Copy up to len(out) unread samples, oldest first, into the caller's buffers.

        Reader thread only. Returns how many were copied.
        """
        written = self._written  # one read of the published counter
        lag = written - self._read
        if lag > self.capacity:
            lost = lag - self.capacity
            self.overflow_samples += lost
            self.overflow_events += 1
            self._read = written - self.capacity
            lag = self.capacity
        n = min(lag, out.shape[0])
        if n == 0:
            return 0
        start = self._read % self.capacity
        first = min(n, self.capacity - start)
        out[:first] = self._data[start : start + first]
        stamps[:first] = self._stamp[start : start + first]
        arrival[:first] = self._arrival[start : start + first]
        if first < n:
            rest = n - first
            out[first:n] = self._data[:rest]
            stamps[first:n] = self._stamp[:rest]
            arrival[first:n] = self._arrival[:rest]
        # A writer that lapped us while we copied would have overwritten what we just read.
        if self._written - self._read > self.capacity:
            lost = self._written - self._read - self.capacity
            self.overflow_samples += lost
            self.overflow_events += 1
        self._read += n
        return n

    def copy_since(self, since: int) -> tuple[int, np.ndarray, np.ndarray, int]:
        """Copies of the samples published after counter ``since``, without consuming them.

        For a second, read-only observer (the recorder) beside the control loop, off the hot
        path (it allocates). Lock-free: the counter is read before and after the copy, and rows
        the writer may have overwritten meanwhile are dropped and counted. Returns (new
        counter, data, stream stamps, samples lost).
        """
        written = self._written
        cap = self.capacity
        start = max(since, written - cap + 1)
        lost = start - since
        if written <= start:
            return written, np.zeros((0, self.n_channels), self._data.dtype), np.zeros(0), lost
        idx = np.arange(start, written) % cap
        data = self._data[idx]
        stamps = self._stamp[idx]
        overwritten = max(0, (self._written - cap + 1) - start)  # lapped while we copied
        if overwritten:
            data, stamps = data[overwritten:], stamps[overwritten:]
            lost += overwritten
        return written, data, stamps, lost


class SharedRingBuffer(RingBuffer):
    """The same ring in shared memory, so that another process can copy the samples out.

    The estimator process writes it (its acquisition thread) and reads new samples from it (its
    estimator); the daemon copies samples out for the recording with ``copy_since`` and reads
    ``last_arrival``. The published counter and the newest arrival time live in the segment,
    next to the samples; the reader cursor and the overflow counts stay with each process.
    ``create`` it in the owning process (which removes it at ``close``) and ``attach`` to it by
    name elsewhere; a writer that attaches after another one died continues its counter, so a
    reader's cursor stays valid across a restart.
    """

    def __init__(
        self, shm: shared_memory.SharedMemory, capacity: int, n_channels: int, owner: bool
    ):
        self.capacity = capacity
        self.n_channels = n_channels
        self.shm = shm
        self.owner = owner
        buf = shm.buf
        self._cells = np.ndarray((2,), dtype=np.float64, buffer=buf)  # written, last arrival
        at = 16
        self._stamp = np.ndarray((capacity,), dtype=np.float64, buffer=buf, offset=at)
        at += 8 * capacity
        self._arrival = np.ndarray((capacity,), dtype=np.float64, buffer=buf, offset=at)
        at += 8 * capacity
        self._data = np.ndarray((capacity, n_channels), dtype=np.float32, buffer=buf, offset=at)
        self._read = int(self._cells[0])  # a new reader starts at the newest sample
        self.overflow_samples = 0
        self.overflow_events = 0
        self.source_fault = None

    @staticmethod
    def nbytes(capacity: int, n_channels: int) -> int:
        return 16 + 16 * capacity + 4 * capacity * n_channels

    @classmethod
    def create(cls, capacity: int, n_channels: int) -> SharedRingBuffer:
        if capacity < 2:
            raise ValueError("capacity must be at least 2 samples")
        shm = shared_memory.SharedMemory(create=True, size=cls.nbytes(capacity, n_channels))
        ring = cls(shm, capacity, n_channels, owner=True)
        ring._cells[0] = 0.0
        ring._cells[1] = float("-inf")
        return ring

    @classmethod
    def attach(cls, name: str, capacity: int, n_channels: int) -> SharedRingBuffer:
        from exoctl.acquisition.seqlock import attach_segment

        shm = attach_segment(name)
        return cls(shm, capacity, n_channels, owner=False)

    @property
    def name(self) -> str:
        return self.shm.name

    @property
    def _written(self) -> int:
        return int(self._cells[0])

    @_written.setter
    def _written(self, value: int) -> None:
        self._cells[0] = value  # exact as float64 up to 2**53 samples

    @property
    def last_arrival(self) -> float:
        return float(self._cells[1])

    @last_arrival.setter
    def last_arrival(self, value: float) -> None:
        self._cells[1] = value

    def close(self) -> None:
        del self._cells, self._stamp, self._arrival, self._data
        with contextlib.suppress(BufferError):  # a copy-out still holds a view: the
            self.shm.close()  # mapping goes with the process
        if self.owner:
            self.shm.unlink()
