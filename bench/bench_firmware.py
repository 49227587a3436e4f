"""The reference firmware (firmware/, C, lm3s6965evb in QEMU): image size, stack high-water
mark, and instruction counts per control period and per torque command.

QEMU runs with ``-icount shift=0``: the emulated clock advances one nanosecond per executed
instruction. The firmware measures its work with SysTick (50 MHz, 20 ns per count), so each
count it reports is 20 instructions under this setting: these are **instruction counts**
(resolution 20), not timing. QEMU is not cycle-accurate: a Cortex-M3 takes one cycle or more
per instruction (more for loads, branches, divisions, flash wait states), so an instruction
count is at best a lower bound on cycles; a real LM3S6965 at 50 MHz has 50 000 cycles per
1 ms control period.

A host sends HELLO, ENABLE and then a 4-joint TORQUE_CMD every 2 ms (500 Hz, the exoctl
default; never before the previous one's echo) with torques sweeping up to +-50 N m (so that
clamping runs too), reading everything the board sends. Control period = the 1 kHz tick's work (joint model, watchdogs, telemetry
when due, watchdog feed); per command = receiving its bytes, decoding, applying, and encoding
and queueing the echo telemetry.

    .venv/bin/python bench/bench_firmware.py [--seconds 5] [--out bench/results/firmware.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import serial  # noqa: E402

from firmware_bridge import protocol as P  # noqa: E402
from firmware_bridge.emulator import EmulatedJoint  # noqa: E402
from firmware_bridge.qemu_firmware import QemuFirmware, image_size  # noqa: E402

JOINTS = [
    EmulatedJoint("hip_l", 40.0, -0.5, 1.8),
    EmulatedJoint("hip_r", 40.0, -0.5, 1.8),
    EmulatedJoint("knee_l", 35.0, -0.05, 2.0),
    EmulatedJoint("knee_r", 35.0, -0.05, 2.0),
]
NS_PER_INSTRUCTION = 1  # -icount shift=0


def _insns(work: dict, cycles_to_insns: float) -> dict[str, Any]:
    n = work["n"]
    return {
        "n": n,
        "mean_instructions": round(work["sum"] / n * cycles_to_insns) if n else None,
        "max_instructions": round(work["max"] * cycles_to_insns) if n else None,
    }


def run(seconds: float = 5.0, quick: bool = False) -> dict[str, Any]:
    if quick:
        seconds = min(seconds, 1.0)
    fw = QemuFirmware(JOINTS, command_timeout_s=0.1, icount=True)
    fw.start()
    try:
        ser = serial.Serial(fw.port, 1_000_000, timeout=0)
        dec = P.StreamDecoder()
        ser.write(P.encode(P.Hello(1)) + P.encode(P.Enable(2)))
        time.sleep(0.1)
        dec.feed(ser.read(65536))
        before = fw.raw_stats()
        seq, t0 = 0, time.monotonic()
        next_t = t0
        while (now := time.monotonic()) - t0 < seconds:
            seq += 1
            phase = 2 * math.pi * (now - t0)
            tq = tuple(round(5000 * math.sin(phase + k)) for k in range(4))
            ser.write(P.encode(P.TorqueCommand(seq, int(now * 1e6) & 0xFFFFFFFF, tq)))
            # closed loop: the next command after this one's echo, so that commands never
            # queue while the emulated board runs slower than real time (as it does under
            # -icount on a loaded host); the counts below are per unit of work either way
            echoed = False
            while not echoed and time.monotonic() - now < 5.0:
                echoed = any(
                    isinstance(m, P.Telemetry) and m.last_seq_applied == seq
                    for m in dec.feed(ser.read(65536))
                )
            next_t = max(next_t + 0.002, time.monotonic())
            time.sleep(max(0.0, next_t - time.monotonic()))
        time.sleep(0.05)
        dec.feed(ser.read(65536))
        after = fw.raw_stats()
        ser.close()
    finally:
        fw.stop()
    assert fw.elf is not None
    cycles_to_insns = 1e9 / after["cpu_hz"] / NS_PER_INSTRUCTION
    tick = {k: after["tick_work"][k] - before["tick_work"][k] for k in ("n", "sum")}
    cmd = {k: after["cmd_work"][k] - before["cmd_work"][k] for k in ("n", "sum")}
    tick["max"], cmd["max"] = after["tick_work"]["max"], after["cmd_work"]["max"]
    periods = after["periods"] - before["periods"]
    per_tick, per_cmd = _insns(tick, cycles_to_insns), _insns(cmd, cycles_to_insns)
    return {
        "what": "instruction counts under QEMU -icount shift=0 (not timing)",
        "board": "lm3s6965evb (Cortex-M3), qemu-system-arm",
        "seconds": seconds,
        "image_bytes": image_size(fw.elf),
        "stack_bytes": {"used": after["stack_used"], "reserved": after["stack_size"]},
        "commands_sent": seq,
        "commands_applied": after["commands_applied"] - before["commands_applied"],
        "commands_refused": after["commands_refused"] - before["commands_refused"],
        "host_timeouts": after["timeouts"] - before["timeouts"],
        "emulated_ms": periods,
        "limit_violations": after["limit_violations"] - before["limit_violations"],
        "control_period": per_tick,
        "per_torque_command": per_cmd,
        # per 1 ms at the exoctl default of one command every 2 ms: a tick plus half a command
        "per_1ms_at_500Hz_mean_instructions": (
            round(per_tick["mean_instructions"] + per_cmd["mean_instructions"] / 2)
            if per_tick["n"] and per_cmd["n"]
            else None
        ),
        "worst_1ms_instructions": (
            per_tick["max_instructions"] + per_cmd["max_instructions"]
            if per_tick["n"] and per_cmd["n"]
            else None
        ),
        "host_frames_decoded": dec.good,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    res = run(args.seconds)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
