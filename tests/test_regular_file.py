"""An input path that is not a regular file is refused at once, naming it.

A FIFO given as ``--config`` used to hang for ever (``open`` waits for a writer). Each reader
here is given a FIFO; a helper thread stands ready to open it for writing (and close it at
once) after a few seconds, so that on code that waits, the read ends with an empty file and the
test fails on the message instead of hanging.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from exoctl.config.schema import ConfigError, load_config
from exoctl.data.dataset import load_dataset
from exoctl.data.importers import ImportErrorWithPath, read_table
from exoctl.data.spec import DatasetError
from exoctl.estimation.torque_model import ModelError, TorqueModel
from exoctl.signal.calibration import CalibrationError, load_calibration


def _unblock_later(path: Path, stop: threading.Event) -> None:
    """After 3 s, give a waiting reader its end of file (a writer that opens and closes)."""
    if stop.wait(3.0):
        return
    while not stop.is_set():
        try:
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
        except OSError as e:
            if e.errno != errno.ENXIO:  # ENXIO: no reader yet
                return
        time.sleep(0.05)


@pytest.fixture
def fifo(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "input.yaml"
    os.mkfifo(path)
    stop = threading.Event()
    t = threading.Thread(target=_unblock_later, args=(path, stop), daemon=True)
    t.start()
    yield path
    stop.set()
    t.join(5)


def _quick(fn, *args):
    t0 = time.monotonic()
    try:
        fn(*args)
    finally:
        assert time.monotonic() - t0 < 2.5, "waited on the FIFO"


def test_configuration_fifo_is_refused(fifo):
    with pytest.raises(ConfigError, match=rf"^{fifo}: is a FIFO \(named pipe\), not a regular"):
        _quick(load_config, fifo)


def test_calibration_fifo_is_refused(fifo):
    with pytest.raises(CalibrationError, match=r"is a FIFO \(named pipe\), not a regular file"):
        _quick(load_calibration, fifo)


def test_dataset_description_fifo_is_refused(fifo):
    with pytest.raises(DatasetError, match=r"is a FIFO \(named pipe\), not a regular file"):
        _quick(load_dataset, fifo)


def test_recording_fifo_is_refused(tmp_path):
    path = tmp_path / "emg.sto"
    os.mkfifo(path)
    with pytest.raises(ImportErrorWithPath, match=rf"^{path}: is a FIFO"):
        _quick(read_table, path)


def test_model_directory_and_fifo_are_refused(tmp_path):
    path = tmp_path / "model.onnx"
    os.mkfifo(path)
    with pytest.raises(ModelError, match=rf"^{path}: is a FIFO"):
        TorqueModel(path)
    with pytest.raises(ModelError, match=rf"^{tmp_path}: is a directory"):
        TorqueModel(tmp_path)


def test_config_fifo_on_the_command_line_fails_at_once(fifo):
    """``exoctl --config FIFO config show``: exit 1 and one line naming the FIFO."""
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run(
        [sys.executable, "-m", "exoctl.cli", "--config", str(fifo), "config", "show"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert r.returncode == 1, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and str(fifo) in lines[0] and "FIFO" in lines[0], r.stderr
    assert r.stdout == ""


def test_replay_recording_fifo_is_refused(fifo):
    from exoctl.acquisition.ringbuffer import RingBuffer
    from exoctl.acquisition.sources import AcquisitionError, ReplayAcquisition

    with pytest.raises(AcquisitionError, match=rf"^{fifo}: is a FIFO"):
        _quick(ReplayAcquisition, fifo, RingBuffer(100, 2), 2000.0)
