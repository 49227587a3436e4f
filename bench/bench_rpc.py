"""The control socket under attack and under load, against a real daemon.

    .venv/bin/python -m bench.bench_rpc                  # every reproduction, ~1 min
    .venv/bin/python -m bench.bench_rpc --only batch,concurrency --out /tmp/rpc.json

What runs: ``exoctl sim`` (EMG over LSL on loopback, the emulated firmware on a pty) and
``exoctl daemon`` as two child processes, exactly as deployed (the loop at SCHED_FIFO 50, the
simulator above it at 60, where granted); this process is the attacker and the clinician. Each reproduction of the issue, with its figure:

* ``estop_exhaustion``: connections that never send a newline fill the control socket (the
  old per-socket cap, 16, plus 48 more), then ``exoctl estop``: its exit code and the time
  from connect to the daemon's answer;
* ``estop_slow_client``: the same with one more client trickling 6 bytes/s into its
  connection (it used to hold the accept loop), then a ``status`` and an e-stop;
* ``batch``: in a session, a JSON-RPC batch of 1,000 ``status`` calls (51 KB); the loop's tick
  start error from its own timing record (the session's ``loop_timing`` stream) in the 3 s
  before and during the request, the firmware's latched faults afterwards;
* ``hostile``: 5,000-digit integers and 50,000 nested brackets: the answer, and whether the
  same connection still answers a ``status`` afterwards;
* ``concurrency``: 50 clients x 20 ``status`` calls, each a fresh connection (what 50 CLIs
  do), with the CLI's client and its retry: how many were answered; then 1,000 sequential
  calls, p50/p99/max.

Timing belongs here, not in tests: nothing asserts. Every figure comes with the machine's load
average at the time, since other work on a shared 2-core machine moves all of them.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import REPO, daemon_config, write_config  # noqa: E402
from exoctl.config.schema import load_config  # noqa: E402
from exoctl.recordings import recorder as R  # noqa: E402
from exoctl.runtime.children import stop_children  # noqa: E402
from exoctl.service import client as C  # noqa: E402

SECTIONS = ("estop_exhaustion", "estop_slow_client", "batch", "hostile", "concurrency")


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) a process has used, from /proc (0 for pid 0: none)."""
    if not pid:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _pct_ms(a: list[float] | np.ndarray) -> dict[str, float | int | None]:
    v = np.asarray(a, dtype=float) * 1e3
    v = v[np.isfinite(v)]  # a tick before the first firmware report has an infinite age
    if v.size == 0:
        return {"p50": None, "p99": None, "max": None, "n": 0}
    return {
        "p50": round(float(np.percentile(v, 50)), 3),
        "p99": round(float(np.percentile(v, 99)), 3),
        "max": round(float(v.max()), 3),
        "n": int(v.size),
    }


class Rig:
    """``exoctl sim`` and ``exoctl daemon`` as child processes, in a temporary directory."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        info = tmp / "sim.json"
        self.sim_err = (tmp / "sim.err").open("w+")
        # the simulator stands for hardware: above the loop
        sim_cfg = write_config(tmp / "sim.yaml", simulator={"realtime_priority": 60})
        self.sim = subprocess.Popen(
            [sys.executable, "-m", "exoctl.cli", "--config", str(sim_cfg), "sim",
             "--info-file", str(info)],
            stdout=subprocess.DEVNULL, stderr=self.sim_err, cwd=REPO,
        )  # fmt: skip
        deadline = time.monotonic() + 120
        while not info.exists():
            if self.sim.poll() is not None or time.monotonic() > deadline:
                self.sim.kill()
                raise RuntimeError("the simulator did not start")
            time.sleep(0.05)
        ep = json.loads(info.read_text())
        # the loop at SCHED_FIFO 50, as deployed (docs/deploy.md) and as the daemon tests ask
        self.cfg_path = daemon_config(tmp, ep, realtime_priority=50)
        self.cfg = load_config(self.cfg_path)
        self.sock = self.cfg.service.socket_path
        self.log = (tmp / "daemon.log").open("w+")
        try:
            self.daemon = self._spawn_daemon()
        except BaseException:
            self.sim.kill()
            raise

    def _spawn_daemon(self) -> subprocess.Popen:
        for attempt in range(2):  # a start that misses EMG on a loaded machine exits 1: retry
            p = subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "--config", str(self.cfg_path), "daemon"],
                stdout=self.log, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and p.poll() is None:
                with contextlib.suppress(C.ClientError):
                    C.call(self.sock, "status", timeout_s=2.0)
                    return p
                time.sleep(0.1)
            if p.poll() is None or attempt:
                p.kill()
                raise RuntimeError("the daemon did not start")
        raise AssertionError("unreachable")

    def status(self) -> dict[str, Any]:
        return C.call(self.sock, "status", timeout_s=10.0)

    def cli(self, *argv: str) -> tuple[int, str, str, float]:
        t0 = time.monotonic()
        p = subprocess.run(
            [sys.executable, "-m", "exoctl.cli", "--config", str(self.cfg_path), *argv],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        return p.returncode, p.stdout, p.stderr, time.monotonic() - t0

    def clear(self, timeout: float = 15.0) -> None:
        """Clear a latched fault or e-stop (the inputs must be healthy), as a clinician would."""
        deadline = time.monotonic() + timeout
        while self.status()["safety_state"] in ("FAULT_LATCHED", "ESTOP", "SAFE_STOP"):
            with contextlib.suppress(C.RemoteError):
                C.call(self.sock, "fault.clear", timeout_s=10.0)
            if time.monotonic() > deadline:
                raise RuntimeError(f"could not clear: {self.status()['safety_state']}")
            time.sleep(0.3)

    def close(self) -> dict[str, Any] | None:
        """Stop both; the emulator's final counters (host timeouts among them)."""
        emu = None
        stop_children((self.daemon, self.sim), kill_wait_s=10.0)
        self.sim_err.flush()
        self.sim_err.seek(0)
        for line in reversed(self.sim_err.read().splitlines()):
            if line.startswith('{"emulator"'):
                emu = json.loads(line)["emulator"]
                break
        self.sim_err.close()
        self.log.close()
        return emu


