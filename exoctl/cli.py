"""The `exoctl` command line.

Subcommands are registered by the modules that own them (``register(subparsers)``), so each
concept's command sits beside its code. Exit codes: 0 success, 1 failure, 2 usage or
configuration error; service commands document further codes in docs/deploy.md.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from exoctl import __version__
from exoctl.config.schema import ConfigError

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
    from exoctl.hil.runner import format_summary, run_hil, run_scenario

    if args.scenario:
        summary = run_scenario(args.scenario, config_path(args))
    else:
        summary = run_hil(args.duration, config_path(args))
    if args.json:
        json.dump(summary, sys.stdout, default=str)
        print()
    else:
        print(format_summary(summary))
    return 0


def _cmd_sim(args: argparse.Namespace) -> int:
    from exoctl.config.lookup import config_path
    from exoctl.hil.simulator import run_standalone

    return run_standalone(
        config_path(args), args.duration, args.info_file, args.port, args.source_id
    )


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="exoctl", description="EMG-driven assist controller for hip/knee exoskeletons"
    )
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
    hil.add_argument("--duration", type=float, default=10.0, help="seconds of assisted walking")
    hil.add_argument("--json", action="store_true", help="print one JSON object")
    hil.add_argument(
        "--scenario",
        default=None,
        help="fault scenario: a name (exoctl/configs/scenarios/) or a path",
    )
    hil.set_defaults(func=_cmd_hil)

    sim = sub.add_parser("sim", help="run only the HIL simulator (EMG on LSL, firmware on a pty)")
    sim.add_argument("--duration", type=float, default=None, help="seconds (default: until killed)")
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


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except ConfigError as e:
        print(f"exoctl: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
