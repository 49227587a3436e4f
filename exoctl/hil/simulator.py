"""The HIL simulator: a synthetic patient's EMG on LSL and an emulated firmware on a pty.

It runs in a process of its own, so that the controller shares nothing with it but what a real
device would give: an LSL stream and a serial port. The firmware emulator's plant integrates
each joint from the patient's own torque plus the exoskeleton's, around the patient's gait
kinematics, so telemetry angles move the way the torques say.

Run standalone (for the daemon and manual bench work)::

    exoctl sim [--config C] [--duration S] [--port PATH] [--source-id ID] [--firmware qemu]

It prints the serial port and the LSL source id. ``--port`` links a fixed path to the pty
(which changes at every start), ``--source-id`` fixes the EMG stream's id (default: the
configuration's ``emg.lsl.source_id``, else a random one), so that a daemon's configuration
can name both once. ``exoctl bench up`` (exoctl.hil.bench) does that for you.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any, NotRequired, TypedDict

import numpy as np

from exoctl.config.schema import Config, load_config
from exoctl.data.patient import patient_from_config
from exoctl.hil.emg_source import EmgOutlet
from exoctl.hil.replay import (
    Recording,
    ReplayOutlet,
    ReplayPlant,
    ReplaySpec,
    load_recording,
    replay_chunk,
)
from firmware_bridge.emulator import EmulatedJoint, EmulatorStats, FirmwareEmulator
from firmware_bridge.qemu_firmware import QemuFirmware, firmware_version

FIRMWARES = ("python", "qemu")  # the Python emulator, or the C firmware on an emulated board


class SimulatorEndpoints(TypedDict):
    """What the simulator child sends when ready: where the controller must connect."""

    port: str | None  # the emulated firmware's pty symlink
    source_id: str  # the EMG outlet's LSL source_id
    replay: NotRequired[dict[str, Any]]  # a replay: the recording, t0 of its first sample


class SimulatorResult(TypedDict):
    """What the simulator child sends back on stop (pickled over the pipe: a plain dict)."""

    emulator: EmulatorStats
    truth_stamps: np.ndarray  # LSL time of each true joint torque
    truth_torque: np.ndarray  # (n, joints) N m, the patient's own torque
    emg_samples_sent: int
    emg_error: str | None  # the outlet thread's exception, if it died


class PatientPlant:
    """Joint dynamics: I q'' = tau_human + tau_exo - b q' - k (q - q_gait).

    The spring towards the patient's gait kinematics stands for everything the simple model
    leaves out (the rest of the body, ground contact); the patient's own torque and the
    exoskeleton's push the joint off it, the exoskeleton's in proportion to what it applies.
    """

    def __init__(self, outlet: EmgOutlet, joints: tuple[str, ...]) -> None:
        self.outlet = outlet
        nj = len(joints)
        self.inertia = np.array([1.2 if j.startswith("hip") else 0.5 for j in joints])
        self.damping = np.full(nj, 15.0)
        self.stiffness = np.full(nj, 400.0)
        self.q = np.array(outlet.current_angle, dtype=float)
        self.qd = np.zeros(nj)
        self._started = False

    def step(self, t: float, dt: float, exo_torque_nm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ref = self.outlet.current_angle
        if not self._started:
            self.q[:] = ref
            self._started = True
        tau_h = self.outlet.current_torque
        acc = (
            tau_h + exo_torque_nm - self.damping * self.qd - self.stiffness * (self.q - ref)
        ) / self.inertia
        # Semi-implicit Euler: stable for these stiffness/inertia ratios at 1 kHz.
        self.qd += acc * dt
        self.q += self.qd * dt
        return self.q.copy(), self.qd.copy()


class Simulator:
    """Owns the patient's EMG outlet and the emulated firmware.

    ``firmware`` "python" is the emulator (firmware_bridge/emulator.py), whose plant is the
    patient; "qemu" is the reference firmware in C (firmware/) booted in qemu-system-arm, whose
    telemetry comes from its own joint model (the board knows nothing of the patient).
    """

    def __init__(
        self,
        cfg: Config,
        record_truth: bool = True,
        source_id: str | None = None,
        firmware: str = "python",
        replay: Recording | None = None,
    ) -> None:
        """``firmware``: "python" (the emulator) or "qemu" (the C firmware on an emulated
        board); ``replay``: stream this recording instead of the synthetic patient
        (``exoctl.hil.replay``). The board in QEMU models its own joints, so it cannot report a
        recording's angles: a replay runs on the Python emulator."""
        if firmware not in FIRMWARES:
            raise ValueError(f"firmware {firmware!r}: one of {', '.join(FIRMWARES)}")
        if firmware == "qemu" and replay is not None:
            raise ValueError("a replay runs on the Python emulator (--firmware python)")
        self.cfg = cfg
        self.replay = replay
        self.outlet: EmgOutlet | ReplayOutlet
        self.plant: PatientPlant | ReplayPlant
        if replay is not None:
            self.outlet = ReplayOutlet(
                replay,
                name=cfg.emg.lsl.name,
                stype=cfg.emg.lsl.type,
                chunk=replay_chunk(replay.fs_hz, cfg.tick_rate_hz, cfg.simulator.emg_chunk_samples),
                source_id=source_id,
            )
            rest = np.array(
                [np.clip(0.0, j.angle_min_rad, j.angle_max_rad) for j in cfg.device.joints]
            )
            self.plant = ReplayPlant(self.outlet, cfg.joint_names, rest)
        else:
            self.outlet = EmgOutlet(
                patient_from_config(cfg),
                name=cfg.emg.lsl.name,
                stype=cfg.emg.lsl.type,
                chunk=cfg.simulator.emg_chunk_samples,
                record_truth=record_truth,
                source_id=source_id,
            )
            self.plant = PatientPlant(self.outlet, cfg.joint_names)
        joints = [
            EmulatedJoint(j.name, j.torque_limit_nm, j.angle_min_rad, j.angle_max_rad)
            for j in cfg.device.joints
        ]
        self.emulator: FirmwareEmulator | QemuFirmware
        if firmware == "qemu":
            self.emulator = QemuFirmware(
                joints,
                command_timeout_s=cfg.device.command_timeout_s,
                device_id=f"exofw-{firmware_version()}",
            )
        else:
            self.emulator = FirmwareEmulator(
                joints=joints,
                command_timeout_s=cfg.device.command_timeout_s,
                plant=self.plant,
                device_id="exoctl-hil-emu",
            )
        self.port: str | None = None

    def start(self) -> SimulatorEndpoints:
        self.outlet.start()
        self.port = self.emulator.start()
        out: SimulatorEndpoints = {"port": self.port, "source_id": self.outlet.source_id}
        if isinstance(self.outlet, ReplayOutlet) and self.replay is not None:
            out["replay"] = {**self.replay.describe(), "t0": self.outlet.t0}
        return out

    def inject(self, kind: str, **params) -> None:
        """Simulator-side faults for the HIL bench."""
        if kind == "emg_stop":
            self.outlet.paused = True
        elif kind == "emg_resume":
            self.outlet.paused = False
        elif kind == "emg_saturate":
            self.outlet.saturate[int(params.get("channel", 0))] = float(params.get("level", 1e4))
        elif kind == "emg_flat":
            self.outlet.flat.add(int(params.get("channel", 0)))
        elif kind == "emg_nan":
            until = time.monotonic() + float(params.get("seconds", 0.5))
            self.outlet.nan_until[int(params.get("channel", 0))] = until
        elif hasattr(self.emulator, kind):  # e.g. pull_cable, replug, reset, set_bit_error_rate
            getattr(self.emulator, kind)(**params)
        else:
            raise ValueError(f"unknown simulator fault {kind!r}")

    def stop(self) -> SimulatorResult:
        self.outlet.stop()
        stats = self.emulator.stats()
        self.emulator.stop()
        if isinstance(self.outlet, EmgOutlet):
            stamps, torque = self.outlet.truth()
        else:  # a replay is scored against its recording by the parent (exoctl.hil.runner)
            stamps, torque = np.zeros(0), np.zeros((0, len(self.cfg.joint_names)))
        return {
            "emulator": stats,
            "truth_stamps": stamps,
            "truth_torque": torque,
            "emg_samples_sent": self.outlet.sent,
            "emg_error": self.outlet.error,
        }


