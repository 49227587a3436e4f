"""``exoctl bench up``: the simulator and the daemon, with matching settings, in one command.

A daemon talks to the simulator exactly as to the exoskeleton: through a serial port and an
LSL stream. Both must agree on the port and the stream's source id, the daemon needs a data
directory and a socket it may create, and a person must be allowed on that socket. This
command writes one configuration with all of that (``DIR/exoctl.yaml``, from the configuration
the lookup finds, its paths made absolute), starts ``exoctl sim`` with the same port and
source id, then ``exoctl daemon``, waits until the daemon answers ``status``, and prints how
to drive it. Ctrl-C (or SIGTERM) stops the daemon first (assistance ramps out, the recording is
closed), then the simulator.

Real-time scheduling is off unless ``--realtime`` asks for it (then the loop at SCHED_FIFO 50
and the simulator above it at 60, as on the exoskeleton): on a small shared machine two FIFO
processes starve everything else.
"""

from __future__ import annotations

import argparse
import getpass
import json
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from exoctl.cli_policy import seconds
from exoctl.config.cross_field import socket_path_too_long
from exoctl.config.lookup import find_config
from exoctl.config.schema import ConfigError, load_config, resolve_paths
from exoctl.config.yamlfile import dump_yaml, read_yaml
from exoctl.runtime.children import stop_children

LOOP_PRIORITY = 50
SIM_PRIORITY = 60  # above the loop: the simulator stands for hardware with its own processor


def bench_config(
    base: Path, bench_dir: Path, port: Path, source_id: str, realtime: bool
) -> dict[str, Any]:
    """The bench's configuration: ``base`` with the keys the simulator and daemon share set."""
    raw = read_yaml(base, "configuration").data or {}
    resolve_paths(raw, base.resolve().parent)
    device = raw.setdefault("device", {})
    device.setdefault("serial", {})["port"] = str(port)
    # The daemon's LSL outlets are named after the device: one name per bench, so that two
    # benches on a network publish distinct source ids.
    device["name"] = source_id
    emg = raw.setdefault("emg", {})
    emg["source"] = "lsl"
    emg.setdefault("lsl", {})["source_id"] = source_id
    raw.setdefault("simulator", {})["realtime_priority"] = SIM_PRIORITY if realtime else 0
    svc = raw.setdefault("service", {})
    svc.update(
        data_dir=str(bench_dir / "recordings"),
        socket_path=str(bench_dir / "control.sock"),
        socket_group=None,  # the socket stays in the user's own group
        allowed_users=sorted({getpass.getuser(), "root"}),
        allowed_groups=[],
        realtime_priority=LOOP_PRIORITY if realtime else 0,
        lock_memory=bool(realtime),
    )
    return raw


def write_bench_config(path: Path, raw: dict[str, Any], base: Path) -> None:
    header = (
        f"# Written by `exoctl bench up` from {base}: the simulator and the daemon read this\n"
        "# same file, so their serial port and LSL source id match. Regenerated at every start.\n"
    )
    path.write_text(header + dump_yaml(raw, sort_keys=False, default_flow_style=None))


