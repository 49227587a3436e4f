"""What every service command shares: finding the configuration, calling the daemon, mapping
failures to the documented exit codes (``guarded``), printing (``emit``), and the assist-gain
argument."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from exoctl import cli_policy
from exoctl.cli_policy import (  # the codes every exoctl command shares
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_REFUSED,
)


def config_path(args: argparse.Namespace) -> Path:
    """The one lookup rule (exoctl.config.lookup): --config, $EXOCTL_CONFIG, /etc/exoctl, package.
    A clinician then types ``exoctl status``, not the path each time."""
    from exoctl.config.lookup import config_path as lookup

    return lookup(args)


def service_config(args: argparse.Namespace) -> Any:
    from exoctl.config.schema import load_config

    return load_config(config_path(args)).service


def rpc_call(args: argparse.Namespace, method: str, params: Any = None) -> Any:
    from exoctl.service.client import Client

    svc = service_config(args)
    with Client(svc.socket_path, timeout_s=getattr(args, "timeout", 30.0)) as c:
        return c.call(method, params)


def guarded(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map every expected failure to a message on stderr and a documented exit code."""

    def run(args: argparse.Namespace) -> int:
        from exoctl.config.schema import ConfigError
        from exoctl.service import client as C

        try:
            return fn(args)
        except C.DaemonNotRunning as e:
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
        except ConfigError as e:
            return fail(args, str(e), EXIT_ERROR)
        except Exception as e:
            # A RecorderError can only come from a command that imported the recordings'
            # store (where it is defined); not importing it (and numpy) here keeps
            # `exoctl status` quick.
            store = sys.modules.get("exoctl.service.store")
            if store is not None and isinstance(e, store.RecorderError):
                return fail(args, str(e), EXIT_ERROR)
            raise
        except KeyboardInterrupt:
            return 130

    run.__doc__ = fn.__doc__
    return run


def fail(args: argparse.Namespace, msg: str, code: int, data: Any = None) -> int:
    return cli_policy.fail(msg, code, json_mode=getattr(args, "json", False), data=data)


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> int:
    if getattr(args, "json", False):
        cli_policy.emit_json(data)
    else:
        text = human(data)
        if text:
            print(text)
    return EXIT_OK


def parse_assist(
    values: list[str] | None, joints: tuple[str, ...] | None = None
) -> float | dict[str, float] | None:
    """``0.3`` (every joint) or ``hip_l=0.3,knee_l=0.2`` / ``hip_l=0.3 knee_l=0.2``.

    A change names exactly the joints it sets, once each: an empty value, a joint given twice
    or (with ``joints``, the configuration's) a joint the exoskeleton does not have is a usage
    error, never "the other joints to their default" or "the last one wins"."""
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
    from exoctl.control.assist_level import AssistLevelError, check_level

    try:
        return check_level(s)
    except AssistLevelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