def _estop_path(rig: Rig) -> Path | None:
    fn = getattr(__import__("exoctl.service.rpc", fromlist=["x"]), "estop_socket_path", None)
    return fn(rig.sock) if fn else None


def _timed(fn: Any, ok: str) -> tuple[str, float]:
    """(``ok`` or the client's error, milliseconds) of one call."""
    t0 = time.monotonic()
    try:
        fn()
        outcome = ok
    except C.ClientError as e:
        outcome = f"{type(e).__name__}: {e}"
    return outcome, round((time.monotonic() - t0) * 1e3, 2)


def _timed_estop(rig: Rig) -> dict[str, Any]:
    """The e-stop as ``exoctl estop`` does it (in process, so that the interpreter's start-up
    is not counted), then the real CLI for its exit code."""
    estop = getattr(C, "estop", None)  # absent before the e-stop socket existed
    outcome, ms = _timed(
        lambda: (
            estop(rig.sock, timeout_s=5.0)
            if estop is not None
            else C.call(rig.sock, "estop", timeout_s=5.0)
        ),
        "accepted",
    )
    code, _, err, wall = rig.cli("estop")
    return {
        "estop_ms": ms,
        "outcome": outcome,
        "cli_exit_code": code,
        "cli_wall_s": round(wall, 3),
        "cli_stderr": err.strip()[-300:],
    }


def _hog(rig: Rig, n: int, path: Path | None = None) -> list[socket.socket]:
    """n connections that send half a request and never the newline."""
    out: list[socket.socket] = []
    deadline = time.monotonic() + 10.0
    while len(out) < n and time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(str(path or rig.sock))
            s.sendall(b'{"jsonrpc":"2.0",')
        except OSError:  # the listen backlog is full: as an attacker would, try again
            s.close()
            time.sleep(0.005)
            continue
        out.append(s)
    return out


def estop_exhaustion(rig: Rig, n: int = 64) -> dict[str, Any]:
    rig.clear()
    hogs = _hog(rig, n)
    time.sleep(0.3)
    try:
        r = _timed_estop(rig)
    finally:
        for s in hogs:
            s.close()
    st = rig.status()["safety_state"]
    return {"hog_connections": len(hogs), **r, "safety_state_after": st, "load": _load()}


def estop_slow_client(rig: Rig, rate_bps: float = 6.0, n: int = 16) -> dict[str, Any]:
    rig.clear()
    hogs = _hog(rig, n)
    stop = threading.Event()
    sent = [0]

    def trickle() -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(2.0)
        try:
            s.connect(str(rig.sock))
            while not stop.wait(1.0 / rate_bps):
                s.sendall(b"x")
                sent[0] += 1
        except OSError:
            pass
        finally:
            s.close()

    th = threading.Thread(target=trickle, daemon=True)
    th.start()
    time.sleep(1.5)
    try:
        status, status_ms = _timed(lambda: C.call(rig.sock, "status", timeout_s=5.0), "answered")
        r = _timed_estop(rig)
    finally:
        stop.set()
        th.join(3)
        for s in hogs:
            s.close()
    return {
        "hog_connections": len(hogs),
        "slow_bytes_sent": sent[0],
        "status": status,
        "status_ms": status_ms,
        **r,
        "load": _load(),
    }


