"""The replay options of ``exoctl hil``, ``exoctl sim`` and ``exoctl bench up``: one set of
flags and one check of their combination, shared by the three commands (each registered by its
own module), so none of them imports another command's module."""

from __future__ import annotations

import argparse
from pathlib import Path

from exoctl.cli_policy import UsageError


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
            raise UsageError(f"{', '.join(given)} only go with --replay or --replay-session")
        return None
    if args.replay is not None and args.replay_session is not None:
        raise UsageError("--replay and --replay-session: choose one recording")
    if getattr(args, "firmware", "python") == "qemu":  # the board models its own joints
        raise UsageError("a replay runs on the Python emulator: leave out --firmware qemu")
    if args.replay is not None and args.trial is None:
        raise UsageError("--replay needs --trial NAME")
    if args.replay_session is not None and args.trial is not None:
        raise UsageError("--trial goes with --replay, not --replay-session")
    if args.preroll is not None and not 0 <= args.preroll <= 600:
        raise UsageError("--preroll must be in [0, 600] s")
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
