"""``exoctl estop`` and ``exoctl status`` from the command line: how long the command takes end
to end, next to ``python -c pass`` timed in the same run, and the e-stop from the CLI to zero
torque in a running session.

Why: an e-stop typed at the clinic PC used to wait 0.5-3 s for the CLI to import pydantic and
the configuration schema before it touched the socket. The target: p95 of 20 runs of
``exoctl estop`` and of ``exoctl status`` <= 150 ms end to end on a quiet 2-core machine, and
the e-stop from the command's start to zero torque <= 200 ms.

CPU time (user + system) of each child is reported too: on a shared, loaded machine wall time
mostly measures the wait for a core, CPU time what the command itself costs.

Set-up (everything started here is stopped by its own pid): ``exoctl sim`` (synthetic EMG over
LSL on loopback, the emulated firmware on a pty) and ``exoctl daemon`` configured for it, its
files under a temporary directory. Each timed command is the installed ``exoctl`` script run
as a subprocess, wall time from spawn to exit; the interpreter's own start-up is
``python -c pass`` timed alternately with it (the same interpreter, the same moment).

E-stop to zero torque: a session assisted at 0.3, walking (synthetic patient) for 2 s; the
time before ``exoctl estop`` is spawned is taken on CLOCK_MONOTONIC, the controller's clock,
which the recording's time stamps use. From the recording: the first tick from which every
joint's ``torque_command`` (after the safety layer, as sent on the link) stays 0, and the first
telemetry from which the firmware's reported applied torque stays 0.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import daemon_config, machine
from exoctl.runtime.children import stop_children

RUNS = 20
TARGET_P95_MS = 150.0
TARGET_ESTOP_TO_ZERO_MS = 200.0


def _exoctl() -> list[str]:
    """The console script of this interpreter's environment (what a clinician types: the
    script's own start-up and entry point included), else the one on PATH. Never
    ``python -m exoctl.cli`` in its place: that would skip part of what is measured."""
    for script in (Path(sys.executable).with_name("exoctl"), shutil.which("exoctl")):
        if script and Path(script).is_file():
            return [str(script)]
    raise RuntimeError(
        "no `exoctl` console script beside this python nor on PATH: install exoctl "
        "(pip install -e .) so that the script a clinician runs is the one timed"
    )


def _code_from(script: str, env: dict[str, str]) -> str:
    """The ``exoctl`` package the script runs (its interpreter, this environment, started in
    the script's directory as the script's own ``sys.path[0]`` is): so the figures say which
    code they timed (PYTHONPATH may point at another checkout than the bench's)."""
    with open(script, encoding="utf-8", errors="replace") as f:
        python = f.readline().removeprefix("#!").strip()
    p = subprocess.run(
        [python, "-c", "import exoctl.cli; print(exoctl.cli.__file__)"],
        env=env,
        cwd=Path(script).parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return p.stdout.strip() or f"unknown (exit {p.returncode}: {p.stderr.strip()[-200:]})"


def _env(cfg: Path, pycache: Path) -> dict[str, str]:
    """The environment of a clinician's shell: the configuration found through
    ``$EXOCTL_CONFIG``, and compiled bytecode as an installed package has it (written once to
    ``pycache``, never into the source tree, whatever PYTHONDONTWRITEBYTECODE says here)."""
    env = dict(os.environ, EXOCTL_CONFIG=str(cfg), PYTHONPYCACHEPREFIX=str(pycache))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _run(argv: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall time from spawn to exit and the child's CPU time (user + system), in ms, and its
    exit code. CPU time is far less disturbed by other load than wall time."""
    t0 = time.perf_counter()
    p = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    _, status, ru = os.wait4(p.pid, 0)
    wall = (time.perf_counter() - t0) * 1000.0
    p.returncode = os.waitstatus_to_exitcode(status)
    return wall, (ru.ru_utime + ru.ru_stime) * 1000.0, p.returncode


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.sort(np.asarray(ms))
    return {
        "median_ms": round(float(np.median(a)), 1),
        "p95_ms": round(float(np.percentile(a, 95)), 1),
        "max_ms": round(float(a[-1]), 1),
    }


def _time_commands(env: dict[str, str], runs: int) -> dict[str, Any]:
    """``exoctl estop``, ``exoctl status`` and ``python -c pass``, interleaved, after one
    unmeasured run of each (bytecode written, files in the page cache)."""
    cmds = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "exoctl estop": [*_exoctl(), "estop"],
        "exoctl status": [*_exoctl(), "status"],
    }
    for argv in cmds.values():
        _run(argv, env)
    wall: dict[str, list[float]] = {k: [] for k in cmds}
    cpu: dict[str, list[float]] = {k: [] for k in cmds}
    codes: dict[str, set[int]] = {k: set() for k in cmds}
    for _ in range(runs):
        for name, argv in cmds.items():
            w, c, code = _run(argv, env)
            wall[name].append(w)
            cpu[name].append(c)
            codes[name].add(code)
    out: dict[str, Any] = {}
    for name in cmds:
        out[name] = {
            "runs": runs,
            **_stats(wall[name]),
            "cpu": _stats(cpu[name]),
            "exit_codes": sorted(codes[name]),
        }
    ref = out["python -c pass"]["median_ms"]
    for name in ("exoctl estop", "exoctl status"):
        out[name]["median_over_python_ms"] = round(out[name]["median_ms"] - ref, 1)
        out[name]["meets_p95_target"] = out[name]["p95_ms"] <= TARGET_P95_MS
    return out


def _zero_from(t: np.ndarray, values: np.ndarray, after: float) -> float | None:
    """The first time >= ``after`` from which every value stays 0 to the end, or None."""
    nonzero = np.flatnonzero(np.any(values != 0.0, axis=1))
    last = t[nonzero[-1]] if nonzero.size else -np.inf
    later = t[(t > last) & (t >= after)]
    return float(later[0]) if later.size else None


def _estop_to_zero(sock: Path, env: dict[str, str], data_dir: Path) -> dict[str, Any]:
    from exoctl.recordings import store
    from exoctl.service import client as C

    C.call(sock, "session.start", {"patient": "BENCH01", "protocol": "bench", "assist": 0.3})
    time.sleep(2.0)  # ramp-in (1 s), then assisted walking
    pressed = time.monotonic()  # CLOCK_MONOTONIC: the recording's clock
    ms, _, code = _run([*_exoctl(), "estop"], env)
    time.sleep(0.5)
    C.call(sock, "session.stop", {"reason": "benchmark done"}, timeout_s=10.0)
    (db,) = list(store.iter_session_files(data_dir, "BENCH01"))
    with store.open_session_db(db) as conn:
        cmd = store.read_table(conn, "torque_command")
        tel = store.read_table(conn, "telemetry")
    command, _ = cmd.matrix()
    applied, _ = tel.matrix("applied_")
    assisted = bool(np.any(command[cmd.t < pressed] != 0.0))
    # Torque still commanded in the last 50 ms before the press: otherwise something else (a
    # fault, e.g. deadline overruns on a loaded machine) had zeroed it already, and the time
    # to zero says nothing about the e-stop.
    at_press = bool(np.any(command[(cmd.t >= pressed - 0.05) & (cmd.t < pressed)] != 0.0))
    t_cmd = _zero_from(cmd.t, command, pressed)
    t_app = _zero_from(tel.t, applied, pressed)
    return {
        "assisted_before": assisted,
        "assisted_at_press": at_press,
        "estop_exit_code": code,
        "estop_command_ms": round(ms, 1),
        "to_zero_command_ms": None if t_cmd is None else round((t_cmd - pressed) * 1e3, 1),
        "to_zero_applied_ms": None if t_app is None else round((t_app - pressed) * 1e3, 1),
        "target_ms": TARGET_ESTOP_TO_ZERO_MS,
        "meets_target": at_press
        and t_cmd is not None
        and (t_cmd - pressed) * 1e3 <= TARGET_ESTOP_TO_ZERO_MS,
    }


def _clear_fault(sock: Path, within_s: float = 30.0) -> None:
    """Clear the e-stops the timing pressed. The daemon refuses while an input is not healthy
    yet (on a loaded machine the EMG or telemetry can lag for a moment): ask again until it
    accepts, or fail after ``within_s``."""
    from exoctl.service import client as C

    deadline = time.monotonic() + within_s
    while True:
        try:
            C.call(sock, "fault.clear", timeout_s=10.0)
            return
        except C.RemoteError as e:
            if not e.refused or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def run(quick: bool = False, log: Any = print) -> dict[str, Any]:
    from exoctl.service import client as C

    runs = 5 if quick else RUNS
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="exoctl-bench-cli-") as tmpd:
        tmp = Path(tmpd)
        try:
            info = tmp / "sim.json"
            sim = subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "sim", "--info-file", str(info)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(sim)
            deadline = time.monotonic() + 60
            while not info.exists():
                if sim.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"exoctl sim did not start (exit code {sim.poll()})")
                time.sleep(0.05)
            cfg = daemon_config(tmp, json.loads(info.read_text()))
            from exoctl.config.schema import load_config

            svc = load_config(cfg).service
            env = {
                k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
            }
            dlog = (tmp / "daemon.log").open("w+")
            daemon = subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "--config", str(cfg), "daemon"],
                stdout=dlog,
                stderr=subprocess.STDOUT,
                env=env,
            )
            procs.append(daemon)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if C.call(svc.socket_path, "status", timeout_s=2.0)["daemon"]["loop_healthy"]:
                        break
                except C.ClientError:
                    pass
                if daemon.poll() is not None or time.monotonic() > deadline:
                    dlog.seek(0)
                    raise RuntimeError(f"exoctl daemon did not start: {dlog.read()[-500:]}")
                time.sleep(0.2)
            load_before = os.getloadavg()
            log(f"timing {runs} runs each of exoctl estop, exoctl status, python -c pass")
            cli_env = _env(cfg, tmp / "pycache")
            startup = _time_commands(cli_env, runs)
            _clear_fault(svc.socket_path)
            log("e-stop from the CLI to zero torque, in a session")
            to_zero = _estop_to_zero(svc.socket_path, cli_env, Path(svc.data_dir))
            return {
                "script": _exoctl()[0],
                "code_from": _code_from(_exoctl()[0], cli_env),
                "startup": startup,
                "estop_to_zero": to_zero,
                "target_p95_ms": TARGET_P95_MS,
                "load_average_before": [round(x, 2) for x in load_before],
                "load_average_after": [round(x, 2) for x in os.getloadavg()],
                "cpus": machine().get("cpus"),
            }
        finally:
            stop_children(reversed(procs))


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    print(json.dumps(run(quick=a.quick), indent=2))