def _batch_request(calls: int) -> bytes:
    body = ",".join(f'{{"jsonrpc":"2.0","id":{i},"method":"status"}}' for i in range(calls))
    return b"[" + body.encode() + b"]\n"


def _send_batch(path: Path, req: bytes) -> tuple[bytes, float]:
    """One request on a fresh connection; (the answer, seconds to it)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(30)
    buf = b""
    t0 = time.monotonic()
    try:
        s.connect(str(path))
        with contextlib.suppress(OSError):
            s.sendall(req)
        with contextlib.suppress(OSError):
            while not buf.endswith(b"\n"):
                chunk = s.recv(1 << 20)
                if not chunk:
                    break
                buf += chunk
    finally:
        s.close()
    return buf, time.monotonic() - t0


def _describe(buf: bytes) -> str:
    try:
        reply = json.loads(buf)
        if isinstance(reply, list):
            return f"{len(reply)} results"
        return f"error {reply['error']['code']}: {reply['error']['message']}"
    except (ValueError, KeyError, TypeError):
        return f"unreadable ({len(buf)} bytes)"


def _attack(rig: Rig, kind: str, seconds: float) -> int:
    """Back-to-back requests of one kind for ``seconds``; how many were answered."""
    end = time.monotonic() + seconds
    n = [0]
    if kind == "client_cpu_only":  # the attacker's own CPU use, without a single request
        while time.monotonic() < end:
            sum(range(10000))
        return 0
    if kind == "status_flood":  # 8 clients calling status as fast as answers come

        def flood() -> None:
            while time.monotonic() < end:
                with contextlib.suppress(C.ClientError):
                    C.call(rig.sock, "status", timeout_s=10.0)
                    n[0] += 1

        ts = [threading.Thread(target=flood) for _ in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        return n[0]
    req = _batch_request(1000 if kind == "oversize_batch" else 32)
    while time.monotonic() < end:
        if _send_batch(rig.sock, req)[0]:
            n[0] += 1
    return n[0]


def batch(
    rig: Rig, calls: int = 1000, baseline_s: float = 3.0, rounds: int = 4, phase_s: float = 1.0
) -> dict[str, Any]:
    """The issue's single batch, then quiet phases interleaved with continuous attacks (so
    that the machine's own load, which drifts, weighs on both alike)."""
    rig.clear()
    for _ in range(20):  # a stale-input fault on a loaded machine refuses a session: clear it
        try:
            sid = C.call(rig.sock, "session.start", {"patient": "BENCH"}, timeout_s=10.0)
            break
        except C.RemoteError:
            rig.clear()
            time.sleep(0.3)
    else:
        raise RuntimeError("no session")
    sid = sid["session_id"]
    time.sleep(1.5 + baseline_s)  # ramp-in, then the baseline
    req = _batch_request(calls)
    t0 = time.monotonic()
    buf, took = _send_batch(rig.sock, req)
    t1 = t0 + took
    time.sleep(0.5)
    st = rig.status()
    phases: list[tuple[str, float, float]] = []
    answered: dict[str, int] = {}
    kinds = ("client_cpu_only", "oversize_batch", "max_batch", "status_flood")
    cpu: dict[str, float] = {}
    front_cpu: dict[str, float] = {}
    # the control socket's own process (0: none, an older daemon with the socket in-process)
    front = (st.get("daemon") or {}).get("control_socket_pid") or 0
    for _ in range(rounds):
        for kind in kinds:
            a = time.monotonic()
            time.sleep(phase_s)
            phases.append(("quiet", a, time.monotonic()))
            a, c0, f0 = time.monotonic(), _cpu_s(rig.daemon.pid), _cpu_s(front)
            answered[kind] = answered.get(kind, 0) + _attack(rig, kind, phase_s)
            phases.append((kind, a, time.monotonic()))
            cpu[kind] = cpu.get(kind, 0.0) + _cpu_s(rig.daemon.pid) - c0
            front_cpu[kind] = front_cpu.get(kind, 0.0) + _cpu_s(front) - f0
    st2 = rig.status()
    C.call(rig.sock, "session.stop", timeout_s=30.0)
    db = R.find_session(rig.cfg.service.data_dir, sid)
    with R.open_session_db(db) as conn:
        t, timing = R.read_stream(conn, "loop_timing")
    err = timing[:, 0]
    # the firmware report's age at each tick: the serial reader's delivery, as the loop saw it
    tel_age = timing[:, 4] if timing.shape[1] > 4 else np.full(len(t), np.nan)
    base = err[(t >= t0 - baseline_s) & (t < t0)]
    during = err[(t >= t0) & (t <= t1 + 0.05)]
    by_kind = {}
    for kind in ("quiet", *kinds):
        m = np.zeros(len(t), bool)
        for k, a, b in phases:
            if k == kind:
                m |= (t >= a) & (t < b)
        by_kind[kind] = {
            "start_error_ms": _pct_ms(err[m]),
            "telemetry_age_ms": _pct_ms(tel_age[m]),
            **({"requests_answered": answered[kind]} if kind in answered else {}),
            **(
                {
                    "daemon_cpu_share": round(cpu[kind] / (rounds * phase_s), 3),
                    "control_socket_process_cpu_share": round(
                        front_cpu[kind] / (rounds * phase_s), 3
                    ),
                }
                if kind in cpu
                else {}
            ),
        }
    return {
        "single": {
            "request_bytes": len(req),
            "answer": _describe(buf),
            "answer_s": round(took, 3),
            "start_error_baseline_ms": _pct_ms(base),
            "start_error_during_ms": _pct_ms(during),
            "ticks_during_over_baseline_p99": int((during > np.percentile(base, 99)).sum()),
            "safety_state_after": st["safety_state"],
            "faults_after": [f.get("kind") for f in st.get("faults") or []][-5:],
        },
        "interleaved": {
            "phase_s": phase_s,
            "rounds": rounds,
            **by_kind,
            "safety_state_after": st2["safety_state"],
            "faults_after": [f.get("kind") for f in st2.get("faults") or []][-5:],
        },
        "load": _load(),
    }