class Bench:
    """The two child processes and their logs."""

    def __init__(
        self,
        bench_dir: Path,
        config: Path,
        port: Path,
        source_id: str,
        sim_args: tuple[str, ...] = (),
    ) -> None:
        self.sim_args = sim_args  # e.g. the replay's options, passed on to `exoctl sim`
        self.dir = bench_dir
        self.config = config
        self.port = port
        self.source_id = source_id
        self.sim: subprocess.Popen | None = None
        self.daemon: subprocess.Popen | None = None
        self.info_file = bench_dir / "sim.json"

    def _spawn(self, args: list[str], log_name: str) -> subprocess.Popen:
        log = open(self.dir / log_name, "ab")  # noqa: SIM115 - the child keeps it open
        try:
            # A session of its own: Ctrl-C reaches only `bench up`, which stops the daemon
            # before the simulator (the other order records a lost EMG stream as a fault).
            return subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "--config", str(self.config), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log.close()

    def start(self, timeout_s: float = 60.0) -> dict[str, Any]:
        self.info_file.unlink(missing_ok=True)
        self.sim = self._spawn(
            ["sim", "--port", str(self.port), "--source-id", self.source_id,
             "--info-file", str(self.info_file), *self.sim_args],
            "sim.log",
        )  # fmt: skip
        deadline = time.monotonic() + timeout_s
        while not self.info_file.is_file():
            self._check_alive(self.sim, "simulator", "sim.log")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the simulator did not start within {timeout_s:g} s")
            time.sleep(0.05)
        info = json.loads(self.info_file.read_text())
        self.daemon = self._spawn(["daemon"], "daemon.log")
        status = self._wait_daemon(deadline)
        return {"sim": info, "status": status}

    def _wait_daemon(self, deadline: float) -> dict[str, Any]:
        from exoctl.service.client import Client, ClientError

        socket_path = load_config(self.config).service.socket_path
        while True:
            assert self.daemon is not None
            self._check_alive(self.daemon, "daemon", "daemon.log")
            if socket_path.exists():
                try:
                    with Client(socket_path, timeout_s=5.0) as c:
                        return c.call("status")
                except ClientError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError("the daemon did not answer within the start-up time")
            time.sleep(0.1)

    def _check_alive(self, proc: subprocess.Popen, what: str, log_name: str) -> None:
        if proc.poll() is not None:
            tail = (self.dir / log_name).read_text(errors="replace").strip().splitlines()[-5:]
            raise RuntimeError(
                f"the {what} exited (code {proc.returncode}); last lines of "
                f"{self.dir / log_name}:\n  " + "\n  ".join(tail)
            )

    def failed(self) -> str | None:
        for proc, what in ((self.daemon, "daemon"), (self.sim, "simulator")):
            if proc is not None and proc.poll() is not None:
                return f"the {what} exited (code {proc.returncode})"
        return None

    def stop(self) -> list[int | None]:
        """The daemon first (it ramps out and closes the recording), then the simulator."""
        return stop_children((self.daemon, self.sim))


def how_to_drive(bench: Bench, started: dict[str, Any]) -> str:
    env = f"export EXOCTL_CONFIG={bench.config}"
    st = started["status"]
    return "\n".join(
        [
            f"exoctl bench up: simulator (pid {bench.sim.pid if bench.sim else '-'}) and daemon "
            f"(pid {bench.daemon.pid if bench.daemon else '-'}) running; safety "
            f"{st.get('safety_state', '?')}",
            f"  configuration  {bench.config}",
            f"  serial         {bench.port} -> {started['sim'].get('pty', started['sim']['port'])}"
            " (emulated firmware)",
            f"  EMG            LSL stream source id {bench.source_id}",
            f"  LSL out        {bench.source_id}-events (markers), -estimate, -command, "
            "-joint_state",
            f"  scheduling     simulator {started['sim'].get('realtime')}",
            f"  logs           {bench.dir / 'sim.log'}, {bench.dir / 'daemon.log'}",
            f"  recordings     {bench.dir / 'recordings'}",
            "Drive it from another terminal:",
            f"  {env}",
            "  exoctl status",
            "  exoctl session start --patient P01 --assist 0.3",
            "  exoctl assist set 0.4",
            "  exoctl estop; exoctl fault clear",
            "  exoctl session stop",
            "  exoctl sessions list; exoctl sessions report ID --out report.html",
            "Ctrl-C here stops the daemon (assistance ramps out, recording closed), then the "
            "simulator.",
        ]
    )


