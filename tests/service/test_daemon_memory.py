"""The daemon's memory stays bounded: what it preallocates is what it needs.

Preallocated arrays take their pages as they are first written, so a record sized for more
than the daemon needs shows up as growth for as long as it takes to fill: the tick record once
held 600 s of ticks and grew the daemon by about 90 MiB over a session's first ten minutes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from exoctl.config.schema import load_config
from exoctl.service.daemon import STATUS_WINDOW_S, TICK_LOG_S, Daemon

BUDGET_MIB = 16.0
"""What the loop's tick record and timing figures may take at the default configuration."""


def _arrays(*objs: object) -> list[np.ndarray]:
    return [v for o in objs for v in vars(o).values() if isinstance(v, np.ndarray)]


def test_the_daemons_tick_record_holds_what_it_needs_and_no_more(
    tmp_path: Path, write_config
) -> None:
    cfg = load_config(write_config(tmp_path))
    d = Daemon(cfg)  # built, never started: no device, no socket
    try:
        loop = d.controller._loop
        ticks = int(TICK_LOG_S * cfg.tick_rate_hz)
        assert loop.log.capacity == loop.stats.capacity == ticks
        assert TICK_LOG_S >= 2 * STATUS_WINDOW_S  # status's window, with room for the pump
        held = sum(a.nbytes for a in _arrays(loop.log, loop.stats)) / 2**20
        assert held <= BUDGET_MIB, f"{held:.1f} MiB of tick record for {TICK_LOG_S:g} s"
    finally:
        d.controller.shutdown(ramp_out=False)
        d.recorder.close()
