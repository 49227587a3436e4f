"""The `exoctl` command line.

Subcommands are registered by the modules that own them (``register(subparsers)``), so each
concept's command sits beside its code. Every command follows one policy (exoctl/cli_policy.py):
results on stdout (strict JSON with ``--json``), diagnostics on stderr as one line per problem,
never a traceback, and exit codes shared by every command family: 0 ok, 1 error (a bad
configuration or input file, a failed run), 2 usage, 3 daemon not running, 4 permission
denied, 5 refused by the daemon, 70 internal error, 130 interrupted, 141 output closed.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import traceback
from pathlib import Path
from typing import NoReturn

from exoctl import __version__
from exoctl import cli_policy as policy
from exoctl.cli_policy import UsageError as _UsageError
from exoctl.hil.replay_options import add_replay_options as _add_replay_options
from exoctl.hil.replay_options import replay_spec as _replay_spec

# Modules that add their own subcommands.
_COMMAND_MODULES = (
    "exoctl.config.commands",
    "exoctl.data.commands",
    "exoctl.hil.bench",
    "exoctl.service.commands",
    "exoctl.training.commands",
)


def _cmd_hil(args: argparse.Namespace) -> int:
    from exoctl.config.lookup import config_path
    from exoctl.config.schema import load_config

    load_config(config_path(args))  # a bad file fails here, before the bench's heavy imports
    if args.firmware == "qemu":  # missing tools fail here, with the packages to install
        from firmware_bridge.qemu_firmware import require_tools

        require_tools()
    from exoctl.hil import MAX_DURATION_S
    from exoctl.hil.runner import format_summary, run_hil, run_scenario

    replay = _replay_spec(args)
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


def _cmd_sim(args: argparse.Namespace) -> int:
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
        replay=_replay_spec(args),
    )


def _seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (at most the runner's limit)."""
    from exoctl.hil import MAX_DURATION_S

    value = policy.seconds(text)
    if value > MAX_DURATION_S:
        raise argparse.ArgumentTypeError(f"{text} s: must be in (0, {MAX_DURATION_S:g}] s")
    return value


class _Parser(argparse.ArgumentParser):
    """argparse ending usage errors the policy's way: one line on stderr, exit 2, and with
    ``--json`` a JSON document on stdout too (sub-parsers inherit the class)."""

    json_requested = False

    def error(self, message: str) -> NoReturn:
        if _Parser.json_requested:
            policy.emit_json(
                {"ok": False, "error": f"{self.prog}: {message}", "exit_code": policy.EXIT_USAGE}
            )
        self.exit(policy.EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _firmware_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--firmware",
        choices=("python", "qemu"),
        default="python",
        help="the device on the pty: the Python emulator (default), or the reference firmware "
        "in C (firmware/) on an emulated Cortex-M3 board in qemu-system-arm",
    )


def _top_parser() -> tuple[argparse.ArgumentParser, argparse._SubParsersAction]:
    p = _Parser(prog="exoctl", description="EMG-driven assist controller for hip/knee exoskeletons")
    p.add_argument("--version", action="version", version=f"exoctl {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default: $EXOCTL_CONFIG, else /etc/exoctl/exoctl.yaml if it "
        "exists, else the packaged default; see `exoctl config show`)",
    )
    return p, p.add_subparsers(dest="command", metavar="COMMAND")


def _quick_parser(argv: list[str]) -> argparse.ArgumentParser | None:
    """The parser of ``exoctl [--config PATH] estop|status ...`` alone, or None for any other
    command line (help, other commands: the full parser).

    Why: building the full parser imports every command family (pydantic, numpy, ...), 0.7 s
    on a quiet machine and 2-3 s on a loaded one, and an e-stop must not wait for that. The
    quick parser registers the same ``status`` and ``estop`` parsers
    (exoctl.service.commands.register_quick), so both paths accept the same arguments.
    """
    from exoctl.service.commands import QUICK_COMMANDS, register_quick

    rest = list(argv)
    if rest[:1] == ["--config"]:
        rest = rest[2:]
    elif rest and rest[0].startswith("--config="):
        rest = rest[1:]
    if not rest or rest[0] not in QUICK_COMMANDS or {"-h", "--help"} & set(rest):
        return None
    p, sub = _top_parser()
    register_quick(sub)
    return p


