"""Stopping the child processes a bench starts (simulator, daemon): politely, then for sure.

One place for it because ``exoctl bench up``, the benches in ``bench/`` and the daemon (its
control socket's process, ``exoctl.service.rpc.relay``) all stop theirs the same way: SIGTERM so that the daemon ramps out and closes its recording, then SIGKILL
for one that does not exit in time."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterable


def stop_children(
    procs: Iterable[subprocess.Popen | None], term_wait_s: float = 20.0, kill_wait_s: float = 5.0
) -> list[int | None]:
    """Stop each process in order (None entries are skipped) and return their exit codes
    (None for a skipped entry). A process still running gets SIGTERM and ``term_wait_s`` to
    exit, then SIGKILL and ``kill_wait_s``."""
    codes: list[int | None] = []
    for proc in procs:
        if proc is None:
            codes.append(None)
            continue
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(term_wait_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(kill_wait_s)
        codes.append(proc.returncode)
    return codes
