"""Real therapy sessions recorded by the real system, for the report and the export benchmark.

The HIL simulator (``exoctl sim``: the synthetic patient's EMG on an LSL outlet, the emulated
firmware on a pty) and ``exoctl daemon`` run as separate processes, configured the way
``tests/service/test_daemon.py`` does it; the sessions are driven through the daemon's control
socket (the requests ``exoctl session|assist|estop|fault`` send; the client library rather than a
new ``exoctl`` process per request, which takes seconds on a loaded machine and would stretch
the protocol's timing). Each session follows a short protocol: start at an assist level,
raise it, an e-stop and its clear, per-joint levels, stop. The recordings are synthetic-patient
data (labelled so by the patient id ``SIM-...``), written by the daemon's recorder.

    .venv/bin/python -m bench.session_recording --out /tmp/exo-rec --minutes 2 --history 2

prints the data directory and the session ids as JSON; the last session is ``--minutes`` long,
the ``--history`` sessions before it (same patient, lower assist) are shorter, so that the
report's patient view has a trend to show.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import REPO, daemon_config
from exoctl.config.yamlfile import read_yaml

PATIENT = "SIM-P01"


class Bench:
    """Simulator and daemon processes, and requests to the daemon (``rpc``)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        tmp.mkdir(parents=True, exist_ok=True)
        info = tmp / "sim.json"
        info.unlink(missing_ok=True)
        self.sim_log = (tmp / "sim.log").open("w")
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "exoctl.cli", "sim", "--info-file", str(info)],
            stdout=subprocess.DEVNULL, stderr=self.sim_log, cwd=REPO,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while not info.exists():
            if self.sim.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start; see {tmp / 'sim.log'}")
            time.sleep(0.1)
        time.sleep(0.2)  # the info file is written in one go, but let it land
        # real-time priority as configured (off by default): a recording as a default install makes
        self.cfg = daemon_config(tmp, json.loads(info.read_text()))
        self.daemon_log = (tmp / "daemon.log").open("w")
        self.daemon = subprocess.Popen(
            [sys.executable, "-m", "exoctl.cli", "--config", str(self.cfg), "daemon"],
            stdout=self.daemon_log, stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        self.socket = read_yaml(self.cfg, "configuration").data["service"]["socket_path"]
        deadline = time.monotonic() + 90
        while True:
            ok, _ = self.rpc("status")
            if ok:
                break
            if self.daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"daemon did not come up; see {tmp / 'daemon.log'}")
            time.sleep(0.5)

    def rpc(self, method: str, params: dict[str, Any] | None = None) -> tuple[bool, Any]:
        """One request to the daemon: (True, result) or (False, the refusal or error)."""
        from exoctl.service import client as C

        try:
            return True, C.call(self.socket, method, params, timeout_s=30.0)
        except C.ClientError as e:
            return False, str(e)

    def clear_faults(self, timeout_s: float = 30.0) -> None:
        """As a clinician does after a latched fault: clear it once the inputs are healthy."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            ok, st = self.rpc("status")
            if ok and st["safety_state"] not in ("FAULT_LATCHED", "ESTOP", "SAFE_STOP"):
                return
            self.rpc("fault.clear")
            time.sleep(0.5)
        raise RuntimeError("a latched fault could not be cleared")

    def session(self, seconds: float, gains: tuple[float, float], estop: bool) -> str:
        """One session: start at gains[0], raise to gains[1], optionally an e-stop and its
        clear, per-joint levels for the last quarter, stop after ``seconds``."""
        deadline = time.monotonic() + 60
        while True:  # a fault latched on a loaded machine is cleared, as a person would
            self.clear_faults()
            ok, r = self.rpc(
                "session.start",
                {"patient": PATIENT, "assist": gains[0],
                 "protocol": "treadmill 3 km/h (synthetic patient)"},
            )  # fmt: skip
            if ok:
                break
            if "FAULT_LATCHED" not in str(r) or time.monotonic() > deadline:
                raise RuntimeError(f"session start failed: {r}")
        sid = r["session_id"]
        t0 = time.monotonic()

        def until(frac: float) -> None:
            """Wait, clearing a latched fault as the clinician would (after 3 s to check)."""
            end = t0 + frac * seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(left, 0.5))
                ok, st = self.rpc("status")
                if ok and st["safety_state"] == "FAULT_LATCHED" and left > 4:
                    time.sleep(3.0)
                    self.rpc("fault.clear")

        until(0.25)
        self.rpc("assist.set", {"gains": gains[1]})
        if estop:
            until(0.5)
            self.rpc("estop")
            time.sleep(5.0)  # the clinician checks the patient before clearing
            self.clear_faults()
        until(0.75)
        hi, lo = gains[1], round(gains[1] * 0.6, 2)
        self.rpc("assist.set", {"gains": {"hip_l": hi, "hip_r": hi, "knee_l": lo, "knee_r": lo}})
        until(1.0)
        ok, r = self.rpc("session.stop", {"reason": "completed"})
        if not ok:
            raise RuntimeError(f"session stop failed: {r}")
        return sid

    def close(self) -> None:
        for p in (self.daemon, self.sim):
            if p.poll() is None:
                p.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(30)
            if p.poll() is None:
                p.kill()
                p.wait(10)
        self.sim_log.close()
        self.daemon_log.close()


def record(out: Path, minutes: float = 2.0, history: int = 2) -> dict[str, Any]:
    """Record ``history`` short sessions and one of ``minutes``; the ids and the data dir."""
    bench = Bench(out)
    try:
        ids = []
        for i in range(history):
            g = 0.2 + 0.05 * i
            ids.append(bench.session(40.0, (g, g + 0.05), estop=False))
        ids.append(bench.session(60.0 * minutes, (0.3, 0.5), estop=True))
    finally:
        bench.close()
    return {"data_dir": str(out / "data"), "config": str(out / "exoctl.yaml"),
            "patient": PATIENT, "sessions": ids}  # fmt: skip


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True, help="working directory (created)")
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the last session")
    ap.add_argument("--history", type=int, default=2, help="earlier 40 s sessions")
    a = ap.parse_args()
    print(json.dumps(record(a.out, a.minutes, a.history), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
