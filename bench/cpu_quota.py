"""Half a core for the daemon: a cgroup with a CPU quota of 5 ms every 10 ms (cgroup v2
``cpu.max``; on a cgroup v1 host the same CFS bandwidth limit), or, where none can be made, what
failed and how to run the same limit with systemd."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

QUOTA_US, QUOTA_PERIOD_US = 5000, 10000
QUOTA_HOWTO = (
    "Run the same limit with systemd instead (a scope is a cgroup v2 with cpu.max set): "
    "start the simulator in one terminal (`exoctl sim --info-file sim.json`), then the daemon "
    "under the quota in another: `systemd-run --scope -p CPUQuota=50% -p CPUQuotaPeriodSec=10ms "
    "exoctl --config exoctl.yaml daemon` (a configuration with the simulator's port and source "
    "id: `exoctl bench up --dir D` writes one, D/exoctl.yaml), start a session, and read "
    "`exoctl status --json` (loop.deadline_misses, faults) after 5 minutes; "
    "`systemctl status run-*.scope` shows the scope's CPU use."
)


class QuotaCgroup:
    """A cgroup limited to ``QUOTA_US`` per ``QUOTA_PERIOD_US``: v2 where this host's v2
    hierarchy has the cpu controller, else v1's CPU bandwidth limit (the same CFS mechanism),
    else unavailable with every step that failed (``problems``)."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.kind = ""
        self.problems: list[str] = []
        name = f"exoctl-bench-quota-{os.getpid()}"
        if not self._v2(name):
            self._v1(name)

    def _write(self, path: Path, text: str) -> bool:
        try:
            path.write_text(text)
            return True
        except OSError as e:
            self.problems.append(f"write {text!r} to {path}: {e.strerror or e}")
            return False

    def _v2(self, name: str) -> bool:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        roots = [Path(m.split()[1]) for m in mounts if m.split()[2] == "cgroup2"]
        if not roots:
            self.problems.append("v2: no cgroup2 file system mounted")
            return False
        root = roots[0]
        own = next((x[3:] for x in Path("/proc/self/cgroup").read_text().splitlines()
                    if x.startswith("0::")), "/")  # fmt: skip
        parent = root / own.lstrip("/")
        ctl = (parent / "cgroup.controllers").read_text().split()
        if "cpu" not in ctl:
            self.problems.append(
                f"v2: {parent}/cgroup.controllers has no cpu controller ({' '.join(ctl) or 'none'}"
                "; the cpu controller is bound to a v1 hierarchy on this host)"
            )
            return False
        if not self._write(parent / "cgroup.subtree_control", "+cpu"):
            return False
        path = parent / name
        try:
            path.mkdir()
        except OSError as e:
            self.problems.append(f"v2: mkdir {path}: {e.strerror or e}")
            return False
        if not self._write(path / "cpu.max", f"{QUOTA_US} {QUOTA_PERIOD_US}"):
            path.rmdir()
            return False
        self.path, self.kind = path, f"cgroup v2 {path}: cpu.max = {QUOTA_US} {QUOTA_PERIOD_US}"
        return True

    def _v1(self, name: str) -> bool:
        mounts = Path("/proc/self/mounts").read_text().splitlines()
        cpu = [Path(m.split()[1]) for m in mounts
               if m.split()[2] == "cgroup" and "cpu" in m.split()[3].split(",")]  # fmt: skip
        if not cpu:
            self.problems.append("v1: no cgroup v1 hierarchy with the cpu controller mounted")
            return False
        path = cpu[0] / name
        try:
            path.mkdir()
        except OSError as e:
            self.problems.append(f"v1: mkdir {path}: {e.strerror or e}")
            return False
        if not (self._write(path / "cpu.cfs_period_us", str(QUOTA_PERIOD_US))
                and self._write(path / "cpu.cfs_quota_us", str(QUOTA_US))):  # fmt: skip
            path.rmdir()
            return False
        self.path = path
        self.kind = (f"cgroup v1 {path}: cpu.cfs_quota_us = {QUOTA_US}, cpu.cfs_period_us = "
                     f"{QUOTA_PERIOD_US} (v2's cpu.max {QUOTA_US} {QUOTA_PERIOD_US})")  # fmt: skip
        return True

    def add(self, pid: int) -> None:
        """Move ``pid`` in; the children it makes afterwards are born in it."""
        assert self.path is not None
        (self.path / "cgroup.procs").write_text(str(pid))

    def throttling(self) -> dict[str, int]:
        """cpu.stat: periods, periods throttled, time throttled."""
        if self.path is None:
            return {}
        out = {}
        with contextlib.suppress(OSError):
            for line in (self.path / "cpu.stat").read_text().splitlines():
                k, v = line.split()[:2]
                out[k] = int(v)
        return out

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):  # until the last member has exited
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.1)
