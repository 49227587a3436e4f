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


def _bind_name(path: Path, pid: int) -> Path:
    """The temporary name ``bind_socket`` binds under before renaming into ``path``; the
    kernel keeps showing that name in /proc/net/unix."""
    return path.with_name(f".{path.name}.{pid}.tmp")


def estop_listening(socket_path: str | Path) -> bool:
    """True if a live process listens on the e-stop socket beside the control socket
    ``socket_path``, found without connecting to it (connecting presses the e-stop).

    Read from /proc/net/unix (Linux): a listening socket (flag ``__SO_ACCEPTCON``) bound by
    ``bind_socket`` of process PID shows its bind name ``.control.estop.sock.PID.tmp``; the
    e-stop socket file must exist and PID be alive. So a client that finds no control socket
    can tell "the daemon is alive, its control socket's process is restarting" from "the
    daemon is not running" (a killed daemon leaves a stale file, but no listener)."""
    epath = estop_socket_path(socket_path).absolute()
    if not epath.is_socket():
        return False
    prefix, suffix = f".{epath.name}.", ".tmp"
    try:
        with open("/proc/net/unix") as f:
            lines = f.readlines()[1:]
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 8 or int(fields[3], 16) & 0x10000 == 0:  # not listening
            continue
        bound = Path(fields[7])
        if bound.parent != epath.parent or not bound.name.startswith(prefix):
            continue
        pid = bound.name[len(prefix) :].removesuffix(suffix)
        if pid.isdigit() and bound == _bind_name(epath, int(pid)) and _alive(int(pid)):
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, another user's
    return True


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
    tmp = _bind_name(path, os.getpid())  # estop_listening finds a live daemon by this name
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
