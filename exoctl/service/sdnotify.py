"""systemd's notify protocol in a few lines: datagrams to $NOTIFY_SOCKET.

Written out instead of pulling in a dependency because the protocol is one ``sendto`` of
``KEY=VALUE`` lines (sd_notify(3)); outside systemd ($NOTIFY_SOCKET unset) every call is a
no-op, so the daemon runs the same in a terminal.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Mapping


class Notifier:
    """Keeps one datagram socket open (watchdog pings are periodic)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET") or None
        if addr is not None and addr.startswith("@"):
            addr = "\0" + addr[1:]  # abstract namespace
        self.address = addr
        self.failed = 0
        """Messages that could not be sent (receiver's queue full or gone)."""
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()  # the socket is opened once, by whichever thread
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        self.watchdog_s: float | None = None
        if usec and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_s = int(usec) / 1e6

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *states: str) -> bool:
        """Send e.g. ``notify("READY=1", "STATUS=running")``; False when not under systemd."""
        if self.address is None:
            return False
        with self._sock_lock:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            sock = self._sock
        try:
            # Never block: a datagram to a receiver whose queue is full would otherwise wait,
            # and the caller is the thread that records the session and pings the watchdog.
            sock.sendto("\n".join(states).encode(), socket.MSG_DONTWAIT, self.address)
        except OSError:  # EAGAIN (queue full), ECONNREFUSED (nobody listens): not our problem
            self.failed += 1
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    @contextlib.contextmanager
    def keep_alive(self, while_: Callable[[], bool] | None = None) -> Iterator[None]:
        """Ping the watchdog every quarter of its interval from a thread of its own while the
        block runs (and, with ``while_``, only while it returns True); a no-op without one.

        For work that blocks whoever pings in normal operation: systemd keeps the watchdog
        armed while a unit stops, so a clean shutdown that ramps assistance out, disables the
        actuators and flushes the recording for longer than ``WatchdogSec`` would be killed
        half-way (and its recording's end left unwritten). A shutdown that hangs is still
        ended: by the unit's ``TimeoutStopSec``."""
        interval = None if self.watchdog_s is None or self.address is None else self.watchdog_s / 4
        if interval is None:
            yield
            return
        done = threading.Event()

        def feed() -> None:
            while True:
                if while_ is None or while_():
                    self.watchdog()
                if done.wait(interval):
                    return

        t = threading.Thread(target=feed, name="exoctl-watchdog-feed", daemon=True)
        t.start()
        try:
            yield
        finally:
            done.set()
            t.join(1.0)

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        with self._sock_lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
