"""EMG acquisition: a thread that fills a RingBuffer from an LSL inlet or from a file.

Why a thread and small pulls: pylsl's inlet buffers up to minutes by default, so a reader that
falls behind drifts ever later without noticing. The inlet here is opened with a short
``max_buflen`` and drained every few milliseconds into a preallocated destination buffer, and
each chunk is stamped with its host arrival time, from which the control loop measures
end-to-end latency and the safety layer measures staleness.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pylsl

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.config.schema import EmgConfig
from exoctl.errors import ExoctlError
from exoctl.regular_file import check_regular


class AcquisitionError(ExoctlError, RuntimeError):
    """The EMG source cannot be used (not found, wrong shape, wrong rate)."""


class Acquisition:
    """Common thread plumbing: start/stop, counters, the ring buffer it fills."""

    def __init__(self, ring: RingBuffer) -> None:
        self.ring = ring
        self.chunks = 0
        self.error: str | None = None
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


def resolve_lsl_stream(cfg: EmgConfig) -> pylsl.StreamInfo:
    """Find the configured EMG stream on the network, or say exactly what was looked for."""
    lsl = cfg.lsl
    if lsl.source_id:
        pred = f"source_id='{lsl.source_id}'"
    elif lsl.any_source:
        pred = f"name='{lsl.name}' and type='{lsl.type}'"
    else:
        raise AcquisitionError(
            "emg.lsl.source_id is not set: the EMG inlet binds to one amplifier by its source "
            f"id, so that another device or bench publishing {lsl.name!r} is never used. Set "
            "emg.lsl.source_id (the amplifier's; `exoctl sim` prints the simulator's), or set "
            "emg.lsl.any_source: true to take the first stream of that name and type"
        )
    found = pylsl.resolve_bypred(pred, 1, lsl.resolve_timeout_s)
    if not found:
        raise AcquisitionError(
            f"no LSL stream matching {pred} within {lsl.resolve_timeout_s} s "
            "(is the amplifier or the HIL simulator running?)"
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


class LslAcquisition(Acquisition):
    """Pulls chunks from an LSL inlet into the ring buffer."""

    def __init__(self, info: pylsl.StreamInfo, ring: RingBuffer, poll_s: float = 0.001) -> None:
        super().__init__(ring)
        self.info = info
        self.poll_s = poll_s
        self._max = 1024
        self._buf = np.zeros((self._max, ring.n_channels), dtype=np.float32)

    def _run(self) -> None:
        inlet = pylsl.StreamInlet(
            self.info,
            max_buflen=2,
            max_chunklen=0,
            recover=True,
            processing_flags=pylsl.proc_clocksync | pylsl.proc_monotonize,
        )
        inlet.open_stream(timeout=5.0)
        try:
            while not self._stop.is_set():
                _, stamps = inlet.pull_chunk(
                    timeout=self.poll_s, max_samples=self._max, dest_obj=self._buf
                )
                n = len(stamps)
                if n:
                    arrival = time.monotonic()
                    self.ring.write(self._buf[:n], np.asarray(stamps), arrival)
                    self.chunks += 1
        finally:
            inlet.close_stream()


class ReplayAcquisition(Acquisition):
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
            due = t0 + (sent + n) / self.fs_hz
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            stamps = lsl0 + (sent + np.arange(n)) / self.fs_hz
            self.ring.write(self.emg[pos : pos + n], stamps, time.monotonic())
            self.chunks += 1
            sent += n


def make_acquisition(cfg: EmgConfig, ring: RingBuffer) -> Acquisition:
    if cfg.source == "lsl":
        return LslAcquisition(resolve_lsl_stream(cfg), ring)
    if cfg.replay.path is None:
        raise AcquisitionError("emg.source is 'replay' but emg.replay.path is not set")
    return ReplayAcquisition(cfg.replay.path, ring, cfg.sampling_rate_hz, cfg.replay.loop)
