"""Acquisition over real LSL on loopback, and file replay, into the ring buffer."""

from __future__ import annotations

import time
import typing
import uuid

import numpy as np
import pylsl
import pytest

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.acquisition.sources import (
    SOURCES,
    Acquisition,
    AcquisitionError,
    LslAcquisition,
    ReplayAcquisition,
    make_acquisition,
    resolve_lsl_stream,
)
from exoctl.config.schema import ConfigError, EmgConfig, load_config


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


# ------------------------------------------------------------------ the sources' registry
def test_the_configurations_allowed_sources_are_the_registered_ones():
    """The configuration (a floor below acquisition) lists the allowed ``emg.source`` values
    itself; they are exactly the names the source classes registered."""
    allowed = typing.get_args(EmgConfig.model_fields["source"].annotation)
    assert sorted(allowed) == sorted(SOURCES)
    assert SOURCES["lsl"] is LslAcquisition and SOURCES["replay"] is ReplayAcquisition
    for name, cls in SOURCES.items():
        assert cls.source == name and issubclass(cls, Acquisition)


def test_a_bad_source_in_a_file_names_file_line_key_and_the_registered_sources(tmp_path):
    from exoctl.config.schema import DEFAULT_CONFIG

    text = DEFAULT_CONFIG.read_text()
    assert text.count("\n  source: lsl\n") == 1
    line = text[: text.index("\n  source: lsl\n")].count("\n") + 2
    path = tmp_path / "bad.yaml"
    path.write_text(text.replace("\n  source: lsl\n", "\n  source: serial\n"))
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert msg.startswith(f"{path}:{line}: emg.source = 'serial'"), msg
    for name in SOURCES:
        assert repr(name) in msg


def test_make_acquisition_builds_the_configured_replay(tmp_path):
    path = tmp_path / "rec.npz"
    emg = np.random.default_rng(1).standard_normal((40, 16)).astype(np.float32)
    np.savez(path, emg=emg, fs_hz=2000.0)
    cfg = load_config().emg
    replay = cfg.model_copy(
        update={"source": "replay", "replay": cfg.replay.model_copy(update={"path": path})}
    )
    ring = RingBuffer(1000, 16)
    acq = make_acquisition(replay, ring)
    assert type(acq) is ReplayAcquisition and acq.fs_hz == 2000.0
    acq.start()
    assert _wait(lambda: ring.written == 40)
    acq.stop()
    no_path = cfg.model_copy(update={"source": "replay"})
    with pytest.raises(AcquisitionError, match="emg.replay.path is not set"):
        make_acquisition(no_path, ring)


class _Constant(Acquisition):
    """A source defined here the way a new one would be: a class naming itself."""

    def __init__(self, ring: RingBuffer, value: float) -> None:
        super().__init__(ring)
        self.value = value

    @classmethod
    def from_config(cls, cfg: EmgConfig, ring: RingBuffer) -> Acquisition:
        return cls(ring, cfg.sampling_rate_hz)

    def _run(self) -> None:
        chunk = np.full((4, self.ring.n_channels), self.value, dtype=np.float32)
        while not self._stop.is_set() and self.ring.written < 40:
            now = time.monotonic()
            self.ring.write(chunk, np.full(4, pylsl.local_clock()), now)
            self.chunks += 1
            time.sleep(0.001)


def test_a_new_source_is_a_class_that_names_itself_and_make_acquisition_finds_it():
    name = f"constant-{uuid.uuid4().hex[:8]}"
    cls = type("Constant", (_Constant,), {}, source=name)
    try:
        assert SOURCES[name] is cls and cls.source == name
        cfg = load_config().emg.model_copy(update={"source": name})  # as if the schema said so
        ring = RingBuffer(100, 16)
        acq = make_acquisition(cfg, ring)
        assert type(acq) is cls
        acq.start()
        assert _wait(lambda: ring.written >= 40)
        acq.stop()
        out, st, ar = np.zeros((40, 16), np.float32), np.zeros(40), np.zeros(40)
        ring.read_new(out, st, ar)
        assert (out == cfg.sampling_rate_hz).all()
        with pytest.raises(TypeError, match=f"EMG source '{name}' is already"):
            type("Again", (_Constant,), {}, source=name)
    finally:
        SOURCES.pop(name, None)
    gone = load_config().emg.model_copy(update={"source": name})
    with pytest.raises(AcquisitionError, match=r"is not an EMG source \('lsl', 'replay'\)"):
        make_acquisition(gone, RingBuffer(16, 16))
