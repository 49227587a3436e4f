"""The full ``exoctl`` parser (argparse): the top level, and every command family added by the
module that owns it (``register(subparsers)`` in each of ``COMMAND_MODULES``).

Kept apart from exoctl/cli.py, the console script's entry, so that ``exoctl estop`` and
``exoctl status`` do not import argparse (exoctl.service.commands.quick); every other command
line is parsed here.
"""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path
from typing import NoReturn

from exoctl import __version__
from exoctl import cli_policy as policy

COMMAND_MODULES = (
    "exoctl.hil.commands",
    "exoctl.config.commands",
    "exoctl.data.commands",
    "exoctl.hil.bench",
    "exoctl.service.commands",
    "exoctl.training.commands",
)
"""The modules that add their own subcommands, in the order ``exoctl --help`` lists them. Each is part of exoctl: one that fails to
import is an error of the installation, reported (exit 70), never a command quietly missing."""


class Parser(argparse.ArgumentParser):
    """argparse ending usage errors the policy's way: one line on stderr, exit 2, and with
    ``--json`` a JSON document on stdout too (sub-parsers inherit the class)."""

    json_requested = False

    def error(self, message: str) -> NoReturn:
        if Parser.json_requested:
            policy.emit_json(
                {"ok": False, "error": f"{self.prog}: {message}", "exit_code": policy.EXIT_USAGE}
            )
        self.exit(policy.EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="exoctl", description="EMG-driven assist controller for hip/knee exoskeletons")
    p.add_argument("--version", action="version", version=f"exoctl {__version__}")
    p.add_argument(
        "--config",
        type=Path,
        default=None,
        help="configuration file (default: $EXOCTL_CONFIG, else /etc/exoctl/exoctl.yaml if it "
        "exists, else the packaged default; see `exoctl config show`)",
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p
