"""Input files must be regular files: a FIFO, a device or a directory is refused at once.

``open()`` on a FIFO with no writer blocks for ever (``exoctl ... --config FIFO`` hung), a
character device such as ``/dev/zero`` never ends, and a directory fails later with a less
helpful message. Every file exoctl reads as input (configuration, calibration, dataset
description and the recordings it names, scenario, model) is checked here first: opened
without blocking, then refused unless ``fstat`` says it is a regular file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import BinaryIO

from exoctl.errors import DataError

_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def _not_regular(path: Path, mode: int, what: str) -> str:
    kind = next((name for test, name in _KINDS if test(mode)), "not a regular file")
    return f"{path}: is {kind}, not a regular file: cannot read it as {what}"


def open_regular(path: str | Path, what: str, error: type[Exception] = DataError) -> BinaryIO:
    """``path`` opened for reading in binary mode, or ``error`` naming it and what it is.

    Opened with O_NONBLOCK so that a FIFO cannot block the open itself; blocking mode is set
    again once the file is known to be regular.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise error(_not_regular(path, mode, what))
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def check_regular(path: str | Path, what: str, error: type[Exception] = DataError) -> Path:
    """Refuse (raise ``error``) unless ``path`` is a regular file; for files a library opens
    itself (onnxruntime, pyxdf, scipy). ``stat`` does not open: it cannot block."""
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if not stat.S_ISREG(mode):
        raise error(_not_regular(path, mode, what))
    return path
