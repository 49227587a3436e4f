"""A device's end of a pseudo-terminal: plug, unplug and write-out, as a USB-serial adapter.

Shared by every device model behind a pty (the emulated firmware and the QEMU board's relay),
so that a cable pull and a replug look the same to the host.
"""

from __future__ import annotations

import contextlib
import os
import tty


def plug_pty(link_path: str) -> tuple[int, int]:
    """A fresh raw pseudo-terminal pair, ``link_path`` re-pointed at its device atomically (as
    udev re-points a symlink when an adapter is plugged in). Returns (master, slave); the
    master is non-blocking. Shared by every device model behind a pty (this emulator and the
    QEMU board's relay), so that a cable pull and a replug look the same to the host."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    os.set_blocking(master, False)
    tmp = link_path + ".new"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    os.symlink(os.ttyname(slave), tmp)
    os.replace(tmp, link_path)  # atomic re-point, like a udev symlink
    return master, slave


def unplug_pty(*fds: int) -> None:
    """Close a pty pair (a pulled cable); descriptors already closed (-1) are skipped."""
    for fd in fds:
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def flush_pty(master: int, txbuf: bytearray) -> None:
    """Write as much of ``txbuf`` as the pty takes now and drop it from the buffer. A pty
    nobody holds open (EIO) loses it, and a host that stops reading loses what is past 64 KiB,
    as a UART would overrun."""
    if not txbuf or master < 0:
        return
    try:
        n = os.write(master, txbuf)
        del txbuf[:n]
    except BlockingIOError:
        pass
    except OSError:
        txbuf.clear()
    if len(txbuf) > 65536:
        txbuf.clear()
