"""The estimator process honours ``estimator.model_every_ticks``: what it publishes each tick.

The child's worker runs in this process on the daemon's real shared memory (ring buffer,
estimate block, inputs block), one turn at a time as its loop turns (step, then publish), and
the loop's side reads the block through ``SharedEstimates``: deterministic, no timing.
"""

from __future__ import annotations

import socket
from multiprocessing.connection import Connection

import numpy as np
import pytest

from exoctl.config.schema import load_config
from exoctl.data.patient import patient_from_config
from exoctl.runtime.estimator_process import EstimatorProcess, _Worker, warm_up
from exoctl.signal.calibration import load_calibration


@pytest.fixture
def worker():
    cfg = load_config().with_overrides(estimator={"model_every_ticks": 4})
    k = load_calibration(cfg.estimator.calibration).k
    proc = EstimatorProcess(cfg, len(cfg.emg.muscles), k)
    a, b = socket.socketpair()
    w = _Worker(cfg, proc.segments, Connection(a.detach()))
    try:
        yield cfg, proc, w
    finally:
        b.close()
        w.block.close()
        w.inputs.close()
        w.ring.close()
        proc.shutdown()


def test_a_held_estimate_is_published_with_its_runs_time_instant_and_samples(worker) -> None:
    cfg, proc, w = worker
    n = round(cfg.emg.sampling_rate_hz / cfg.tick_rate_hz)
    emg = patient_from_config(cfg, session=7).generate(1.0).emg
    fs = cfg.emg.sampling_rate_hz
    shared = proc.estimates
    zeros = np.zeros(len(cfg.joint_names))

    def feed(i: int) -> None:
        w.ring.write(emg[i * n : (i + 1) * n], 50.0 + (i * n + np.arange(n)) / fs, 100.0 + i)

    for i in range(100):  # the ring's recent EMG, for the warm-up
        feed(i)
    warm_up(w.stage, cfg)
    w.session = True
    first = None
    runs = 0
    for i in range(100, 140):
        feed(i)
        w.stage.step(zeros, zeros)
        now = 100.0 + i
        w._publish(now, computed=w.stage.ran)  # the child's loop turn  # noqa: SLF001
        shared.step(zeros, zeros)
        ran = w.stage.estimator.ran
        if first is None:  # the first live tick publishes the warmed-up estimate, held or not
            first = now
            assert shared.computed_at(0.0) == now and np.isfinite(shared.estimate).all()
            last_run, est = now, shared.estimate.copy()
            continue
        if ran:
            runs += 1
            assert shared.n == 4 * n or last_run == first  # every sample since the last run
            assert not np.array_equal(shared.estimate, est)
            last_run, est = now, shared.estimate.copy()
            assert shared.paired_at == 50.0 + ((i + 1) * n - 1) / fs
        else:
            assert shared.n == 0 and np.array_equal(shared.estimate, est)
        assert shared.computed_at(0.0) == last_run  # a held estimate ages from its run
    assert runs in (9, 10)  # 39 ticks after the first: the model on every 4th
