"""One writer, many readers, no lock: a block of float64 fields in shared memory.

Why a seqlock: the control loop must read the estimator process's newest estimate (and the
estimator the loop's newest joint state) every tick without ever waiting on the other
process. The writer makes the sequence counter odd, writes every field, makes it even again;
a reader copies the whole block into its own preallocated arrays between two reads of the
counter and keeps the copy only when both reads are equal and even. A torn copy is therefore
never used. Nothing is allocated per read or write.

A writer that dies or is stopped in the middle of a write leaves the counter odd: a reader
gives up after ``max_tries`` attempts and keeps its previous copy (``read`` returns False),
so a hung writer can never hang the reader; the estimate then ages, which is what the safety
layer's watchdogs act on. A new writer on the same block makes the counter even first
(``recover``).

Memory order: the counter and each field are aligned 8-byte stores and loads. On x86 (TSO:
stores are seen in program order, loads are not reordered with loads) this is sufficient; on
a weakly ordered CPU (ARM) the counter accesses would need fences, which numpy does not give.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from multiprocessing import shared_memory
from typing import cast

import numpy as np

Layout = Mapping[str, int]
"""Field name -> number of float64 values, in block order."""


def block_size(layout: Layout) -> int:
    """Bytes of a block: the counter, then the fields."""
    return 8 * (1 + sum(layout.values()))


class SeqlockBlock:
    """A view of one block: ``create`` it in the owning process, ``attach`` elsewhere.

    ``fields`` are views of the *shared* fields (the writer fills them between ``begin`` and
    ``end``, or hands values to ``write``); ``local`` are a reader's own copies, filled by
    ``read``.
    """

    def __init__(self, shm: shared_memory.SharedMemory, layout: Layout, owner: bool) -> None:
        self.shm = shm
        self.layout = dict(layout)
        self.owner = owner
        n = sum(layout.values())
        raw = np.ndarray((1 + n,), dtype=np.float64, buffer=shm.buf)
        self._seq = np.ndarray((1,), dtype=np.uint64, buffer=shm.buf)
        # The counter as a memoryview item: a read or an increment is a plain aligned 8-byte
        # load or store, as through numpy, at a third of numpy's per-call cost (read each tick).
        self._seqv: memoryview[int] = self._seq.data.cast("B").cast("Q")
        self._data = raw[1:]
        self._copy = np.zeros(n)
        self._scratch = np.zeros(n)  # a read lands here first: a torn one never reaches local
        self.fields: dict[str, np.ndarray] = {}
        self.local: dict[str, np.ndarray] = {}
        self.offsets: dict[str, int] = {}
        """Field name -> index of its first value in ``local_values`` / ``shared_values``."""
        at = 0
        for name, size in layout.items():
            self.fields[name] = self._data[at : at + size]
            self.local[name] = self._copy[at : at + size]
            self.offsets[name] = at
            at += size
        self.local_values = cast("memoryview[float]", self._copy.data)
        """The reader's copy as float items (``offsets``): a scalar field read as a Python float
        without numpy's per-element cost, for the control loop's per-tick reads."""
        self.shared_values = cast("memoryview[float]", self._data.data)
        """The shared fields as float items (``offsets``), for a writer's scalar stores."""
        self._last = 0
        self.torn_retries = 0
        """Reads that found a write in progress and tried again (a figure, not an error)."""

    @classmethod
    def create(cls, layout: Layout, name: str | None = None) -> SeqlockBlock:
        shm = shared_memory.SharedMemory(name=name, create=True, size=block_size(layout))
        np.ndarray((block_size(layout) // 8,), dtype=np.float64, buffer=shm.buf)[:] = 0.0
        return cls(shm, layout, owner=True)

    @classmethod
    def attach(cls, name: str, layout: Layout) -> SeqlockBlock:
        shm = attach_segment(name)
        if shm.size < block_size(layout):
            shm.close()
            raise ValueError(f"shared block {name} is {shm.size} bytes, the layout needs more")
        return cls(shm, layout, owner=False)

    @property
    def name(self) -> str:
        return self.shm.name

    @property
    def sequence(self) -> int:
        """Writes completed so far x 2 (odd while a write is in progress)."""
        return int(self._seqv[0])

    # -- writer -------------------------------------------------------------------------
    def recover(self) -> None:
        """A new writer: make the counter even if a dead writer left it odd."""
        if self._seqv[0] & 1:
            self._seqv[0] += 1

    def begin(self) -> None:
        self._seqv[0] += 1  # odd: a write is in progress

    def end(self) -> None:
        self._seqv[0] += 1  # even: the fields are consistent again

    def write(self, values: Mapping[str, np.ndarray | float]) -> None:
        """Write the named fields (others keep their values) as one consistent update."""
        self.begin()
        for k, v in values.items():
            self.fields[k][:] = v
        self.end()

    # -- reader -------------------------------------------------------------------------
    def read(self, max_tries: int = 64) -> bool:
        """Copy the block into ``local`` if a consistent copy can be had; True if the copy is
        new (written since the last successful read). False keeps the previous copy."""
        seq = self._seqv
        for _ in range(max_tries):
            s1 = seq[0]
            if s1 & 1:
                self.torn_retries += 1
                continue
            np.copyto(self._scratch, self._data)
            if seq[0] == s1:
                np.copyto(self._copy, self._scratch)
                new = s1 != self._last
                self._last = s1
                return new
            self.torn_retries += 1
        return False

    def close(self) -> None:
        """Drop this view (the owner also removes the segment)."""
        self.fields.clear()
        self._seqv.release()  # the views of the segment (local_values stays readable)
        self.shared_values.release()
        del self._seq, self._data
        with contextlib.suppress(BufferError):  # a view someone still holds: the mapping
            self.shm.close()  # goes with the process
        if self.owner:
            self.shm.unlink()


def attach_segment(name: str) -> shared_memory.SharedMemory:
    """Open an existing segment without registering it with this process's resource tracker.

    Python before 3.13 registers every segment a process opens, and its tracker unlinks the
    segments still registered when the process ends, so an attached reader or writer would
    remove the owner's segment on exit. Only the owner (``create``) unlinks it.
    """
    from multiprocessing import resource_tracker

    register = resource_tracker.register
    resource_tracker.register = lambda *a, **k: None
    try:
        return shared_memory.SharedMemory(name=name, create=False)
    finally:
        resource_tracker.register = register
