"""Names each Python thread in the kernel after its Python name (``prctl(PR_SET_NAME)``, first
15 bytes), so that ``/proc/PID/task/TID/comm`` tells the threads of a measured process apart.

Only the benchmarks put this directory on ``PYTHONPATH`` (``bench_realtime.daemon_once``, for
its per-thread CPU figures); Python 3.11 leaves every thread named after the process. The
cost is one system call per thread start."""

import contextlib
import ctypes
import threading

_PR_SET_NAME = 15

try:
    _libc = ctypes.CDLL(None, use_errno=True)
    _original = threading.Thread._bootstrap_inner  # type: ignore[attr-defined]

    def _named(self: threading.Thread) -> None:
        with contextlib.suppress(Exception):
            _libc.prctl(_PR_SET_NAME, self.name.encode(errors="replace")[:15], 0, 0, 0)
        _original(self)

    threading.Thread._bootstrap_inner = _named  # type: ignore[attr-defined]
except (OSError, AttributeError):  # not Linux, or another threading: names stay as they are
    pass
