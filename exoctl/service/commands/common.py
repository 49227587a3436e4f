"""What every service command shares: finding the configuration, calling the daemon, mapping
failures to the documented exit codes (``guarded``), printing (``emit``), and the assist-gain
argument.

On the path of ``exoctl estop`` and ``exoctl status`` (exoctl.service.commands.quick), which
must start at once: argparse is imported where a value is refused, typing only for the type
checker."""

from __future__ import annotations

import math
import sys
from pathlib import Path

from exoctl import cli_policy
from exoctl.cli_policy import (  # the codes every exoctl command shares
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_REFUSED,
)
from exoctl.recordings import fields

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any


def config_path(args: argparse.Namespace) -> Path:
    """The one lookup rule (exoctl.config.lookup): --config, $EXOCTL_CONFIG, /etc/exoctl, package.
    A clinician then types ``exoctl status``, not the path each time."""
    from exoctl.config.lookup import config_path as lookup

    return lookup(args)


def service_config(args: argparse.Namespace) -> Any:
    from exoctl.config.schema import load_config

    return load_config(config_path(args)).service


def socket_path(args: argparse.Namespace) -> Path:
    """The control socket of the configuration the user chose, without validating the rest
    of the file (exoctl.config.paths: no pydantic), for ``estop`` and ``status``, which must
    start at once. A file whose socket path cannot be read is loaded fully: its error says why;
    so is one that names a socket where no daemon listens (``guarded``), so a bad file is
    still exit 1 with its file, line and key."""
    from exoctl.config.paths import read_socket_path

    path = read_socket_path(config_path(args))
    if path is None:
        return Path(service_config(args).socket_path)
    args.config_unvalidated = True
    return path