def hardware_priority(priority: int) -> str:
    """Put this process (and the threads it starts later) on SCHED_FIFO, if permitted.

    The simulator stands for hardware with a processor of its own: an amplifier does not stop
    sampling, nor a firmware its telemetry, because the PC is busy. Starved of CPU, it would
    invent faults that no real device has. Returns what was granted, for the summary.
    """
    if priority <= 0:
        return "SCHED_OTHER (not requested)"
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return f"SCHED_FIFO {priority}"
    except (OSError, AttributeError) as e:
        return f"SCHED_OTHER (SCHED_FIFO {priority} refused: {e})"


def simulator_process(
    config_path: str | None,
    overrides: dict,
    conn,
    firmware: str = "python",
    replay: ReplaySpec | None = None,
) -> None:
    """Child-process entry: start, report the endpoints, obey 'inject'/'stop' messages."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    try:
        cfg = load_config(config_path)
        if overrides:
            cfg = cfg.with_overrides(**overrides)
        recording = load_recording(replay) if replay is not None else None
        realtime = hardware_priority(cfg.simulator.realtime_priority)
        sim = Simulator(cfg, firmware=firmware, replay=recording)
        conn.send(("ready", {**sim.start(), "realtime": realtime}))
    except Exception as e:
        conn.send(("error", f"{type(e).__name__}: {e}"))
        return
    while True:
        if not conn.poll(0.5):
            continue
        try:
            msg, args = conn.recv()
        except EOFError:  # parent gone
            sim.stop()
            return
        if msg == "inject":
            try:
                sim.inject(args["kind"], **args.get("params", {}))
                conn.send(("ok", time.monotonic()))
            except Exception as e:
                conn.send(("error", f"{type(e).__name__}: {e}"))
        elif msg == "stats":
            conn.send(("ok", sim.emulator.stats()))
        elif msg == "stop":
            conn.send(("done", sim.stop()))
            return


def link_port(link: Path, pty: str) -> None:
    """Point ``link`` at the emulator's pty, replacing a stale link but never a real file."""
    if link.is_symlink():
        link.unlink()
    elif link.exists():
        raise FileExistsError(f"{link} exists and is not a symbolic link; not replaced")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(pty)


