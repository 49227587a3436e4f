"""The torque model's input kinds: each one record, the one place that knows the kind.

A model's metadata ``input`` entry (``{"kind": ..., ...}``; absent: instantaneous) says in
which form the model takes its per-tick features. Everything that depends on that form is a
method of the kind's record (a frozen dataclass holding the entry's parameters), so that
nothing else switches on the kind's name:

- ``parse`` (classmethod): the entry read and validated, with a message naming the key;
- ``entry``: the entry written back, what exporters put in the metadata;
- ``shape``: the model input's shape for one tick, without the batch axis;
- ``feeder``: what the estimator runs each model step, turning the per-tick source vector
  into the model's bound input, with whatever state the kind carries (preallocated: a push
  allocates nothing, numpy is called with ``out=``);
- ``batch``: the same input for many ticks at once from per-tick features ``X`` (n, F), what
  training and evaluation build offline from a trial; equal to what the feeder gives on the
  same ticks.

Common to all kinds: ``tick_rate_hz`` is the rate the model's time runs at (``None``: the
model has no time, it sees one tick). The control rate must be that rate or a whole multiple
k of it; the model then steps every k-th control tick (see ``TorqueModel.ticks_per_step``).
At start-up the past before the first step is taken as equal to the first step, and the
batch form pads the same way (ticks before the first repeat the first).

A new kind is one record here, decorated with ``@register``; ``parse_input`` finds it by
name, and the loader, estimator, exporters, training and evaluation ask the record.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np


class InputKindError(ValueError):
    """A metadata ``input`` entry that no kind accepts (the loader adds the file's name)."""


class Feeder(Protocol):
    """The estimator's side of a kind: one ``push`` per model step, ``reset`` on a new run."""

    def push(self, src: np.ndarray) -> None: ...

    def reset(self) -> None: ...


class ModelInput(ABC):
    """One input kind (subclasses are frozen dataclasses; see the module docstring)."""

    name: ClassVar[str]
    has_history: ClassVar[bool] = True
    """Whether the model sees past ticks: then every tick advances it, even without new EMG."""

    @property
    def tick_rate_hz(self) -> float | None:
        return None

    @property
    def span_ticks(self) -> int:
        """How many ticks of the past (the newest included) the model's input covers."""
        return 1

    @classmethod
    @abstractmethod
    def parse(cls, entry: Mapping[str, Any]) -> ModelInput: ...

    @abstractmethod
    def entry(self) -> dict: ...

    @abstractmethod
    def shape(self, n_features: int) -> tuple[int, ...]: ...

    @abstractmethod
    def describe(self) -> str:
        """In words, for messages: "a window of 200 ticks at 500 Hz"."""

    @abstractmethod
    def feeder(self, out: np.ndarray, idx: np.ndarray, direct: int = 0) -> Feeder:
        """The streaming form: writes into ``out`` (the model's bound input without its batch
        axis) the features at ``idx`` of each pushed source vector. ``direct`` > 0: the
        features are the source vector's first ``direct`` entries (no gather needed)."""

    @abstractmethod
    def batch(self, X: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        """The batch form: the model's input (len(ticks), *shape) at ``ticks`` of ``X``."""


KINDS: dict[str, type[ModelInput]] = {}
"""Every input kind by its metadata name."""


def register(cls: type[ModelInput]) -> type[ModelInput]:
    KINDS[cls.name] = cls
    return cls


def parse_input(entry: Mapping[str, Any] | None) -> ModelInput:
    """The record of a metadata ``input`` entry (absent or empty: instantaneous)."""
    if not entry:
        return Instant()
    if not isinstance(entry, Mapping):
        raise InputKindError(f"'input' is {entry!r}, expected an object with a 'kind'")
    kind = entry.get("kind")
    if kind not in KINDS:
        raise InputKindError(f"input kind {kind!r}, expected one of {tuple(KINDS)}")
    return KINDS[kind].parse(entry)


def _field(entry: Mapping[str, Any], key: str, convert: Callable[[Any], Any]) -> Any:
    if key not in entry:
        raise InputKindError(f"input kind {entry.get('kind')!r} needs '{key}' in its entry")
    try:
        return convert(entry[key])
    except (TypeError, ValueError):
        raise InputKindError(
            f"input '{key}' is {entry[key]!r}, not what kind {entry.get('kind')!r} takes"
        ) from None


def _rate(entry: Mapping[str, Any]) -> float:
    rate = _field(entry, "tick_rate_hz", float)
    if not (math.isfinite(rate) and rate > 0):
        raise InputKindError(f"input 'tick_rate_hz' is {rate}, expected a positive rate")
    return rate


def _past_rows(ticks: np.ndarray, n: int) -> np.ndarray:
    """Row indices of the last ``n`` ticks up to each of ``ticks``, oldest first, padded."""
    return np.clip(np.asarray(ticks)[:, None] + np.arange(-n + 1, 1)[None, :], 0, None)


# --- instantaneous --------------------------------------------------------------------------


@register
@dataclass(frozen=True)
class Instant(ModelInput):
    """``{"kind": "instant"}``: ``features`` (1, F), the newest tick's features."""

    name: ClassVar[str] = "instant"
    has_history: ClassVar[bool] = False

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Instant:
        return cls()

    def entry(self) -> dict:
        return {"kind": self.name}

    def shape(self, n_features: int) -> tuple[int, ...]:
        return (n_features,)

    def describe(self) -> str:
        return "instantaneous features"

    def feeder(self, out: np.ndarray, idx: np.ndarray, direct: int = 0) -> Feeder:
        return InstantFeeder(out, idx, direct)

    def batch(self, X: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(X[np.asarray(ticks)], dtype=np.float32)


class InstantFeeder:
    def __init__(self, out: np.ndarray, idx: np.ndarray, direct: int = 0) -> None:
        self._out = out
        self._idx = idx
        self._direct = direct

    def push(self, src: np.ndarray) -> None:
        if self._direct:
            np.copyto(self._out, src[: self._direct])
        else:
            np.take(src, self._idx, out=self._out, mode="clip")

    def reset(self) -> None:
        pass


# --- window -----------------------------------------------------------------------------------


@register
@dataclass(frozen=True)
class Window(ModelInput):
    """``{"kind": "window", "ticks": N, "tick_rate_hz": R}``: ``features`` (1, N, F), the
    per-tick features of the last N ticks at R Hz, oldest first, newest last."""

    ticks: int
    rate_hz: float
    name: ClassVar[str] = "window"

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Window:
        ticks, rate = _field(entry, "ticks", int), _rate(entry)
        if ticks < 1:
            raise InputKindError(f"window input needs ticks >= 1, got ticks={ticks}")
        return cls(ticks, rate)

    @property
    def tick_rate_hz(self) -> float:
        return self.rate_hz

    @property
    def span_ticks(self) -> int:
        return self.ticks

    def entry(self) -> dict:
        return {"kind": self.name, "ticks": int(self.ticks), "tick_rate_hz": float(self.rate_hz)}

    def shape(self, n_features: int) -> tuple[int, ...]:
        return (self.ticks, n_features)

    def describe(self) -> str:
        return f"a window of {self.ticks} ticks at {self.rate_hz:g} Hz"

    def feeder(self, out: np.ndarray, idx: np.ndarray, direct: int = 0) -> Feeder:
        return WindowFeeder(out, idx, self.ticks)

    def batch(self, X: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(X[_past_rows(ticks, self.ticks)], dtype=np.float32)


class WindowFeeder:
    """The last N rows. A ring of 2N rows in which every row is written twice, at i and i + N,
    so that the last N rows are always one contiguous slice: one copy into the model's input,
    no wrap-around arithmetic."""

    def __init__(self, out: np.ndarray, idx: np.ndarray, n: int) -> None:
        self._out = out
        self._idx = idx
        self._n = n
        self._ring = np.zeros((2 * n, len(idx)), dtype=np.float32)
        self._row = np.zeros(len(idx), dtype=np.float32)
        self._pos = 0
        self._steps = 0

    def _write(self, src: np.ndarray) -> None:
        row, n, ring = self._row, self._n, self._ring
        np.take(src, self._idx, out=row, mode="clip")
        if self._steps == 0:
            ring[:] = row  # start-up: the past is taken as equal to the first step
        else:
            self._pos = (self._pos + 1) % n
            ring[self._pos] = row
            ring[self._pos + n] = row
        self._steps += 1

    def push(self, src: np.ndarray) -> None:
        self._write(src)
        # the newest row is at pos + n, so the last n rows, oldest first, are:
        np.copyto(self._out, self._ring[self._pos + 1 : self._pos + 1 + self._n])

    def reset(self) -> None:
        self._ring[:] = 0.0
        self._pos = 0
        self._steps = 0


# --- segment sums (the streaming network) -----------------------------------------------------


@register
@dataclass(frozen=True)
class Sums(ModelInput):
    """``{"kind": "sums", "lags": [l0, l1, ...], "tick_rate_hz": R}``: ``features``
    (1, len(lags), F); row i is the *sum* of the per-tick features of the ticks aged
    ``[lags[i-1], lags[i])`` (``lags[-1]`` = 0; age 0 is the newest tick), lags strictly
    increasing. The streaming form of a window network (``exoctl.training.stream_export``):
    the estimator carries a running sum from tick to tick instead of handing over the window,
    and any windowed average the network takes is a difference of these sums."""

    lags: tuple[int, ...]
    rate_hz: float
    name: ClassVar[str] = "sums"

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Sums:
        lags = _field(entry, "lags", lambda v: tuple(int(x) for x in v))
        rate = _rate(entry)
        if not lags or lags[0] < 1 or any(b <= a for a, b in zip(lags, lags[1:], strict=False)):
            raise InputKindError(
                f"sums input needs strictly increasing lags >= 1, got lags={list(lags)}"
            )
        return cls(lags, rate)

    @property
    def tick_rate_hz(self) -> float:
        return self.rate_hz

    @property
    def span_ticks(self) -> int:
        return self.lags[-1]

    def entry(self) -> dict:
        return {"kind": self.name, "lags": [int(v) for v in self.lags],
                "tick_rate_hz": float(self.rate_hz)}  # fmt: skip

    def shape(self, n_features: int) -> tuple[int, ...]:
        return (len(self.lags), n_features)

    def describe(self) -> str:
        return f"segment sums over a window of {self.lags[-1]} ticks at {self.rate_hz:g} Hz"

    def feeder(self, out: np.ndarray, idx: np.ndarray, direct: int = 0) -> Feeder:
        return SumsFeeder(out, idx, self.lags)

    def batch(self, X: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        # C[t] = sum of rows up to tick t - n (padded by the first), in float64
        n, ticks = self.lags[-1], np.asarray(ticks)
        c = np.cumsum(np.vstack([np.repeat(X[:1], n, axis=0), X]).astype(np.float64), axis=0)
        edges = np.concatenate(([0], self.lags))
        at = c[ticks[:, None] + n - edges[None, :]]  # (T, L + 1, F): C at age 0, lags...
        return np.ascontiguousarray(at[:, :-1] - at[:, 1:], dtype=np.float32)


class SumsFeeder:
    """Segment sums of the past. One running sum C of the features is carried from step to
    step, in float64, in a ring of N + 1 steps; the sum of the rows aged [a, b) is
    C(t - a) - C(t - b), so the model's input is one gather and one subtraction, however long
    the window. A non-finite row poisons C: the output is then NaN for as long as that row is
    in the window (as the window form's would be), and C is rebuilt from the raw rows (kept in
    a ring of N) when it has left. C is also rebuilt every ``REBASE_STEPS`` steps, so that its
    magnitude (and its rounding) stays bounded however long a session runs."""

    REBASE_STEPS = 1 << 20  # ~35 min at 500 Hz

    def __init__(self, out: np.ndarray, idx: np.ndarray, lags_: Sequence[int]) -> None:
        lags = np.asarray(lags_, dtype=np.intp)
        n, nf = int(lags[-1]), len(idx)
        self._out = out
        self._idx = idx
        self._n = n
        self._row32 = np.zeros(nf, dtype=np.float32)
        self._row = np.zeros(nf)
        self._raw = np.zeros((n, nf))  # rows by step % n, for a rebuild
        self._c = np.zeros((n + 1, nf))  # running sum by step % (n + 1)
        self._c_rows = list(self._c)  # row views, made once
        self._neg_edges = -np.concatenate(([0], lags))  # the ages whose C the input needs
        self._at = np.zeros(len(lags) + 1, dtype=np.intp)
        self._g = np.zeros((len(lags) + 1, nf))
        self._d = np.zeros((len(lags), nf))
        # C of the virtual past at start-up: C(0) = 0 and C(-k) = -k row at (-k) mod (n + 1),
        # i.e. position j = 1..n holds -(n + 1 - j) row
        self._start_w = -(n + 1.0 - np.arange(1, n + 1))[:, None]
        # rebuild buffers: ring positions of the ages 0..n-1, the rows by age
        self._age = np.arange(n, dtype=np.intp)
        self._at_raw = np.zeros(n, dtype=np.intp)
        self._at_c = np.zeros(n, dtype=np.intp)
        self._by_age = np.zeros((n, nf))
        self._steps = 0
        self._clean_from = 0
        self._dirty = False

    def push(self, src: np.ndarray) -> None:
        row, t, n = self._row, self._steps, self._n
        np.take(src, self._idx, out=self._row32, mode="clip")
        np.copyto(row, self._row32)
        self._raw[t % n] = row
        p = t % (n + 1)
        if t == 0:
            np.multiply(self._start_w, row, out=self._c[1:])  # the virtual past
            self._c[0] = 0.0
            self._raw[:] = row
        else:
            np.add(self._c_rows[(t - 1) % (n + 1)], row, out=self._c_rows[p])
        if not math.isfinite(float(row.sum())):
            self._clean_from = t + n  # the step at which this row has left the window
            self._dirty = True
        elif (self._dirty and t >= self._clean_from) or (t and not t & (self.REBASE_STEPS - 1)):
            self._rebuild(t)
        np.add(self._neg_edges, p, out=self._at)
        np.take(self._c, self._at, axis=0, out=self._g, mode="wrap")
        np.subtract(self._g[:-1], self._g[1:], out=self._d)
        np.copyto(self._out, self._d)
        self._steps = t + 1

    def _rebuild(self, t: int) -> None:
        """C from the raw rows of the window: C(t) = 0, C(t - k) = -(sum of the ages < k)."""
        n = self._n
        np.subtract(t, self._age, out=self._at_raw)
        np.mod(self._at_raw, n, out=self._at_raw)
        np.take(self._raw, self._at_raw, axis=0, out=self._by_age)
        np.cumsum(self._by_age, axis=0, out=self._by_age)
        np.negative(self._by_age, out=self._by_age)
        np.subtract(t - 1, self._age, out=self._at_c)  # C(t - 1 - age) = -(sum of ages <= age)
        np.mod(self._at_c, n + 1, out=self._at_c)
        self._c[t % (n + 1)] = 0.0
        self._c[self._at_c] = self._by_age
        self._dirty = False

    def reset(self) -> None:
        self._c[:] = 0.0
        self._raw[:] = 0.0
        self._steps = 0
        self._clean_from = 0
        self._dirty = False


# --- decimated window -------------------------------------------------------------------------


@register
@dataclass(frozen=True)
class Decimated(ModelInput):
    """``{"kind": "decimated", "ticks": N, "every": s, "tick_rate_hz": R}``: ``features``
    (1, N, F), the window of the last N x s ticks at R Hz seen at a rate s times lower: row i
    (oldest first, newest last) is the *mean* of the per-tick features of the s ticks aged
    ``[(N - 1 - i) s, (N - i) s)``. A long past in few rows (400 ms at 500 Hz: 40 rows of 5
    ticks instead of 200), box-filtered before it is thinned so that nothing faster than the
    lower rate folds into it; the model still steps at R (or every k-th tick of a control
    rate k x R). With s = 1 it is the window kind."""

    ticks: int
    every: int
    rate_hz: float
    name: ClassVar[str] = "decimated"

    @classmethod
    def parse(cls, entry: Mapping[str, Any]) -> Decimated:
        ticks, every = _field(entry, "ticks", int), _field(entry, "every", int)
        rate = _rate(entry)
        if ticks < 1 or every < 1:
            raise InputKindError(
                f"decimated input needs ticks >= 1 and every >= 1, got ticks={ticks}, every={every}"
            )
        return cls(ticks, every, rate)

    @property
    def tick_rate_hz(self) -> float:
        return self.rate_hz

    @property
    def span_ticks(self) -> int:
        return self.ticks * self.every

    def entry(self) -> dict:
        return {"kind": self.name, "ticks": int(self.ticks), "every": int(self.every),
                "tick_rate_hz": float(self.rate_hz)}  # fmt: skip

    def shape(self, n_features: int) -> tuple[int, ...]:
        return (self.ticks, n_features)

    def describe(self) -> str:
        return f"a window of {self.ticks} means of {self.every} ticks each at {self.rate_hz:g} Hz"

    def feeder(self, out: np.ndarray, idx: np.ndarray, direct: int = 0) -> Feeder:
        return DecimatedFeeder(out, idx, self.ticks, self.every)

    def batch(self, X: np.ndarray, ticks: np.ndarray) -> np.ndarray:
        n, s = self.ticks, self.every
        rows = X[_past_rows(ticks, n * s)].astype(np.float32, copy=False)
        blocks = rows.reshape(len(rows), n, s, X.shape[1])
        out = np.add.reduce(blocks, axis=2, dtype=np.float32)  # as the feeder sums
        out *= np.float32(1.0 / s)
        return np.ascontiguousarray(out)


class DecimatedFeeder(WindowFeeder):
    """The window ring of the last N x s rows (``WindowFeeder``), read as N blocks of s: one
    sum over the block axis and one scale into the model's input. The block views of every
    ring position are made once."""

    def __init__(self, out: np.ndarray, idx: np.ndarray, ticks: int, every: int) -> None:
        super().__init__(out, idx, ticks * every)
        n, nf = ticks * every, len(idx)
        self._blocks = [self._ring[p + 1 : p + 1 + n].reshape(ticks, every, nf) for p in range(n)]
        self._scale = np.float32(1.0 / every)

    def push(self, src: np.ndarray) -> None:
        self._write(src)
        np.add.reduce(self._blocks[self._pos], axis=1, out=self._out)
        np.multiply(self._out, self._scale, out=self._out)