def build_parser() -> argparse.ArgumentParser:
    p, sub = _top_parser()

    hil = sub.add_parser("hil", help="run the HIL simulator and the controller together")
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
        help="fault scenario: a name (configs/scenarios/) or a path",
    )
    _firmware_option(hil)
    hil.add_argument(
        "--model", type=Path, default=None, help="the model the controller runs (M.onnx)"
    )
    _add_replay_options(hil)
    hil.set_defaults(func=_cmd_hil)

    sim = sub.add_parser("sim", help="run only the HIL simulator (EMG on LSL, firmware on a pty)")
    sim.add_argument(
        "--duration", type=_seconds, default=None, help="seconds (default: until killed)"
    )
    sim.add_argument("--info-file", type=Path, default=None, help="write the endpoints here")
    sim.add_argument("--port", type=Path, default=None, help="link this path to the pty")
    sim.add_argument("--source-id", default=None, help="LSL source id of the EMG stream")
    _firmware_option(sim)
    _add_replay_options(sim)
    sim.set_defaults(func=_cmd_sim)

    for name in _COMMAND_MODULES:
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if not (e.name and name.startswith(e.name)):
                raise  # a dependency of an existing module is missing: say so
            continue  # that part of exoctl is not built yet
        mod.register(sub)
    return p


def _input_errors() -> tuple[type[Exception], ...]:
    """The project's errors that mean "this input cannot be used": exit 1, their message.

    ConfigError covers every file the YAML reader or the schema refuses; the others are raised
    where a file or device is opened. (One common base will replace this list.)
    """
    from exoctl.config.yamlfile import ConfigError
    from exoctl.hil.processes import ChildError

    errors: list[type[Exception]] = [ConfigError, ChildError]
    for module, name in (
        ("exoctl.data.dataset", "DatasetError"),
        ("exoctl.signal.calibration", "CalibrationError"),
        ("exoctl.estimation.torque_model", "ModelError"),
        ("exoctl.acquisition.sources", "AcquisitionError"),
        ("exoctl.hil.replay", "ReplayError"),
        ("exoctl.runtime.controller", "ControllerError"),
        ("firmware_bridge.link", "LinkError"),
        ("firmware_bridge.qemu_firmware", "FirmwareToolError"),
    ):
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            errors.append(cls)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    """Run one command; a closed stdout (``| head``) ends it quietly with exit 141."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
        return code
    except BrokenPipeError:
        return policy.closed_output()


def _main(argv: list[str] | None) -> int:
    words = sys.argv[1:] if argv is None else argv
    parser = _quick_parser(words) or build_parser()
    _Parser.json_requested = "--json" in words
    args = parser.parse_args(words)  # usage errors: one line on stderr, exit 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return policy.EXIT_USAGE
    json_mode = bool(getattr(args, "json", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return policy.EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # the reader went away: main() ends quietly, this is not a bug
    except _UsageError as e:
        return policy.fail(f"exoctl {args.command}: {e}", policy.EXIT_USAGE, json_mode=json_mode)
    except Exception as e:
        from exoctl.config.yamlfile import ConfigError
        from exoctl.errors import DataError

        if isinstance(e, ConfigError):
            return policy.fail(str(e), policy.EXIT_ERROR, json_mode=json_mode)
        if isinstance(e, DataError):  # any refused input; imports nothing (no onnxruntime)
            return policy.fail(policy.one_line(str(e)), policy.EXIT_ERROR, json_mode=json_mode)
        if isinstance(e, _input_errors()):
            return policy.fail(policy.one_line(str(e)), policy.EXIT_ERROR, json_mode=json_mode)
        if policy.debug_enabled():
            traceback.print_exc()
        return policy.fail(policy.internal_error(e), policy.EXIT_INTERNAL, json_mode=json_mode)


if __name__ == "__main__":
    raise SystemExit(main())
