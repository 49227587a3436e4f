"""EMG acquisition: a thread that fills a RingBuffer from an LSL inlet or from a file.

Why a thread and small pulls: pylsl's inlet buffers up to minutes by default, so a reader that
falls behind drifts ever later without noticing. The inlet here is opened with a short
``max_buflen`` and drained every few milliseconds into a preallocated destination buffer, and
each chunk is stamped with its host arrival time, from which the control loop measures
end-to-end latency and the safety layer measures staleness.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pylsl
from pylsl.util import LostError
from pylsl.util import TimeoutError as LslTimeout

from exoctl.acquisition.lsl_scope import apply_lsl_scope, stream_host
from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.config.schema import EmgConfig, LslConfig
from exoctl.errors import ExoctlError
from exoctl.regular_file import check_regular


class AcquisitionError(ExoctlError, RuntimeError):
    """The EMG source cannot be used (not found, wrong shape, wrong rate)."""


IDLE_POLL_S = 0.02
"""Between sessions (``Acquisition.idle``) the thread takes what arrived every this often
instead of waking for every chunk: the ring buffer still fills (it warms the next session's
estimator) and the newest arrival stays well inside the EMG watchdog's degraded threshold
(half of ``safety.emg_timeout_s``), at a fraction of the wake-ups (a 2 kHz stream sent in
chunks of 4 samples is 500 a second)."""

SOURCES: dict[str, type[Acquisition]] = {}
"""Every EMG source by its ``emg.source`` name; a source class registers itself by naming
itself (``class MySource(Acquisition, source="name")``). The configuration's list of allowed
values (``EmgConfig.source``) must equal this one's keys: the configuration is a floor below
acquisition and cannot read it, so a test keeps the two the same."""


class Acquisition:
    """Common thread plumbing: start/stop, counters, the ring buffer it fills.

    A concrete source names itself in its class statement, which registers it in ``SOURCES``
    under that name (the value of ``emg.source`` that selects it), and builds itself from the
    configuration in ``from_config``; ``make_acquisition`` looks the name up."""

    source: ClassVar[str] = ""
    """The ``emg.source`` value of this source (empty: not a source one can configure)."""

    def __init_subclass__(cls, source: str = "", **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if source:
            if source in SOURCES:
                raise TypeError(
                    f"EMG source {source!r} is already {SOURCES[source].__qualname__}; "
                    f"{cls.__qualname__} needs another name"
                )
            cls.source = source
            SOURCES[source] = cls

    @classmethod
    def from_config(cls, cfg: EmgConfig, ring: RingBuffer) -> Acquisition:
        """This source as the configuration describes it, filling ``ring``."""
        raise NotImplementedError(f"{cls.__qualname__} cannot be built from a configuration")

    def __init__(self, ring: RingBuffer) -> None:
        self.ring = ring
        self.chunks = 0
        self.error: str | None = None
        self.idle: Callable[[], bool] = lambda: False
        """Asked by the thread at every turn: True while no session needs each chunk at once
        (see ``IDLE_POLL_S``); the owner sets it."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name=type(self).__name__)
        self._thread.daemon = True
        self._thread.start()

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def thread(self) -> threading.Thread | None:
        """The reading thread once started (for real-time set-up by reference)."""
        return self._thread

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as e:  # reported through .error and the silence watchdog
            self.error = f"{type(e).__name__}: {e}"

    def _run(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def stats(self) -> dict[str, int | str | None]:
        return {
            "samples": self.ring.written,
            "chunks": self.chunks,
            "overflow_samples": self.ring.overflow_samples,
            "overflow_events": self.ring.overflow_events,
            "error": self.error,
        }


DUPLICATE_WAIT_S = 1.0
"""How long the look for a second stream with the EMG stream's identity lasts. liblsl's
resolver finds every stream on this machine within about half a second (measured on loopback);
a second one found in this time is refused with the first."""


def stream_identity(lsl: LslConfig) -> str:
    """The LSL query for the configured stream's identity, without its host."""
    if lsl.source_id:
        return f"source_id='{lsl.source_id}'"
    if lsl.any_source:
        return f"name='{lsl.name}' and type='{lsl.type}'"
    raise AcquisitionError(
        "emg.lsl.source_id is not set: the EMG inlet binds to one amplifier by its source "
        f"id, so that another device or bench publishing {lsl.name!r} is never used. Set "
        "emg.lsl.source_id (the amplifier's; `exoctl sim` prints the simulator's), or set "
        "emg.lsl.any_source: true to take the first stream of that name and type"
    )


def _where(info: pylsl.StreamInfo) -> str:
    return f"host {info.hostname()!r} (uid {info.uid()})"


def _distinct(*found: list[pylsl.StreamInfo]) -> list[pylsl.StreamInfo]:
    """Streams by uid, each once (two resolves see the same stream twice)."""
    out: dict[str, pylsl.StreamInfo] = {}
    for infos in found:
        for info in infos:
            out.setdefault(info.uid(), info)
    return list(out.values())


def duplicate_refusal(identity: str, found: list[pylsl.StreamInfo]) -> str | None:
    """Why two or more streams with one identity are refused (None: at most one)."""
    if len(found) < 2:
        return None
    where = " and on ".join(_where(i) for i in found)
    return (
        f"{len(found)} LSL streams match {identity}: on {where}. exoctl takes none of them: "
        "LSL has no authentication, so one may be an impostor. Stop every one but the "
        "amplifier's (docs/deploy.md, section LSL)"
    )


def resolve_lsl_stream(cfg: EmgConfig) -> pylsl.StreamInfo:
    """Find the configured EMG stream on its host, alone, or say exactly what was found.

    The stream is taken only from ``emg.lsl.host`` (this machine by default), and only when no
    other stream with its identity answers within :data:`DUPLICATE_WAIT_S`: two are refused
    naming both hosts, and one from another host is refused naming it.
    """
    lsl = cfg.lsl
    apply_lsl_scope(lsl)
    identity = stream_identity(lsl)
    host = stream_host(lsl)
    pred = f"{identity} and hostname='{host}'"
    found = pylsl.resolve_bypred(pred, 1, lsl.resolve_timeout_s)
    every = _distinct(found, pylsl.resolve_bypred(identity, 2, DUPLICATE_WAIT_S))
    refusal = duplicate_refusal(identity, every)
    if refusal is not None:
        raise AcquisitionError(refusal)
    if not found:
        elsewhere = (
            f"; {identity} is published by {_where(every[0])} instead: refused (set "
            "emg.lsl.host if the amplifier is that computer)"
            if every
            else " (is the amplifier or the HIL simulator running?)"
        )
        raise AcquisitionError(
            f"no LSL stream matching {pred} within {lsl.resolve_timeout_s} s{elsewhere}"
        )
    info = found[0]
    if info.channel_count() != len(cfg.muscles):
        raise AcquisitionError(
            f"LSL stream {info.name()!r} has {info.channel_count()} channels but emg.muscles "
            f"maps {len(cfg.muscles)}"
        )
    if abs(info.nominal_srate() - cfg.sampling_rate_hz) > 1e-6:
        raise AcquisitionError(
            f"LSL stream {info.name()!r} runs at {info.nominal_srate()} Hz but "
            f"emg.sampling_rate_hz is {cfg.sampling_rate_hz}"
        )
    return info


class LslAcquisition(Acquisition, source="lsl"):
    """Pulls chunks from an LSL inlet into the ring buffer; after a dropout, takes back only
    the same stream.

    liblsl's own recovery (``recover=True``) re-resolves a lost stream by source id alone
    and connects to whichever single stream answers, from any host. So the inlet here is
    opened without it, and when the stream is lost this thread looks again for the identity
    it was given: the same stream (same host, same uid) is reconnected; anything else (a
    stream from another host, a new uid, two at once) is refused for good and reported on
    the ring buffer (``RingBuffer.source_fault``), where the safety layer's ``emg_source``
    watchdog turns it into a fault. Until something comes back, the silence is the
    ``emg_stale`` watchdog's.
    """

    def __init__(
        self,
        info: pylsl.StreamInfo,
        ring: RingBuffer,
        poll_s: float = 0.001,
        identity: str | None = None,
    ) -> None:
        super().__init__(ring)
        self.info = info
        self.poll_s = poll_s
        self.identity = identity or (
            f"source_id='{info.source_id()}'"
            if info.source_id()
            else f"name='{info.name()}' and type='{info.type()}'"
        )
        self.host = info.hostname()
        self.uid = info.uid()
        self.reconnects = 0
        self._max = 1024
        self._buf = np.zeros((self._max, ring.n_channels), dtype=np.float32)

    @classmethod
    def from_config(cls, cfg: EmgConfig, ring: RingBuffer) -> LslAcquisition:
        """The one stream ``emg.lsl`` names, found on the network (``resolve_lsl_stream``)."""
        return cls(resolve_lsl_stream(cfg), ring, identity=stream_identity(cfg.lsl))

    def stats(self) -> dict[str, int | str | None]:
        """The common counters, plus which stream this is (host, uid) and how often the same
        stream was taken back after a dropout."""
        return {
            **super().stats(),
            "host": self.host,
            "uid": self.uid,
            "reconnects": self.reconnects,
        }

    def _run(self) -> None:
        info: pylsl.StreamInfo | None = self.info
        while info is not None and not self._stop.is_set():
            # LostError: the stream is gone; LslTimeout: it did not answer. Look for it again.
            with contextlib.suppress(LostError, LslTimeout):
                self._pull(info)
            if self._stop.is_set():
                return
            info = self._find_again()
            if info is not None:
                self.reconnects += 1

    def _pull(self, info: pylsl.StreamInfo) -> None:
        inlet = pylsl.StreamInlet(
            info,
            max_buflen=2,
            max_chunklen=0,
            recover=False,  # see the class docstring: this thread recovers, pinned
            processing_flags=pylsl.proc_clocksync | pylsl.proc_monotonize,
        )
        try:
            inlet.open_stream(timeout=5.0)
            n = 0
            while not self._stop.is_set():
                # Idle: wait, then take everything buffered (a full pull: more is waiting).
                idle = self.idle()
                if idle and n < self._max and self._stop.wait(IDLE_POLL_S):
                    break
                _, stamps = inlet.pull_chunk(
                    timeout=0.0 if idle else self.poll_s,
                    max_samples=self._max,
                    dest_obj=self._buf,
                )
                n = len(stamps)
                if n:
                    arrival = time.monotonic()
                    self.ring.write(self._buf[:n], np.asarray(stamps), arrival)
                    self.chunks += 1
        finally:
            inlet.close_stream()

    def _find_again(self) -> pylsl.StreamInfo | None:
        """The lost stream once it answers again; None when stopped or refused."""
        while not self._stop.is_set():
            # What answers first decides: another host or uid (or two streams) is refused at
            # once, and our own stream is taken back at once, so that a connection that broke
            # costs no more EMG than the resolve itself.
            found = _distinct(pylsl.resolve_bypred(self.identity, 1, DUPLICATE_WAIT_S))
            if not found:
                continue
            refusal = self.judge(found)
            if refusal is None:
                return found[0]
            self.error = f"EMG stream refused: {refusal}"
            self.ring.source_fault = refusal
            return None
        return None

    def judge(self, found: list[pylsl.StreamInfo]) -> str | None:
        """Why the streams answering after a dropout are refused (None: it is ours again)."""
        refusal = duplicate_refusal(self.identity, found)
        if refusal is not None:
            return refusal
        info = found[0]
        if info.hostname() != self.host:
            return (
                f"after a dropout, {self.identity} came back from {_where(info)}, not from "
                f"host {self.host!r}"
            )
        if info.uid() != self.uid:
            return (
                f"after a dropout, {self.identity} came back as another stream ({_where(info)}, "
                f"was uid {self.uid}): a restarted amplifier, or an impostor. Restart exoctl "
                "to take it after checking which"
            )
        return None


class ReplayAcquisition(Acquisition, source="replay"):
    """Replays a recording (.npz with `emg` (n, ch) and `fs_hz`) in real time.

    For bench work without an amplifier; the controller cannot tell it from a live stream
    except by the source it was configured with.
    """

    def __init__(
        self, path: Path, ring: RingBuffer, fs_hz: float, loop: bool = False, chunk: int = 4
    ) -> None:
        super().__init__(ring)
        with np.load(check_regular(path, "a replay recording", AcquisitionError)) as f:
            if "emg" not in f or "fs_hz" not in f:
                raise AcquisitionError(f"{path}: a replay file needs arrays 'emg' and 'fs_hz'")
            self.emg = np.asarray(f["emg"], dtype=np.float32)
            file_fs = float(f["fs_hz"])
        if self.emg.ndim != 2 or self.emg.shape[1] != ring.n_channels:
            raise AcquisitionError(
                f"{path}: emg has shape {self.emg.shape}, expected (n, {ring.n_channels})"
            )
        if abs(file_fs - fs_hz) > 1e-6:
            raise AcquisitionError(f"{path}: recorded at {file_fs} Hz, configured {fs_hz} Hz")
        self.fs_hz = fs_hz
        self.loop = loop
        self.chunk = chunk

    @classmethod
    def from_config(cls, cfg: EmgConfig, ring: RingBuffer) -> ReplayAcquisition:
        """The file ``emg.replay.path``, at the configured sampling rate."""
        if cfg.replay.path is None:
            raise AcquisitionError("emg.source is 'replay' but emg.replay.path is not set")
        return cls(cfg.replay.path, ring, cfg.sampling_rate_hz, cfg.replay.loop)

    def _run(self) -> None:
        n_total = self.emg.shape[0]
        t0 = time.monotonic()
        lsl0 = pylsl.local_clock()
        sent = 0
        while not self._stop.is_set():
            pos = sent % n_total
            if sent >= n_total and not self.loop:
                return
            n = min(self.chunk, n_total - pos)
            if self.idle():  # every IDLE_POLL_S, what a live stream would have sent meanwhile
                self._stop.wait(IDLE_POLL_S)
                n = min(int((time.monotonic() - t0) * self.fs_hz) - sent, n_total - pos)
                if n <= 0:
                    continue
            due = t0 + (sent + n) / self.fs_hz
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamps = lsl0 + (sent + np.arange(n)) / self.fs_hz
            self.ring.write(self.emg[pos : pos + n], stamps, time.monotonic())
            self.chunks += 1
            sent += n


def make_acquisition(cfg: EmgConfig, ring: RingBuffer) -> Acquisition:
    """The EMG source ``emg.source`` names (``SOURCES``), built from the configuration."""
    source = SOURCES.get(cfg.source)
    if source is None:  # the configuration's check refuses it first; a guard for code
        allowed = ", ".join(repr(k) for k in SOURCES)
        raise AcquisitionError(f"emg.source {cfg.source!r} is not an EMG source ({allowed})")
    return source.from_config(cfg, ring)
