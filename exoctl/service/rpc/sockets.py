"""The daemon's Unix sockets on disk: where the e-stop socket lives, whether a path is in use,
binding one with its mode and group, and a last line that never blocks."""

from __future__ import annotations

import contextlib
import grp
import os
import socket
from pathlib import Path

# structlog is imported where the daemon logs (bind_socket), not here: clients such as
# `exoctl estop` use estop_socket_path and must not pay for the logging stack.


ESTOP_METHOD = "estop"
"""The e-stop's method on the control socket (the fallback when the e-stop socket is absent)."""


def estop_socket_path(socket_path: str | Path) -> Path:
    """The e-stop socket beside the control socket: ``control.sock`` -> ``control.estop.sock``.

    Derived, not configured, so that the daemon and every client agree without a setting."""
    p = Path(socket_path)
    return p.with_name(f"{p.stem}.estop{p.suffix}")


def socket_in_use(path: str | Path) -> bool:
    """True if something accepts connections on ``path`` (another daemon is running).

    Never call it on an e-stop socket: connecting to one presses the e-stop."""
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(1.0)
    try:
        probe.connect(str(path))
    except OSError:
        return False
    finally:
        probe.close()
    return True


IDLE, READING, WORKING = "idle", "reading", "working"


def send_nowait(sock: socket.socket, data: bytes) -> None:
    """A last line to a peer that may not be reading: never blocks, may be lost."""
    with contextlib.suppress(OSError):
        sock.send(data + b"\n", socket.MSG_DONTWAIT)


def bind_socket(path: Path, mode: int, group: str | None, probe: bool) -> socket.socket:
    """A listening socket at ``path`` with ``mode`` and ``group``, replacing a stale one.

    ``probe``: first check that no daemon answers on ``path`` (never for an e-stop socket:
    connecting to one presses it). Refuses a path that exists and is not a socket."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        if probe and socket_in_use(path):
            raise RuntimeError(f"another daemon is already listening on {path}")
        if not path.is_socket():
            raise RuntimeError(f"{path} exists and is not a socket; remove it or move it")
        # Stale, left by a killed daemon. (The e-stop socket is never probed: connecting
        # presses it. It is ours because the control socket beside it was free.)
        path.unlink()
    # Bind under a temporary name, set mode and group, then rename into place: there is
    # never a moment when the final path exists with looser permissions.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.bind(str(tmp))
        os.chmod(tmp, mode)
        if group:
            try:
                gid = grp.getgrnam(group).gr_gid
            except KeyError:
                import structlog

                structlog.get_logger("exoctl.rpc").warning(
                    "socket_group_missing", group=group, path=str(path)
                )
            else:
                os.chown(tmp, -1, gid)
        os.rename(tmp, path)
        s.listen(socket.SOMAXCONN)  # bursts of CLI calls queue here, not in refusals
    except BaseException:
        s.close()
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    s.settimeout(0.2)  # so the accept loops notice close()
    return s