def cmd_bench_up(args: argparse.Namespace) -> int:
    choice = find_config(getattr(args, "config", None))
    load_config(choice.path)  # a bad base is reported with its file and key, before anything
    bench_dir: Path = args.dir.resolve()
    bench_dir.mkdir(parents=True, exist_ok=True)
    port = (args.port or bench_dir / "exoskeleton").absolute()
    source_id = args.source_id or f"exoctl-bench-{uuid.uuid4().hex[:8]}"  # also the device name
    too_long = socket_path_too_long(bench_dir / "control.sock")
    if too_long:
        raise ConfigError(f"{bench_dir / 'control.sock'}: {too_long}; use a shorter --dir")
    config = bench_dir / "exoctl.yaml"
    raw = bench_config(choice.path, bench_dir, port, source_id, args.realtime)
    sim_args = _replay(args, raw)
    write_bench_config(config, raw, choice.path)
    from exoctl.estimation.estimator import check_model_and_calibration

    check_model_and_calibration(load_config(config))  # before the daemon and simulator start
    bench = Bench(bench_dir, config, port, source_id, sim_args)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        try:
            started = bench.start()
        except RuntimeError as e:
            print(f"exoctl bench up: {e}", file=sys.stderr)
            return 1
        print(how_to_drive(bench, started), flush=True)
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stop.wait(0.5):
            if (why := bench.failed()) is not None:
                print(f"exoctl bench up: {why}; see {bench_dir}/*.log", file=sys.stderr)
                return 1
            if deadline is not None and time.monotonic() >= deadline:
                break
        return 0
    finally:
        codes = bench.stop()
        print(f"exoctl bench up: stopped (daemon exit {codes[0]}, simulator exit {codes[1]})")


def _replay(args: argparse.Namespace, raw: dict[str, Any]) -> tuple[str, ...]:
    """With ``--replay``/``--replay-session``: the daemon's configuration takes the
    recording's muscles, EMG rate and kind (and ``--model`` with its calibration), and the
    simulator's arguments to stream it (``exoctl.hil.replay``). The recording streams once."""
    from exoctl.config.schema import deep_merge
    from exoctl.hil.commands import replay_spec
    from exoctl.hil.replay import controller_overrides, load_recording, replay_chunk

    spec = replay_spec(args)
    if spec is None:
        if args.model is not None:
            raw.update(deep_merge(raw, controller_overrides(None, str(args.model), 0)))
        return ()
    rec = load_recording(spec)
    cfg = load_config_raw(raw)
    chunk = replay_chunk(rec.fs_hz, cfg.tick_rate_hz, cfg.simulator.emg_chunk_samples)
    model = None if args.model is None else str(args.model)
    raw.update(deep_merge(raw, controller_overrides(rec.describe(), model, chunk)))
    out: list[str] = []
    for flag, value in (("--replay", spec.data), ("--trial", spec.trial),
                        ("--replay-session", spec.session), ("--from", spec.start_s),
                        ("--to", spec.end_s), ("--preroll", spec.preroll_s)):  # fmt: skip
        if value is not None:
            out += [flag, str(value)]
    return tuple(out)


def load_config_raw(raw: dict[str, Any]):
    """The configuration a raw document validates to (paths already absolute)."""
    from exoctl.config.schema import Config

    return Config.model_validate(raw)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``exoctl bench up`` to the main parser."""
    p = subparsers.add_parser("bench", help="a simulated exoskeleton with the daemon on it")
    sp = p.add_subparsers(dest="bench_cmd", required=True, metavar="{up}")
    up = sp.add_parser(
        "up",
        help="start the simulator and the daemon with matching settings; Ctrl-C stops both",
        description=__doc__.split("\n\n")[1] if __doc__ else None,
    )
    up.add_argument(
        "--dir",
        type=Path,
        default=Path("exoctl-bench"),
        help="configuration, logs, recordings and socket go here (default ./exoctl-bench)",
    )
    up.add_argument(
        "--port", type=Path, default=None, help="serial port path (default DIR/exoskeleton)"
    )
    up.add_argument(
        "--source-id", default=None, help="LSL source id of the EMG stream (default: random)"
    )
    up.add_argument(
        "--realtime",
        action="store_true",
        help=f"SCHED_FIFO {LOOP_PRIORITY} for the loop, {SIM_PRIORITY} for the simulator "
        "(default off)",
    )
    up.add_argument(
        "--duration", type=seconds, default=None, help="stop after SECONDS (default: until Ctrl-C)"
    )
    up.add_argument("--model", type=Path, default=None, help="the model the daemon runs (M.onnx)")
    from exoctl.hil.commands import add_replay_options

    add_replay_options(up)
    up.set_defaults(func=cmd_bench_up)
