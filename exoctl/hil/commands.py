"""``exoctl hil`` and ``exoctl sim``: the HIL bench's commands, registered here beside the
bench's code (``register(subparsers)``, as every command family does; exoctl/cli_parser.py
calls it). ``exoctl bench up`` is in exoctl/hil/bench.py and reuses the replay options here.

The heavy parts (the runner, the simulator, the replay) are imported when a command runs, so
that building the parser stays cheap for every other command."""

from __future__ import annotations

import argparse
from pathlib import Path

from exoctl import cli_policy as policy


def cmd_hil(args: argparse.Namespace) -> int:
    from exoctl.config.lookup import config_path
    from exoctl.config.schema import load_config

    load_config(config_path(args))  # a bad file fails here, before the bench's heavy imports
    if args.firmware == "qemu":  # missing tools fail here, with the packages to install
        from firmware_bridge.qemu_firmware import require_tools

        require_tools()
    from exoctl.hil import MAX_DURATION_S
    from exoctl.hil.runner import format_summary, run_hil, run_scenario

    replay = replay_spec(args)
    model = str(args.model) if args.model is not None else None
    if args.scenario:
        summary = run_scenario(
            args.scenario, config_path(args), args.firmware, replay=replay, model=model
        )
    else:
        duration = args.duration
        if duration is None:  # a replay lasts as long as its recording
            duration = MAX_DURATION_S if replay is not None else 10.0
        summary = run_hil(
            duration, config_path(args), firmware=args.firmware, replay=replay, model=model
        )
    if args.json:
        policy.emit_json(summary)
    else:
        print(format_summary(summary))
    return policy.EXIT_OK


def cmd_sim(args: argparse.Namespace) -> int:
    from exoctl.config.lookup import config_path
    from exoctl.hil.simulator import run_standalone

    if args.firmware == "qemu":
        from firmware_bridge.qemu_firmware import require_tools

        require_tools()
    return run_standalone(
        config_path(args),
        args.duration,
        args.info_file,
        args.port,
        args.source_id,
        args.firmware,
        replay=replay_spec(args),
    )


def add_replay_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("replay a recording instead of the synthetic patient")
    g.add_argument(
        "--replay",
        type=Path,
        default=None,
        metavar="DESCRIPTION",
        help="dataset description whose trial to stream (EMG on LSL at its own "
        "rate and kind, joint angles and velocities as the firmware's telemetry)",
    )
    g.add_argument("--trial", default=None, help="the trial to replay (with --replay)")
    g.add_argument(
        "--replay-session",
        default=None,
        metavar="ID",
        help="replay one of our own recorded sessions (service.data_dir)",
    )
    g.add_argument(
        "--from",
        dest="from_s",
        type=float,
        default=None,
        metavar="S",
        help="scored window's start, on the recording's time axis (default: its "
        "start; up to --preroll seconds before it are streamed first)",
    )
    g.add_argument(
        "--to",
        dest="to_s",
        type=float,
        default=None,
        metavar="S",
        help="the window's end (default: the recording's end)",
    )
    g.add_argument("--preroll", type=float, default=None, metavar="S",
                   help="seconds streamed before --from while the controller starts "
                   "(default 5)")  # fmt: skip


def replay_spec(args: argparse.Namespace):
    """The replay asked for on the command line, or None; a wrong combination is a usage
    error (exit 2)."""
    from exoctl.hil.replay import DEFAULT_PREROLL_S, ReplaySpec

    given = [f"--{k}" for k, v in (("trial", args.trial), ("from", args.from_s),
             ("to", args.to_s), ("preroll", args.preroll)) if v is not None]  # fmt: skip
    if args.replay is None and args.replay_session is None:
        if given:
            raise policy.UsageError(f"{', '.join(given)} only go with --replay or --replay-session")
        return None
    if args.replay is not None and args.replay_session is not None:
        raise policy.UsageError("--replay and --replay-session: choose one recording")
    if getattr(args, "firmware", "python") == "qemu":  # the board models its own joints
        raise policy.UsageError("a replay runs on the Python emulator: leave out --firmware qemu")
    if args.replay is not None and args.trial is None:
        raise policy.UsageError("--replay needs --trial NAME")
    if args.replay_session is not None and args.trial is not None:
        raise policy.UsageError("--trial goes with --replay, not --replay-session")
    if args.preroll is not None and not 0 <= args.preroll <= 600:
        raise policy.UsageError("--preroll must be in [0, 600] s")
    data_dir = None
    if args.replay_session is not None:
        from exoctl.config.lookup import config_path
        from exoctl.config.schema import load_config

        data_dir = str(load_config(config_path(args)).service.data_dir)
    return ReplaySpec(
        data=None if args.replay is None else str(args.replay),
        trial=args.trial,
        session=args.replay_session,
        data_dir=data_dir,
        start_s=args.from_s,
        end_s=args.to_s,
        preroll_s=DEFAULT_PREROLL_S if args.preroll is None else float(args.preroll),
    )


def _seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (at most the runner's limit)."""
    from exoctl.hil import MAX_DURATION_S

    value = policy.seconds(text)
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"{text} s: must be in (0, {MAX_DURATION_S:g}] s")
    return value


def _firmware_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--firmware",
        choices=("python", "qemu"),
        default="python",
        help="the device on the pty: the Python emulator (default), or the reference firmware "
        "in C (firmware/) on an emulated Cortex-M3 board in qemu-system-arm",
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``exoctl hil`` and ``exoctl sim`` to the main parser."""
    hil = subparsers.add_parser("hil", help="run the HIL simulator and the controller together")
    hil.add_argument(
        "--duration",
        type=_seconds,
        default=None,
        help="seconds of assisted walking (default 10; a replay: the recording's length)",
    )
    hil.add_argument("--json", action="store_true", help="print one JSON object")
    hil.add_argument(
        "--scenario",
        default=None,
        help="fault scenario: a name (exoctl/configs/scenarios/) or a path",
    )
    _firmware_option(hil)
    hil.add_argument(
        "--model", type=Path, default=None, help="the model the controller runs (M.onnx)"
    )
    add_replay_options(hil)
    hil.set_defaults(func=cmd_hil)

    sim = subparsers.add_parser(
        "sim", help="run only the HIL simulator (EMG on LSL, firmware on a pty)"
    )
    sim.add_argument(
        "--duration", type=_seconds, default=None, help="seconds (default: until killed)"
    )
    sim.add_argument("--info-file", type=Path, default=None, help="write the endpoints here")
    sim.add_argument("--port", type=Path, default=None, help="link this path to the pty")
    sim.add_argument("--source-id", default=None, help="LSL source id of the EMG stream")
    _firmware_option(sim)
    add_replay_options(sim)
    sim.set_defaults(func=cmd_sim)
