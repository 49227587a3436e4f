"""``python -m exoctl.service.rpc.front SPEC``: the control socket's own process (the *front*),
started by the daemon (``exoctl.service.rpc.relay.Front``, which says why); SPEC is its JSON
description. Not a command for people: it says ``ready`` on stdout once it listens, or
``error: ...`` and exits 1; run without a SPEC (by hand), it says to run the daemon instead
and exits 2."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import sys
from typing import Any

from exoctl.service.rpc.limits import Limits
from exoctl.service.rpc.relay import FRONT_NICE, RelayDispatcher


def _die_with_parent() -> None:
    """SIGTERM to this process when the daemon that started it dies (Linux prctl)."""
    with contextlib.suppress(Exception):
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:  # the parent was already gone
        os.kill(os.getpid(), signal.SIGTERM)


def run_front(spec: dict[str, Any], out: Any) -> int:
    """The front process's body (``python -m exoctl.service.rpc.front SPEC``): listen on the
    control socket, forward calls, until SIGTERM. Writes ``ready`` or ``error: ...`` to
    ``out`` once."""
    from exoctl.service.rpc.server import RpcServer

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    _die_with_parent()
    with contextlib.suppress(OSError):
        os.nice(FRONT_NICE)
    socks = {ch: socket.socket(fileno=fd) for ch, fd in spec["fds"].items()}
    try:
        server = RpcServer(
            spec["path"],
            {},
            dispatcher=RelayDispatcher(socks, spec["read_methods"]),
            sockets="control",
            limits=Limits(**spec["limits"]),
            allowed_users=spec["allowed_users"],
            allowed_groups=spec["allowed_groups"],
            socket_group=spec["socket_group"],
            mode=spec["mode"],
        ).start()
    except Exception as e:
        out.write(f"error: {type(e).__name__}: {e}\n")
        out.flush()
        return 1
    out.write("ready\n")
    out.flush()
    with contextlib.suppress(OSError, ValueError):
        os.dup2(2, out.fileno())  # nothing more for the pipe, which the daemon closes now
    try:
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
    finally:
        server.close()
        for s in socks.values():
            with contextlib.suppress(OSError):
                s.close()
    return 0


BY_HAND = (
    "error: this is the control socket's process, which the daemon starts with its description "
    "(SPEC); to serve the control socket, run the daemon: `exoctl daemon` (or `systemctl start "
    "exoctl`), which starts this process itself"
)


def main(argv: list[str] | None = None) -> int:
    from exoctl.service.logs import configure_logging

    args = sys.argv[1:] if argv is None else argv
    try:
        spec = json.loads(args[0]) if len(args) == 1 else None
    except ValueError:
        spec = None
    if not isinstance(spec, dict) or not {"path", "fds", "limits"} <= spec.keys():
        print(BY_HAND, file=sys.stderr)
        return 2
    configure_logging(sys.stderr)  # stdout carries the one ready line
    return run_front(spec, sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
