"""The `exoctl` command line.

Subcommands are registered by the modules that own them (``register(subparsers)``, listed in
exoctl/cli_parser.py), so each concept's command sits beside its code. Every command follows
one policy (exoctl/cli_policy.py): results on stdout (strict JSON with ``--json``),
diagnostics on stderr as one line per problem, never a traceback, and exit codes shared by
every command family: 0 ok, 1 error (a bad configuration or input file, a failed run), 2
usage, 3 daemon not running, 4 permission denied, 5 refused by the daemon, 70 internal error,
130 interrupted, 141 output closed.

This module is the console script's entry (``[project.scripts]``), so it imports nothing
before it knows the command: ``exoctl estop`` and ``exoctl status`` are read by the quick
parser (exoctl.service.commands.quick: no argparse, no pydantic, no numpy), every other command
line by the full argparse parser (exoctl.cli_parser).
"""

from __future__ import annotations

import sys

from exoctl import cli_policy as policy

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import argparse
    from typing import Any


def build_parser() -> argparse.ArgumentParser:
    """The full parser (exoctl.cli_parser.build_parser)."""
    from exoctl.cli_parser import build_parser as build

    return build()


def main(argv: list[str] | None = None) -> int:
    """Run one command; a closed stdout (``| head``) ends it quietly with exit 141."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # here, where a closed pipe can still be caught
        return code
    except BrokenPipeError:
        return policy.closed_output()


def _main(argv: list[str] | None) -> int:
    from exoctl.service.commands.quick import parse as parse_quick

    words = sys.argv[1:] if argv is None else list(argv)
    json_mode = "--json" in words
    args: Any = parse_quick(words)
    if args is None:
        try:
            from exoctl.cli_parser import Parser

            parser = build_parser()
        except Exception as e:  # a command module that cannot be imported: a broken install
            return _internal(e, json_mode)
        Parser.json_requested = json_mode
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
    except policy.UsageError as e:
        return policy.fail(f"exoctl {args.command}: {e}", policy.EXIT_USAGE, json_mode=json_mode)
    except Exception as e:
        from exoctl.config.yamlfile import ConfigError
        from exoctl.errors import EXPECTED_ERRORS

        if isinstance(e, ConfigError):  # one line per problem in the file, each located
            return policy.fail(str(e), policy.EXIT_ERROR, json_mode=json_mode)
        if isinstance(e, EXPECTED_ERRORS):  # any refusal exoctl raises on purpose: exit 1
            return policy.fail(policy.one_line(str(e)), policy.EXIT_ERROR, json_mode=json_mode)
        return _internal(e, json_mode)


def _internal(e: Exception, json_mode: bool) -> int:
    """A bug (or a broken install): one line saying where, exit 70; the traceback with
    ``EXOCTL_DEBUG=1``."""
    if policy.debug_enabled():
        import traceback

        traceback.print_exc()
    return policy.fail(policy.internal_error(e), policy.EXIT_INTERNAL, json_mode=json_mode)


if __name__ == "__main__":
    raise SystemExit(main())
