"""HIL and daemon tests run with the real-time set-up of the exoskeleton PC, asked for explicitly.

Real-time scheduling is off by default (configs/default.yaml), but the simulator
stands for hardware with a processor of its own, and on this shared 2-core machine a loop at
SCHED_OTHER misses deadlines under the other jobs' load. These tests therefore ask for it,
as the default configuration did before real-time became opt-in: the loop at SCHED_FIFO 50,
the simulator above it at 60 (granted to root; refused quietly and reported otherwise).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, load_config, resolve_paths


@pytest.fixture(scope="session")
def realtime_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    resolve_paths(raw, DEFAULT_CONFIG.parent)
    raw["service"]["realtime_priority"] = 50
    raw["simulator"]["realtime_priority"] = 60
    path = tmp_path_factory.mktemp("hil") / "realtime.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    load_config(path)
    return path


@pytest.fixture(scope="module")
def cfg():
    """The shipped default configuration (a test module that needs another defines its own)."""
    return load_config()


@pytest.fixture(scope="module")
def cal(cfg):
    """The calibration that configuration names, loaded."""
    from exoctl.signal.calibration import load_calibration

    return load_calibration(cfg.estimator.calibration)
