"""The synthetic patient's EMG published as an LSL outlet in real time.

A thread pushes ``chunk`` samples at a time on absolute deadlines, each chunk stamped with the
LSL time of its last sample, exactly as an amplifier driver would. The patient is generated
ahead in blocks; the *current* true joint torque and angle (the sample being emitted now) are
exposed for the emulated firmware's plant and, optionally, every emitted sample's truth is kept
for scoring. Nothing here is visible to the controller except the LSL stream.

Fault injection for the HIL bench (``inject``): stop the stream, saturate or flatten a channel,
or send NaN on a channel for a while (a corrupt sample, which drives the model's output to NaN).
"""

from __future__ import annotations

import threading
import time
import uuid

import numpy as np
import pylsl

from exoctl.data.patient import SyntheticPatient

_BLOCK_S = 0.25


class EmgOutlet:
    def __init__(
        self,
        patient: SyntheticPatient,
        name: str,
        stype: str = "EMG",
        chunk: int = 4,
        record_truth: bool = True,
        source_id: str | None = None,
    ) -> None:
        self.patient = patient
        self.fs = patient.fs_hz
        self.chunk = chunk
        self.record_truth = record_truth
        self.source_id = source_id or f"exoctl-sim-{uuid.uuid4().hex[:12]}"
        info = pylsl.StreamInfo(
            name, stype, len(patient.muscles), self.fs, pylsl.cf_float32, self.source_id
        )
        chans = info.desc().append_child("channels")
        for m in patient.muscles:
            ch = chans.append_child("channel")
            ch.append_child_value("label", m)
            ch.append_child_value("unit", "microvolts")
            ch.append_child_value("type", "EMG")
        self._outlet: pylsl.StreamOutlet | None = pylsl.StreamOutlet(
            info, chunk_size=chunk, max_buffered=2
        )
        nj = len(patient.joints)
        self.current_torque = np.zeros(nj)
        self.current_angle = np.zeros(nj)
        self.sent = 0
        self.t0_lsl = float("nan")
        self.truth_stamps: list[np.ndarray] = []
        self.truth_torque: list[np.ndarray] = []
        # injected faults (set from another thread; read once per chunk)
        self.paused = False
        self.saturate: dict[int, float] = {}
        self.flat: set[int] = set()
        self.nan_until: dict[int, float] = {}  # channel -> monotonic time
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: str | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_guarded, name="emg-outlet", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def close(self) -> None:
        """Stop and withdraw the stream, as an amplifier switched off: inlets lose it."""
        self.stop()
        self._outlet = None

    def _run_guarded(self) -> None:
        try:
            self._run()
        except Exception as e:
            self.error = f"{type(e).__name__}: {e}"

    def _run(self) -> None:
        outlet = self._outlet
        if outlet is None:
            raise RuntimeError("the EMG outlet was closed")
        block_n = int(_BLOCK_S * self.fs)
        block = self.patient.next_block(block_n)
        pos = 0
        t0 = time.monotonic()
        self.t0_lsl = pylsl.local_clock()
        k = 0
        while not self._stop.is_set():
            due = t0 + (k + 1) * self.chunk / self.fs
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            if pos + self.chunk > block_n:
                rest = block_n - pos
                nxt = self.patient.next_block(block_n)
                emg = np.vstack([block.emg[pos:], nxt.emg[: self.chunk - rest]])
                torque = np.vstack([block.torque[pos:], nxt.torque[: self.chunk - rest]])
                angles = nxt.angles[self.chunk - rest - 1]
                block, pos = nxt, self.chunk - rest
            else:
                emg = block.emg[pos : pos + self.chunk]
                torque = block.torque[pos : pos + self.chunk]
                angles = block.angles[pos + self.chunk - 1]
                pos += self.chunk
            stamps = self.t0_lsl + (self.sent + np.arange(self.chunk)) / self.fs
            self.current_torque = torque[-1].copy()
            self.current_angle = np.asarray(angles).copy()
            if self.record_truth:
                self.truth_stamps.append(stamps)
                self.truth_torque.append(torque.copy())
            self.sent += self.chunk
            k += 1
            if self.paused:
                continue
            emg = apply_injected_faults(emg, self.saturate, self.flat, self.nan_until)
            outlet.push_chunk(np.ascontiguousarray(emg, dtype=np.float32), stamps[-1])

    def truth(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.truth_stamps:
            return np.zeros(0), np.zeros((0, len(self.patient.joints)))
        return np.concatenate(self.truth_stamps), np.vstack(self.truth_torque)


def apply_injected_faults(
    emg: np.ndarray, saturate: dict[int, float], flat: set[int], nan_until: dict[int, float]
) -> np.ndarray:
    """One chunk with the bench's injected EMG faults (saturated, flat, NaN channels) applied,
    a copy when any is set; an expired NaN injection is dropped from ``nan_until``. Shared by
    the synthetic patient's outlet and a recording's replay, so that a scenario injects the
    same fault into either."""
    if not (saturate or flat or nan_until):
        return emg
    emg = emg.copy()
    for ch, level in saturate.items():
        emg[:, ch] = level
    for ch in flat:
        emg[:, ch] = 0.0
    now = time.monotonic()
    for ch, until in list(nan_until.items()):
        if now < until:
            emg[:, ch] = np.nan
        else:
            del nan_until[ch]
    return emg