def rpc_call(args: argparse.Namespace, method: str, params: Any = None) -> Any:
    from exoctl.service.client import Client

    svc = service_config(args)
    with Client(svc.socket_path, timeout_s=getattr(args, "timeout", 30.0)) as c:
        return c.call(method, params)


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map every expected failure to a message on stderr and a documented exit code."""

    def run(args: argparse.Namespace) -> int:
        from exoctl.service import client as C

        try:
            return fn(args)
        except C.DaemonNotRunning as e:
            problem = _config_problem(args)
            if problem:  # the likelier cause: a configuration the daemon could not start with
                return fail(args, problem, EXIT_ERROR)
            return fail(args, str(e), EXIT_NOT_RUNNING)
        except C.PermissionDenied as e:
            return fail(args, str(e), EXIT_PERMISSION)
        except C.RemoteError as e:
            if e.refused:
                return fail(args, f"refused by the daemon: {e.message}", EXIT_REFUSED, e.data)
            return fail(args, f"daemon error {e.code}: {e.message}", EXIT_ERROR, e.data)
        except C.ClientError as e:
            return fail(args, str(e), EXIT_ERROR)
        except PermissionError as e:
            return fail(
                args,
                f"permission denied: {e.filename or e}: run as the service user "
                "(sudo -u exoctl exoctl ...) or as root",
                EXIT_PERMISSION,
            )
        except Exception as e:
            # A ConfigError or RecorderError can only come from a command that imported the
            # module defining it (the YAML reader, the recordings' store); not importing them
            # (YAML, pydantic, numpy) here keeps `exoctl estop` and `exoctl status` quick.
            for module, name in (
                ("exoctl.config.yamlfile", "ConfigError"),
                ("exoctl.recordings.store", "RecorderError"),
            ):
                cls = getattr(sys.modules.get(module), name, None)
                if cls is not None and isinstance(e, cls):
                    return fail(args, str(e), EXIT_ERROR)
            raise
        except KeyboardInterrupt:
            return 130

    run.__doc__ = fn.__doc__
    return run


def _config_problem(args: argparse.Namespace) -> str | None:
    """What is wrong with the configuration, for a command that read only its socket path
    (``socket_path``) and found no daemon: the full validation, after the fact. None when the
    file is valid, or when it was validated already."""
    if not getattr(args, "config_unvalidated", False):
        return None
    from exoctl.config.yamlfile import ConfigError

    try:
        service_config(args)
    except ConfigError as e:
        return str(e)
    return None


def fail(args: argparse.Namespace, msg: str, code: int, data: Any = None) -> int:
    return cli_policy.fail(msg, code, json_mode=getattr(args, "json", False), data=data)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> int:
    if getattr(args, "json", False):
        cli_policy.emit_json(data)
    else:
        text = human(data)
        if text:
            print(cli_policy.shown_lines(text))  # no escape from a field reaches the terminal
    return EXIT_OK


MIN_WATCH_S = 0.2
"""``status --watch`` refreshes at most five times a second: each refresh is a ``status`` build
in the daemon, and a period of 0 would be a tight loop against it."""


def watch_period(text: str) -> float:
    """An argparse type for ``--watch``: a finite number of seconds, at least ``MIN_WATCH_S``
    (``-1``, ``0``, ``nan``, ``inf``, ``1e308`` are usage errors, exit 2)."""
    value, problem = watch_value(text)
    if problem is not None:
        import argparse

        raise argparse.ArgumentTypeError(problem)
    return value


def watch_value(text: str) -> tuple[float, str | None]:
    """``--watch``'s value and None, or the reason it is refused (``watch_period``'s rule,
    for the quick parser, which must not import argparse)."""
    try:
        value = float(text)
    except ValueError:
        return math.nan, f"{text!r} is not a number of seconds"
    if not (math.isfinite(value) and MIN_WATCH_S <= value <= 86400.0):
        return value, f"{text} s: give a refresh period from {MIN_WATCH_S:g} to 86400 seconds"
    return value, None


def _field_type(check: Callable[[str], str | None]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        problem = check(text)
        if problem:
            import argparse

            raise argparse.ArgumentTypeError(problem)
        return text

    return parse


# argparse types for the text fields the daemon records (exoctl.recordings.fields): a bad one is
# a usage error (exit 2) before the daemon is called, as the daemon would refuse it (-32602).
patient_id = _field_type(fields.patient_problem)
protocol_name = _field_type(lambda t: fields.text_problem("protocol", t))
end_reason = _field_type(lambda t: fields.text_problem("reason", t))


def parse_assist(
    values: list[str] | None, joints: tuple[str, ...] | None = None
) -> float | dict[str, float] | None:
    """``0.3`` (every joint) or ``hip_l=0.3,knee_l=0.2`` / ``hip_l=0.3 knee_l=0.2``.

    A change names exactly the joints it sets, once each: an empty value, a joint given twice
    or (with ``joints``, the configuration's) a joint the exoskeleton does not have is a usage
    error, never "the other joints to their default" or "the last one wins"."""
    import argparse

    if values is None or values == []:
        return None
    parts = [p for v in values for p in v.replace(",", " ").split() if p]
    if not parts:
        raise argparse.ArgumentTypeError(
            "empty assist value: give one gain for all joints (0.3) or joint=gain pairs"
        )
    if len(parts) == 1 and "=" not in parts[0]:
        return _gain(parts[0])
    out: dict[str, float] = {}
    for p in parts:
        if "=" not in p:
            raise argparse.ArgumentTypeError(
                f"bad assist value {p!r}: use one gain for all joints (0.3) or joint=gain pairs"
            )
        k, v = (x.strip() for x in p.split("=", 1))
        if not k:
            raise argparse.ArgumentTypeError(f"bad assist value {p!r}: no joint name before '='")
        if k in out:
            raise argparse.ArgumentTypeError(
                f"joint {k!r} given twice in the assist value: give each joint once"
            )
        if joints is not None and k not in joints:
            raise argparse.ArgumentTypeError(
                f"unknown joint {k!r}: this exoskeleton's joints are {', '.join(joints)}"
            )
        out[k] = _gain(v)
    return out


def _gain(s: str) -> float:
    import argparse

    from exoctl.config.assist_level import AssistLevelError, check_level

    try:
        return check_level(s)
    except AssistLevelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
