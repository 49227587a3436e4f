"""Acquisition over real LSL on loopback, and file replay, into the ring buffer."""

from __future__ import annotations

import time
import uuid

import numpy as np
import pylsl
import pytest

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.acquisition.sources import (
    AcquisitionError,
    LslAcquisition,
    ReplayAcquisition,
    resolve_lsl_stream,
)
from exoctl.config.schema import load_config


def _wait(pred, timeout=5.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return False


def test_lsl_samples_and_stamps_arrive_intact():
    cfg = load_config()
    sid = f"test-{uuid.uuid4().hex}"
    info = pylsl.StreamInfo("exoctl-test", "EMG", 16, 2000, pylsl.cf_float32, sid)
    outlet = pylsl.StreamOutlet(info, chunk_size=4)
    emg_cfg = cfg.emg.model_copy(
        update={"lsl": cfg.emg.lsl.model_copy(update={"source_id": sid, "resolve_timeout_s": 5})}
    )
    ring = RingBuffer(4000, 16)
    acq = LslAcquisition(resolve_lsl_stream(emg_cfg), ring)
    acq.start()
    try:
        assert _wait(lambda: outlet.have_consumers())
        data = np.arange(400 * 16, dtype=np.float32).reshape(400, 16)
        t0 = pylsl.local_clock()
        for k in range(100):
            stamps = t0 + (4 * k + np.arange(4)) / 2000.0
            outlet.push_chunk(data[4 * k : 4 * k + 4], stamps[-1])
        assert _wait(lambda: ring.written == 400), ring.written
    finally:
        acq.stop()
    out, st, ar = np.zeros((400, 16), np.float32), np.zeros(400), np.zeros(400)
    assert ring.read_new(out, st, ar) == 400
    np.testing.assert_array_equal(out, data)
    np.testing.assert_allclose(st, t0 + np.arange(400) / 2000.0, atol=1e-3)
    assert np.all(ar > 0) and acq.stats()["overflow_samples"] == 0


def test_missing_stream_and_wrong_shape_are_named():
    cfg = load_config()
    emg_cfg = cfg.emg.model_copy(
        update={
            "lsl": cfg.emg.lsl.model_copy(update={"source_id": "absent", "resolve_timeout_s": 0.3})
        }
    )
    with pytest.raises(AcquisitionError, match="no LSL stream matching source_id='absent'"):
        resolve_lsl_stream(emg_cfg)
    sid = f"test-{uuid.uuid4().hex}"
    _outlet = pylsl.StreamOutlet(pylsl.StreamInfo("x", "EMG", 3, 2000, pylsl.cf_float32, sid))
    emg_cfg = cfg.emg.model_copy(
        update={"lsl": cfg.emg.lsl.model_copy(update={"source_id": sid, "resolve_timeout_s": 5})}
    )
    with pytest.raises(AcquisitionError, match="has 3 channels but emg.muscles maps 16"):
        resolve_lsl_stream(emg_cfg)


def test_no_source_id_refuses_to_bind_unless_any_source():
    """Every simulator publishes the same name: without a source id the inlet could take
    another bench's EMG, so it refuses, even with a matching stream on the network."""
    cfg = load_config()
    name = f"exoctl-test-{uuid.uuid4().hex[:8]}"
    sid = f"test-{uuid.uuid4().hex}"
    _outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "EMG", 16, 2000, pylsl.cf_float32, sid))
    lsl = cfg.emg.lsl.model_copy(update={"name": name, "source_id": None, "resolve_timeout_s": 5})
    emg_cfg = cfg.emg.model_copy(update={"lsl": lsl})
    with pytest.raises(AcquisitionError, match="emg.lsl.source_id is not set.*any_source"):
        resolve_lsl_stream(emg_cfg)
    told = cfg.emg.model_copy(update={"lsl": lsl.model_copy(update={"any_source": True})})
    assert resolve_lsl_stream(told).source_id() == sid


def test_replay_streams_a_file_in_real_time(tmp_path):
    path = tmp_path / "rec.npz"
    emg = np.random.default_rng(0).standard_normal((200, 2)).astype(np.float32)
    np.savez(path, emg=emg, fs_hz=1000.0)
    ring = RingBuffer(1000, 2)
    acq = ReplayAcquisition(path, ring, 1000.0)
    t = time.monotonic()
    acq.start()
    assert _wait(lambda: ring.written == 200)
    assert time.monotonic() - t >= 0.15  # 200 samples at 1 kHz are not delivered at once
    acq.stop()
    out, st, ar = np.zeros((200, 2), np.float32), np.zeros(200), np.zeros(200)
    ring.read_new(out, st, ar)
    np.testing.assert_array_equal(out, emg)
    with pytest.raises(AcquisitionError, match="recorded at 1000.0 Hz, configured 2000.0 Hz"):
        ReplayAcquisition(path, ring, 2000.0)
