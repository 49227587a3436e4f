"""Commands that talk to the running daemon: ``daemon``, ``session start|stop``, ``fault
clear``, ``assist set``, ``model load``. ``status`` and ``estop``, which must start at once,
are in ``quick``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from exoctl.cli_policy import EXIT_USAGE
from exoctl.service.commands.common import (
    config_path,
    emit,
    fail,
    guarded,
    parse_assist,
    rpc_call,
)
from exoctl.service.commands.text import assist_message, clear_message, format_kv


@guarded
def cmd_daemon(args: argparse.Namespace) -> int:
    """Run the supervisor in the foreground (systemd's ExecStart)."""
    from exoctl.service.daemon import run_daemon

    return run_daemon(config_path(args))


def _joints(args: argparse.Namespace) -> tuple[str, ...]:
    """The configured joints, so that a joint the exoskeleton does not have is a usage error
    before anything is sent."""
    from exoctl.config.schema import load_config

    return tuple(load_config(config_path(args)).joint_names)


def _session_human(r: dict[str, Any]) -> str:
    return format_kv(r)


@guarded
def cmd_session_start(args: argparse.Namespace) -> int:
    try:
        assist = parse_assist(args.assist, _joints(args))
    except argparse.ArgumentTypeError as e:
        return fail(args, str(e), EXIT_USAGE)
    params: dict[str, Any] = {"patient": args.patient, "protocol": args.protocol}
    if assist is not None:
        params["assist"] = assist
    r = rpc_call(args, "session.start", params)
    return emit(args, r, lambda r: "session started\n" + _session_human(r))


@guarded
def cmd_session_stop(args: argparse.Namespace) -> int:
    r = rpc_call(args, "session.stop", {"reason": args.reason})
    return emit(args, r, _stopped_human)


def _stopped_human(r: dict[str, Any]) -> str:
    problem = r.get("recording_problem")
    head = "session stopped\n"
    if problem:
        head = (
            "session stopped; its recording could not be finished "
            f"({problem}): the data written before that is kept.\n"
        )
    return head + _session_human({k: v for k, v in r.items() if k != "recording_problem"})


@guarded
def cmd_fault_clear(args: argparse.Namespace) -> int:
    r = rpc_call(args, "fault.clear")
    return emit(args, r, lambda r: clear_message(r or {}))


@guarded
def cmd_assist_set(args: argparse.Namespace) -> int:
    try:
        gains = parse_assist(args.values, _joints(args))
    except argparse.ArgumentTypeError as e:
        return fail(args, str(e), EXIT_USAGE)
    r = rpc_call(args, "assist.set", {"gains": gains})
    return emit(args, r, lambda r: assist_message(r or {}))


@guarded
def cmd_model_load(args: argparse.Namespace) -> int:
    if not args.model and not args.calibration:
        return fail(args, "give --model and/or --calibration", EXIT_USAGE)
    params = {
        "model": str(Path(args.model).resolve()) if args.model else None,
        "calibration": str(Path(args.calibration).resolve()) if args.calibration else None,
    }
    r = rpc_call(args, "model.load", params)
    return emit(args, r, lambda r: "loaded\n" + format_kv(r or {}))
