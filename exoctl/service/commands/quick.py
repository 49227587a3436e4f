"""``exoctl estop`` and ``exoctl status``: the commands that must start at once, and the parser
written by hand that lets them skip argparse.

Why: an e-stop typed at the clinic PC must not wait for imports. ``exoctl.cli.main`` offers
the command line to ``parse`` first; it understands only the plain forms of these two
commands::

    exoctl [--config PATH] estop [--json]
    exoctl [--config PATH] status [--json] [--watch [SECONDS]]

and returns None for anything else (``--help``, an abbreviated or repeated option, a value it
would refuse, another command): the full argparse parser then reads the command line, so help
and usage errors (exit 2) keep argparse's behaviour and messages. The full parser has the same
two commands (``register_quick`` in this package), so both paths run the same functions with
the same arguments.

Imports on this path: ``sys``, ``os``, ``socket`` and ``json`` (the client), the YAML reader
for the one key ``service.socket_path`` (exoctl.config.paths); no argparse, no pydantic, no
numpy. The rest of the configuration is validated when no daemon answers (``guarded``).
"""

from __future__ import annotations

from exoctl.cli_policy import EXIT_ERROR
from exoctl.service.commands.common import (
    config_path,
    emit,
    fail,
    guarded,
    socket_path,
    watch_value,
)

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

QUICK_COMMANDS = ("estop", "status")
"""The commands ``parse`` reads; every other command goes to the full parser."""


class QuickArgs:
    """The parsed command line, with the attributes argparse would give these commands
    (``command``, ``config``, ``json``, ``watch``, ``func``)."""

    def __init__(self, command: str, config: str | None, json: bool, watch: float | None):
        self.command = command
        self.config = config
        self.json = json
        self.watch = watch
        self.func: Callable[[Any], int] = cmd_estop if command == "estop" else cmd_status


def parse(words: list[str]) -> QuickArgs | None:
    """``words`` (the command line after ``exoctl``) as ``estop`` or ``status`` in one of the
    plain forms above, or None: the full parser decides (see the module docstring)."""
    rest = list(words)
    config: str | None = None
    if rest[:1] == ["--config"] and len(rest) >= 2:
        config, rest = rest[1], rest[2:]
    elif rest and rest[0].startswith("--config="):
        config, rest = rest[0].partition("=")[2], rest[1:]
    if config is not None and (not config or config.startswith("-")):
        return None  # argparse's reading of these is its own (an empty path, an option)
    if not rest or rest[0] not in QUICK_COMMANDS:
        return None
    command, options = rest[0], rest[1:]
    json_mode = False
    watch: float | None = None
    i = 0
    while i < len(options):
        word = options[i]
        if word == "--json" and not json_mode:
            json_mode = True
        elif command == "status" and watch is None and word == "--watch":
            nxt = options[i + 1] if i + 1 < len(options) else None
            if nxt is None or nxt == "--json":
                watch = 1.0  # argparse's const: the option alone
            elif nxt.startswith("-"):
                return None  # "--watch -1": argparse reads it as the value and refuses it
            else:
                watch = _watch(nxt)
                if watch is None:
                    return None
                i += 1
        elif command == "status" and watch is None and word.startswith("--watch="):
            watch = _watch(word.partition("=")[2])
            if watch is None:
                return None
        else:
            return None
        i += 1
    return QuickArgs(command, config, json_mode, watch)


def _watch(text: str) -> float | None:
    value, problem = watch_value(text)
    return None if problem is not None else value


ESTOP_TEXT = (
    "EMERGENCY STOP: torque is zero now and assistance stays OFF (latched).\n"
    "Check the patient; `exoctl fault clear` then resumes assistance, ramped in."
)


@guarded
def cmd_estop(args: argparse.Namespace) -> int:
    """Press the e-stop of the configuration's daemon.

    The configuration is read for ``service.socket_path`` alone. When that cannot be read (the
    file is missing, unreadable or not YAML), the e-stop is still pressed, at the default
    socket (``_estop_at_default``): removing assistance is always the safe direction."""
    from exoctl.config.paths import socket_path_of
    from exoctl.service.client import estop

    path, problem = socket_path_of(config_path(args))
    timeout = getattr(args, "timeout", 5.0)
    if path is None:
        return _estop_at_default(args, problem or "the configuration could not be read", timeout)
    args.config_unvalidated = True  # validated in full if no daemon answers (guarded)
    # The e-stop socket: no other client can hold it up (see exoctl.service.client.estop).
    return emit(args, estop(path, timeout_s=timeout), lambda r: ESTOP_TEXT)


def _estop_at_default(args: argparse.Namespace, problem: str, timeout: float) -> int:
    """The configuration's socket path could not be read: press the e-stop at the default
    socket, and exit 1 all the same, saying so. A daemon configured with another socket was
    not reached: the message says that too, so nobody takes exit 1 for "nothing happened"
    nor the e-stop text for "every daemon stopped"."""
    from exoctl.config.paths import DEFAULT_SOCKET_PATH
    from exoctl.service import client as C

    try:
        r = C.estop(DEFAULT_SOCKET_PATH, timeout_s=timeout)
    except C.ClientError as e:
        return fail(
            args,
            f"{problem}\ne-stop NOT pressed: the configuration could not be read, and at the "
            f"default socket: {e}",
            EXIT_ERROR,
        )
    if not getattr(args, "json", False):
        print(ESTOP_TEXT, flush=True)
    return fail(
        args,
        f"{problem}\nthe e-stop was pressed at the default socket {DEFAULT_SOCKET_PATH}, as "
        "the configuration could not be read: a daemon on another socket was NOT reached",
        EXIT_ERROR,
        data=r,
    )


@guarded
def cmd_status(args: argparse.Namespace) -> int:
    import time

    from exoctl import cli_policy
    from exoctl.service.client import Client

    with Client(socket_path(args), timeout_s=getattr(args, "timeout", 30.0)) as c:
        if args.watch is None:
            return emit(args, c.call("status"), _status_text)
        while True:
            st = c.call("status")
            if args.json:
                cli_policy.emit_json(st)
            else:
                print("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S  exoctl status"), flush=False)
                print(cli_policy.shown_lines(_status_text(st)), flush=True)
            time.sleep(args.watch)


def _status_text(status: Any) -> str:
    from exoctl.service.commands.text import format_status  # not for --json

    return format_status(status)