def run_standalone(
    config_path: Path | None,
    duration_s: float | None,
    info_file: Path | None,
    port_link: Path | None = None,
    source_id: str | None = None,
    firmware: str = "python",
    replay: ReplaySpec | None = None,
) -> int:
    """`exoctl sim`: run until the duration ends or SIGTERM/SIGINT, printing the endpoints.

    With ``replay`` it streams that recording once (then the EMG stops, as an amplifier
    switched off: a controller connected to it faults on the stale stream) and prints what a
    controller needs to be configured for it (``replay.controller``)."""
    cfg = load_config(config_path)
    recording = load_recording(replay) if replay is not None else None
    realtime = hardware_priority(cfg.simulator.realtime_priority)
    sim = Simulator(
        cfg,
        record_truth=False,
        source_id=source_id or cfg.emg.lsl.source_id,
        firmware=firmware,
        replay=recording,
    )
    info: dict[str, Any] = {**sim.start(), "realtime": realtime}
    try:
        if port_link is not None:
            link_port(port_link, info["port"])
            info = {**info, "pty": info["port"], "port": str(port_link)}
        if recording is not None:
            from exoctl.hil.replay import controller_overrides

            chunk = replay_chunk(recording.fs_hz, cfg.tick_rate_hz, cfg.simulator.emg_chunk_samples)
            info["replay"] = {
                **info["replay"],
                "controller": controller_overrides(info["replay"], None, chunk),
            }
        text = json.dumps(info)
        print(text, flush=True)
        if info_file is not None:
            tmp = info_file.with_name(info_file.name + ".tmp")
            tmp.write_text(text)
            tmp.replace(info_file)
        done = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: done.set())
        signal.signal(signal.SIGINT, lambda *_: done.set())
        done.wait(duration_s)
    except OSError as e:
        print(f"exoctl sim: {e}", file=sys.stderr)
        return 1
    finally:
        result = sim.stop()
        if port_link is not None and port_link.is_symlink():
            port_link.unlink()
    print(json.dumps({"emulator": result["emulator"]}, default=str), file=sys.stderr)
    return 0
