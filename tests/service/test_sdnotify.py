"""sd_notify against a real datagram socket, as systemd would listen."""

from __future__ import annotations

import os
import socket
from pathlib import Path

from exoctl.service.sdnotify import Notifier


def test_messages_reach_a_datagram_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        srv.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"})
        assert n.enabled and n.watchdog_s == 2.0
        assert n.ready("running")
        assert srv.recv(4096) == b"READY=1\nSTATUS=running"
        assert n.watchdog()
        assert srv.recv(4096) == b"WATCHDOG=1"
        assert n.stopping()
        assert srv.recv(4096) == b"STOPPING=1"
        n.close()


def test_abstract_socket_and_watchdog_pid(tmp_path: Path) -> None:
    name = f"exoctl-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind("\0" + name)
        srv.settimeout(2)
        n = Notifier({"NOTIFY_SOCKET": "@" + name, "WATCHDOG_USEC": "500", "WATCHDOG_PID": "1"})
        assert n.watchdog_s is None  # the watchdog is meant for another process
        assert n.status("x")
        assert srv.recv(4096) == b"STATUS=x"
        n.close()


def test_outside_systemd_is_a_no_op() -> None:
    n = Notifier({})
    assert not n.enabled and n.watchdog_s is None
    assert not n.ready() and not n.watchdog()


def test_never_blocks_when_nobody_reads(tmp_path: Path) -> None:
    """A receiver that does not read (a full queue) must not stall the sender."""
    import time

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as srv:
        srv.bind(str(path))
        n = Notifier({"NOTIFY_SOCKET": str(path)})
        t0 = time.monotonic()
        sent = [n.watchdog() for _ in range(5000)]
        assert time.monotonic() - t0 < 5.0
        assert not all(sent) and n.failed == sent.count(False) > 0
        n.close()
    n = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not n.ready() and n.failed == 1
