"""Cost of the serial protocol: encode/decode per frame, and command -> telemetry round trip.

Measured in one process, one run:

- codec: per-call time (perf_counter_ns around each call) of ``protocol.encode`` and
  ``protocol.decode`` for a 4-joint TORQUE_CMD and TELEMETRY, of ``StreamDecoder.feed`` per
  frame, and of ``HostLink.send_torque`` (the control tick's whole share of the link: scaling,
  packing, CRC, COBS, one non-blocking write) against the emulator;
- round trip over a real pseudo-terminal: the link sends a torque command every 2 ms (500 Hz)
  to the emulated firmware (same process, its own thread), which applies it and answers with
  telemetry echoing its sequence number; the link's reader thread measures send -> echo
  (exact samples). Ways of waiting for the next tick: sleep only; sleep then spin the last
  millisecond calling time.sleep(0) (as exoctl.control.timing does); a pure busy spin, with the
  default and with a 0.5 ms thread switch interval (sys.setswitchinterval).

Medians and p99 in microseconds (codec) and milliseconds (RTT). A pty has no USB latency timer:
these figures are the software floor, not what an FTDI adapter gives (see docs/protocol.md).
Nothing here asserts; timing belongs to benchmarks, not tests.

    .venv/bin/python bench/bench_protocol.py [--seconds 4] [--out bench/results/protocol.json]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from firmware_bridge import protocol as P  # noqa: E402
from firmware_bridge.emulator import EmulatedJoint, FirmwareEmulator  # noqa: E402
from firmware_bridge.link import HostLink  # noqa: E402

JOINTS = [
    EmulatedJoint("hip_l", 40.0, -0.5, 1.8),
    EmulatedJoint("hip_r", 40.0, -0.5, 1.8),
    EmulatedJoint("knee_l", 35.0, -0.05, 2.0),
    EmulatedJoint("knee_r", 35.0, -0.05, 2.0),
]


def _summary(ns: np.ndarray, scale: float) -> dict[str, float]:
    v = ns / scale
    return {
        "median": round(float(np.median(v)), 3),
        "p99": round(float(np.percentile(v, 99)), 3),
        "max": round(float(v.max()), 3),
        "n": int(v.size),
    }


def _per_call(fn, arg, n: int) -> np.ndarray:
    out = np.empty(n, dtype=np.int64)
    clock = time.perf_counter_ns
    for _ in range(min(n, 500)):  # warm up
        fn(arg)
    for i in range(n):
        t0 = clock()
        fn(arg)
        out[i] = clock() - t0
    return out


def bench_codec(n: int = 20000) -> dict[str, Any]:
    tq = P.TorqueCommand(123456, 987654321, (1250, -1250, 0, 3500))
    tel = P.Telemetry(
        1000, 2_000_000, 42, 5, 0, (3333, -1000, 12000, 500), (100, -2500, 0, 300),
        (1250, -1250, 0, 3500), (28, -28, 0, 78), (305, 310, 402, 300), (0, 0, 0, 0),
    )  # fmt: skip
    tq_wire, tel_wire = P.encode(tq), P.encode(tel)
    res: dict[str, Any] = {"frame_bytes": {"torque_cmd": len(tq_wire), "telemetry": len(tel_wire)}}
    gc.disable()
    try:
        res["encode_torque_cmd_us"] = _summary(_per_call(P.encode, tq, n), 1e3)
        res["encode_telemetry_us"] = _summary(_per_call(P.encode, tel, n), 1e3)
        res["decode_torque_cmd_us"] = _summary(_per_call(P.decode, tq_wire[:-1], n), 1e3)
        res["decode_telemetry_us"] = _summary(_per_call(P.decode, tel_wire[:-1], n), 1e3)
        dec = P.StreamDecoder()
        res["stream_feed_telemetry_us"] = _summary(_per_call(dec.feed, tel_wire, n), 1e3)
    finally:
        gc.enable()
    return res


def bench_link(
    seconds: float = 4.0,
    period_s: float = 0.002,
    spin_s: float = 0.0,
    switch_s: float | None = None,
    yield_in_spin: bool = True,
) -> dict[str, Any]:
    """500 Hz torque commands over the pty; wait for each tick like the control loop does:
    sleep, then (if ``spin_s``) spin the last ``spin_s`` before the deadline, offering the GIL
    with time.sleep(0) unless ``yield_in_spin`` is False."""
    old_switch = sys.getswitchinterval()
    if switch_s is not None:
        sys.setswitchinterval(switch_s)
    emu = FirmwareEmulator(JOINTS, command_timeout_s=0.1, telemetry_period_s=0.002)
    port = emu.start()
    link = HostLink(port, 1_000_000, n_joints=4)
    try:
        link.open()
        link.handshake(timeout_s=2.0)
        t_end = time.monotonic() + 1.0
        while not link.healthy and time.monotonic() < t_end:
            time.sleep(0.001)
        if not link.enable(timeout_s=2.0):
            raise RuntimeError(f"enable failed: {link.last_error}")
        torque = np.zeros(4)
        n = int(seconds / period_s)
        send_ns = np.empty(n, dtype=np.int64)
        late = np.empty(n, dtype=np.float64)
        next_t = time.monotonic() + period_s
        for k in range(n):
            torque[:] = 5.0 * np.sin(0.01 * k + np.arange(4))
            t0 = time.perf_counter_ns()
            link.send_torque(torque)
            send_ns[k] = time.perf_counter_ns() - t0
            left = next_t - time.monotonic() - spin_s
            if left > 0:
                time.sleep(left)
            while time.monotonic() < next_t:
                if yield_in_spin:
                    time.sleep(0)  # exoctl.control.timing spins like this: the GIL is offered

            late[k] = (time.monotonic() - next_t) * 1e3
            next_t += period_s
        time.sleep(0.05)
        st = link.stats()
        rtt = link.rtt_samples_ms()
        es = emu.stats()
    finally:
        link.close()
        emu.stop()
        sys.setswitchinterval(old_switch)
    return {
        "rate_hz": round(1.0 / period_s),
        "spin_ms": spin_s * 1e3,
        "spin_yields_gil": yield_in_spin,
        "switch_interval_ms": (switch_s if switch_s is not None else old_switch) * 1e3,
        "commands": n,
        "send_torque_us": _summary(send_ns, 1e3),
        "tick_lateness_ms": _summary(late, 1.0),
        "rtt_ms": _summary(rtt, 1.0) if rtt.size else None,
        "rtt_ms_histogram": {
            k: (round(v, 4) if isinstance(v, float) else v) for k, v in st["rtt_ms"].items()
        },
        "link": {
            k: st[k]
            for k in ("frames_good", "crc_errors", "framing_errors", "seq_gaps", "commands_sent")
        }
        | {"tx_would_block": st["tx_would_block"], "low_latency": st["low_latency"]},
        "emulator": {k: es[k] for k in ("commands_received", "commands_applied", "timeouts")},
    }


def run(seconds: float = 4.0, quick: bool = False) -> dict[str, Any]:
    """Entry point for the aggregator (``make bench``); ``quick`` shortens every part."""
    if quick:
        seconds = min(seconds, 0.5)
    return {
        "benchmark": "protocol",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "codec": bench_codec(3000 if quick else 20000),
        # the link as a control loop that only sleeps between ticks
        "pty_link_sleep": bench_link(seconds),
        # sleep, then spin the last 1 ms calling time.sleep(0) (as exoctl.control.timing does)
        "pty_link_spin_yield": bench_link(seconds, spin_s=0.001),
        # a pure busy spin holds the GIL: the reader thread waits up to the switch interval
        # (default 5 ms); shown with the default and with a 0.5 ms switch interval
        "pty_link_busy_spin": bench_link(seconds, spin_s=0.001, yield_in_spin=False),
        "pty_link_busy_spin_switch_0.5ms": bench_link(
            seconds, spin_s=0.001, switch_s=0.0005, yield_in_spin=False
        ),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = run(args.seconds)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
