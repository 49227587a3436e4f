"""The `exoctl` command line.

Subcommands are registered by the modules that own them (``register(subparsers)``), so each
concept's command sits beside its code. Every command follows one policy (exoctl/cli_policy.py):
results on stdout (strict JSON with ``--json``), diagnostics on stderr as one line per problem,
never a traceback, and exit codes shared by every command family: 0 ok, 1 error (a bad
configuration or input file, a failed run), 2 usage, 3 daemon not running, 4 permission
denied, 5 refused by the daemon, 70 internal error, 130 interrupted.
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
from exoctl.config.schema import ConfigError
from exoctl.errors import DataError

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
    from exoctl.hil.runner import format_summary, run_hil, run_scenario

    if args.scenario:
        summary = run_scenario(args.scenario, config_path(args))
    else:
        summary = run_hil(args.duration, config_path(args))
    if args.json:
        policy.emit_json(summary)
    else:
        print(format_summary(summary))
    return policy.EXIT_OK


def _cmd_sim(args: argparse.Namespace) -> int:
    from exoctl.config.lookup import config_path
    from exoctl.hil.simulator import run_standalone

    return run_standalone(
        config_path(args), args.duration, args.info_file, args.port, args.source_id
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


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="exoctl", description="EMG-driven assist controller for hip/knee exoskeletons")
    p.add_argument("--version", action="version", version=f"exoctl {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default: $EXOCTL_CONFIG, else /etc/exoctl/exoctl.yaml if it "
        "exists, else the packaged default; see `exoctl config show`)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    hil = sub.add_parser("hil", help="run the HIL simulator and the controller together")
    hil.add_argument("--duration", type=_seconds, default=10.0, help="seconds of assisted walking")
    hil.add_argument("--json", action="store_true", help="print one JSON object")
    hil.add_argument(
        "--scenario",
        default=None,
        help="fault scenario: a name (exoctl/configs/scenarios/) or a path",
    )
    hil.set_defaults(func=_cmd_hil)

    sim = sub.add_parser("sim", help="run only the HIL simulator (EMG on LSL, firmware on a pty)")
    sim.add_argument(
        "--duration", type=_seconds, default=None, help="seconds (default: until killed)"
    )
    sim.add_argument("--info-file", type=Path, default=None, help="write the endpoints here")
    sim.add_argument("--port", type=Path, default=None, help="link this path to the pty")
    sim.add_argument("--source-id", default=None, help="LSL source id of the EMG stream")
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
    from exoctl.hil.processes import ChildError

    errors: list[type[Exception]] = [ConfigError, ChildError]
    for module, name in (
        ("exoctl.data.dataset", "DatasetError"),
        ("exoctl.signal.calibration", "CalibrationError"),
        ("exoctl.estimation.torque_model", "ModelError"),
        ("exoctl.acquisition.sources", "AcquisitionError"),
        ("exoctl.runtime.controller", "ControllerError"),
        ("firmware_bridge.link", "LinkError"),
    ):
        cls = getattr(importlib.import_module(module), name, None)
        if isinstance(cls, type) and issubclass(cls, Exception):
            errors.append(cls)
    return tuple(errors)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    _Parser.json_requested = "--json" in (sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)  # usage errors: one line on stderr, exit 2
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return policy.EXIT_USAGE
    json_mode = bool(getattr(args, "json", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return policy.EXIT_INTERRUPTED
    except Exception as e:
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