def hostile(rig: Rig) -> dict[str, Any]:
    out = {}
    for name, line in (
        ("int_5000_digits", b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"status"}'),
        ("nesting_50000", b"[" * 50000),  # 50 KB: over the size limit, refused unread
        ("nesting_10000", b"[" * 10000),
    ):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(5)
        s.connect(str(rig.sock))
        f = s.makefile("rb")
        try:
            s.sendall(line + b"\n")
            first = f.readline()
            answer = json.loads(first)["error"]["message"][:120] if first else "(closed)"
        except (OSError, ValueError, KeyError) as e:
            answer = f"{type(e).__name__}: {e}"
        try:
            s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"status"}\n')
            alive = "result" in json.loads(f.readline())
        except (OSError, ValueError):
            alive = False
        f.close()
        s.close()
        out[name] = {"answer": answer, "connection_alive_after": alive}
    return out


def concurrency(rig: Rig, clients: int = 50, per_client: int = 20, sequential: int = 1000):
    ok = [0] * clients
    errors: dict[str, int] = {}
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def worker(i: int) -> None:
        barrier.wait()
        for _ in range(per_client):
            try:
                C.call(rig.sock, "status", timeout_s=10.0)
                ok[i] += 1
            except C.ClientError as e:
                with lock:
                    key = f"{type(e).__name__}: {str(e)[:60]}"
                    errors[key] = errors.get(key, 0) + 1

    ts = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    wall = time.monotonic() - t0
    lat = []
    failed = 0
    for _ in range(sequential):
        t1 = time.monotonic()
        try:
            C.call(rig.sock, "status", timeout_s=10.0)
        except C.ClientError:
            failed += 1
        lat.append(time.monotonic() - t1)
    return {
        "concurrent_answered": sum(ok),
        "concurrent_total": clients * per_client,
        "concurrent_wall_s": round(wall, 2),
        "concurrent_errors": errors,
        "sequential_ms": _pct_ms(lat),
        "sequential_failed": failed,
        "load": _load(),
    }


def run(quick: bool = False, only: tuple[str, ...] = SECTIONS, log=print) -> dict[str, Any]:
    res: dict[str, Any] = {"load_before": _load()}
    with tempfile.TemporaryDirectory(prefix="exoctl-bench-rpc-") as d:
        rig = Rig(Path(d))
        try:
            for name in only:
                log(f"{name} ...")
                fn = globals()[name]
                kw = {"sequential": 200, "clients": 20} if quick and name == "concurrency" else {}
                try:
                    res[name] = fn(rig, **kw)
                except Exception as e:  # one reproduction failing is itself a figure
                    res[name] = {"failed": f"{type(e).__name__}: {e}"}
                log(json.dumps(res[name]))
        finally:
            res["emulator"] = rig.close()
    res["load_after"] = _load()
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", default=",".join(SECTIONS), help=f"of {','.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", type=Path)
    a = ap.parse_args()
    only = tuple(x for x in a.only.split(",") if x)
    bad = sorted(set(only) - set(SECTIONS))
    if bad:
        ap.error(f"unknown sections {bad}; choose from {','.join(SECTIONS)}")
    res = run(a.quick, only)
    text = json.dumps(res, indent=1, default=str)
    if a.out:
        a.out.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
