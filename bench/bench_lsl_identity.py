"""What the EMG stream's identity checks cost at start, and how fast a replacement is refused.

Over real LSL on loopback, with exoctl's liblsl settings (``exoctl/lsl_api.cfg``):

* ``startup_resolve_s``: ``resolve_lsl_stream`` with one matching outlet: the resolve on the
  configured host plus the look for a second stream with the same source id
  (``DUPLICATE_WAIT_S``), which is what the check adds to the daemon's start;
* ``refusal_after_dropout_s``: an ``LslAcquisition`` reads an outlet; an outlet with the same
  source id appears, then the first is withdrawn; the time from the withdrawal to the refusal
  on the ring buffer (``RingBuffer.source_fault``, which the safety layer's ``emg_source``
  watchdog reads at its next tick). Compare with ``safety.emg_timeout_s``, after which the
  dropout itself is ``emg_stale``.

    .venv/bin/python -m bench.bench_lsl_identity [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

import numpy as np
import pylsl

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.acquisition.sources import (
    DUPLICATE_WAIT_S,
    LslAcquisition,
    make_acquisition,
    resolve_lsl_stream,
)
from exoctl.config.schema import EmgConfig, load_config

CFG = load_config()
N_CH = len(CFG.emg.muscles)


def _emg_cfg(source_id: str) -> EmgConfig:
    lsl = CFG.emg.lsl.model_copy(update={"source_id": source_id, "resolve_timeout_s": 10.0})
    return CFG.emg.model_copy(update={"lsl": lsl})


def _outlet(source_id: str) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo(
        "exoctl-sim-emg", "EMG", N_CH, CFG.emg.sampling_rate_hz, pylsl.cf_float32, source_id
    )
    return pylsl.StreamOutlet(info, chunk_size=4)


def _wait(pred: Callable[[], bool], timeout: float) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.001)
    return False


def _stats(xs: list[float]) -> dict[str, float | int]:
    a = np.asarray(xs)
    return {"n": len(a), "median": float(np.median(a)), "max": float(a.max())}


def _startup(reps: int) -> list[float]:
    out = []
    for _ in range(reps):
        sid = f"bench-{uuid.uuid4().hex[:12]}"
        keep = _outlet(sid)
        t = time.monotonic()
        resolve_lsl_stream(_emg_cfg(sid))
        out.append(time.monotonic() - t)
        del keep
    return out


def _refusal(reps: int) -> list[float]:
    out = []
    chunk = np.ones((4, N_CH), dtype=np.float32)
    for _ in range(reps):
        sid = f"bench-{uuid.uuid4().hex[:12]}"
        first = _outlet(sid)
        ring = RingBuffer(4096, N_CH)
        acq = make_acquisition(_emg_cfg(sid), ring)
        assert isinstance(acq, LslAcquisition)
        acq.start()
        try:
            _wait(first.have_consumers, 10.0)
            first.push_chunk(chunk)
            replacement = _outlet(sid)
            t = time.monotonic()
            del first  # withdrawn: the inlet loses it
            if _wait(lambda r=ring: r.source_fault is not None, 30.0):
                out.append(time.monotonic() - t)
            del replacement
        finally:
            acq.stop()
    return out


def run(quick: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    say = log or (lambda m: None)
    reps = 2 if quick else 8
    say(f"lsl_identity: {reps} start-up resolves, {reps} refusals after a dropout")
    startup, refusal = _startup(reps), _refusal(reps)
    return {
        "duplicate_wait_s": DUPLICATE_WAIT_S,
        "startup_resolve_s": _stats(startup),
        "refusal_after_dropout_s": _stats(refusal) if refusal else None,
        "refusals_missed": reps - len(refusal),
        "emg_timeout_s": CFG.safety.emg_timeout_s,
        "load_average": list(os.getloadavg()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        prog="python -m bench.bench_lsl_identity", description=__doc__.splitlines()[0]
    )
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    print(json.dumps(run(quick=args.quick, log=print), indent=2))


if __name__ == "__main__":
    main()
