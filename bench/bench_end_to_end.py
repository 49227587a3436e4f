"""exoctl's whole per-tick pipeline against its peers, and a real session's timing, memory and CPU.

Two parts, each an entry for the aggregator (``python -m bench --only pipeline|session``):

``run_pipeline``: one test session of the synthetic patient (the shipped configuration: 16
EMG channels at 2 kHz, control at 500 Hz, i.e. 4 new samples per tick), fed tick by tick to

- exoctl: ``Estimator.step`` (conditioning, activation dynamics, warm NNLS, ONNX through
  IOBinding) with the shipped calibration and linear model; a second pass times each stage;
- the naive peer (``bench.peers.naive``): filtfilt window re-filtering + fresh scipy NNLS
  (the signal-chain benchmark's reference) + PyTorch eager inference of the same model;
- the LibEMG peer (``bench.peers.libemg_peer`` in its own venv): Hudgins features on the
  newest 200 ms window + ``EMGRegressor('LR')``, trained on the same training session;
- with PyTorch present, the paper's multi-scale self-attention network too (random weights:
  cost does not depend on their values): exoctl runs its ONNX export in the estimator (window
  of 200 ticks), the naive peer runs the same module in PyTorch eager.

Same input for all (the .npz the LibEMG peer reads holds the same raw EMG), medians and p99s
over many ticks after a warm-up, ratios peer / exoctl.

``run_session``: ``run_hil`` (controller and simulator in child processes, LSL over loopback,
firmware on a pty) at 500 Hz and 1 kHz: tick start error, whole-tick cost, EMG-sample-arrival
to command-on-the-wire latency, and the controller process's peak RSS and CPU share of one
core, sampled from /proc while the session runs. The daemon (``exoctl daemon``) runs the same
Controller plus its recorder and RPC threads; this measures the controller child of the HIL
runner, and says so.

    .venv/bin/python -m bench --only pipeline,session
"""

from __future__ import annotations

import multiprocessing as mp
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import (
    WARMUP_TICKS,
    TimedChain,
    joint_r2,
    local_service,
    proc_sample,
    ratios,
    tick_stats,
    write_config,
)
from bench.peers import libemg_env, naive
from exoctl.config.schema import load_config
from exoctl.data.patient import patient_from_config
from exoctl.estimation.estimator import Estimator, build_estimator
from exoctl.estimation.torque_model import MODEL_FORMAT, TorqueModel, feature_names, window_input
from exoctl.runtime.children import stop_children
from exoctl.signal.calibration import load_calibration
from exoctl.training.linear_model import LINEAR_MODEL_PATH

TEST_SESSION = 7  # neither the default model's training session (100) nor the demo's
TRAIN_SESSION = 100
NET_SCALES_MS = (50, 100, 200, 400)  # the paper's multi-scale windows


def _time_steps(
    est: Estimator,
    emg: np.ndarray,
    spt: int,
    n: int,
    keep: bool = False,
    clock=time.perf_counter_ns,
):
    times = np.empty(n, dtype=np.int64)
    est_out = np.empty((n, len(est.estimate)))
    feats = None
    if keep:
        feats = np.empty((n, *est.model.features.shape[1:]), dtype=np.float32)
    for i in range(n):
        x = emg[i * spt : (i + 1) * spt]
        t0 = clock()
        y = est.step(x)
        times[i] = clock() - t0
        est_out[i] = y
        if keep:
            feats[i] = est.model.features[0]
    return times, est_out, feats


def _time_stages(est: Estimator, emg: np.ndarray, spt: int, n: int) -> np.ndarray:
    """The estimator's default-layout tick, stage by stage (the same calls ``step`` makes)."""
    chain = TimedChain(est.conditioner, est.activation_dynamics, est.nnls)
    clock = time.perf_counter_ns
    st = np.empty((n, 4), dtype=np.int64)
    k = est.k
    feats = est.model.features
    for i in range(n):
        h, _, t3 = chain.tick(emg[i * spt : (i + 1) * spt], clock, st[i])
        feats[0, :k] = h
        feats[0, k:] = chain.last_activation
        est.model.run()
        st[i, 3] = clock() - t3
    return st


def _network_model(cfg, cal, tmp: Path):
    """The paper's network (random weights), exported to ONNX with exoctl metadata."""
    from exoctl.training.fit import export_onnx
    from exoctl.training.network import MultiScaleNet

    rate = cfg.tick_rate_hz
    scales = [int(round(ms * rate / 1000.0)) for ms in NET_SCALES_MS]
    muscles, joints = tuple(cfg.emg.muscles), cfg.joint_names
    names = feature_names(muscles, cal.k)
    net = MultiScaleNet(len(names), len(joints), scales)
    meta = {
        "format": MODEL_FORMAT,
        "features": list(names),
        "joints": list(joints),
        "muscles": list(muscles),
        "n_synergies": cal.k,
        "input": window_input(max(scales), rate),
        "model_type": "benchmark: MultiScaleNet, random weights",
    }
    path = tmp / "network.onnx"
    export_onnx(net, path, meta)
    return net, path


def run_pipeline(quick: bool = False, libemg: bool = True, log=print) -> dict[str, Any]:
    # The linear pipeline is measured with the shipped linear model (its naive peer converts
    # that graph to PyTorch); the network is measured in its own section below.
    cfg = load_config(None).with_overrides(model={"path": str(LINEAR_MODEL_PATH)})
    fs, rate = cfg.emg.sampling_rate_hz, cfg.tick_rate_hz
    spt = int(round(fs / rate))
    test_s, train_s = (6.0, 10.0) if quick else (24.0, 60.0)
    n_naive = 150 if quick else 600
    rec = patient_from_config(cfg, session=TEST_SESSION).generate(test_s)
    emg = np.ascontiguousarray(rec.emg, dtype=np.float32)
    n_ticks = emg.shape[0] // spt
    joints = cfg.joint_names
    out: dict[str, Any] = {
        "input": {
            "channels": emg.shape[1],
            "emg_rate_hz": fs,
            "control_rate_hz": rate,
            "samples_per_tick": spt,
            "test_seconds": test_s,
            "ticks": n_ticks,
            "warmup_ticks_discarded": WARMUP_TICKS,
            "model": str(Path(cfg.model.path).name),
        }
    }

    # exoctl, whole step, then stage by stage on a fresh estimator
    est = build_estimator(cfg, max_chunk=64)
    times, estimates, feats = _time_steps(est, emg, spt, n_ticks, keep=True)
    out["exoctl"] = tick_stats(times, WARMUP_TICKS)
    # the same on a fresh estimator, timed with the thread's CPU clock: what the code itself
    # costs, without the time other processes on a shared machine take from it
    cpu, _, _ = _time_steps(
        build_estimator(cfg, max_chunk=64), emg, spt, n_ticks, clock=time.thread_time_ns
    )
    out["exoctl_thread_cpu"] = tick_stats(cpu, WARMUP_TICKS)
    st = _time_stages(build_estimator(cfg, max_chunk=64), emg, spt, n_ticks)
    out["exoctl_stages"] = {
        name: tick_stats(st[:, i], WARMUP_TICKS)
        for i, name in enumerate(("dsp", "activation", "nnls", "onnx_linear"))
    }
    last = np.arange(1, n_ticks + 1) * spt - 1
    warm = int(2.0 * rate)
    out["exoctl_r2_test_session"] = joint_r2(rec.torque[last][warm:], estimates[warm:], joints)

    # naive peer on the same ticks: naive chain + PyTorch eager (or generic ORT) of the model
    cal = load_calibration(cfg.estimator.calibration)
    chain, start = naive.chain_times(emg, cal.mvc, cal.W, cfg.estimator.activation, spt, n_naive)
    if naive.torch_available():
        model = naive.TorchEager.from_linear_onnx(Path(cfg.model.path))
    else:
        model = naive.OrtDefault(Path(cfg.model.path))
    inf = naive.inference_times(model, feats[start : start + n_naive])
    out["naive"] = tick_stats(chain + inf, 20)
    out["naive_parts"] = {
        "chain (bench_signal_chain.bench_naive)": tick_stats(chain, 20),
        f"inference ({model.kind})": tick_stats(inf, 20),
    }
    out["ratio_naive_vs_exoctl"] = ratios(out["naive"], out["exoctl"])

    # the paper's network: ONNX in the estimator vs PyTorch eager of the same module
    with tempfile.TemporaryDirectory() as tmp:
        if naive.torch_available():
            try:
                net, path = _network_model(cfg, cal, Path(tmp))
                n_net = min(n_ticks, 1500 if not quick else 400)
                nest = Estimator(cfg, cal, TorqueModel(path), max_chunk=64)
                t_net, _, wins = _time_steps(nest, emg, spt, n_net, keep=True)
                tm = TorqueModel(path)

                def onnx_call(x: np.ndarray, tm: TorqueModel = tm) -> np.ndarray:
                    np.copyto(tm.features, x)  # the window copy the estimator makes, then run
                    return tm.run()

                t_onnx = naive.inference_times(onnx_call, wins[: min(n_net, 800)])
                eager = naive.TorchEager(net)
                t_eager = naive.inference_times(eager, wins[: min(n_net, 800)])
                n_c = min(len(chain), len(t_eager))
                net_naive = chain[:n_c] + t_eager[:n_c]
                out["network"] = {
                    "scales_ticks": list(net.scales),
                    "window_ticks": int(net.window),
                    "exoctl_step": tick_stats(t_net, WARMUP_TICKS),
                    "onnx_inference": tick_stats(t_onnx, 20),
                    "pytorch_eager_inference": tick_stats(t_eager, 20),
                    "ratio_eager_vs_onnx": ratios(tick_stats(t_eager, 20), tick_stats(t_onnx, 20)),
                    "naive_pipeline": tick_stats(net_naive, 20),
                }
                out["network"]["ratio_naive_vs_exoctl"] = ratios(
                    out["network"]["naive_pipeline"], out["network"]["exoctl_step"]
                )
            except Exception as e:  # the training package may be absent or changing
                out["network"] = {"skipped": f"{type(e).__name__}: {e}"}
        else:
            out["network"] = {
                "skipped": "PyTorch is not installed (it is the optional `train` extra: "
                "pip install -e '.[train]')"
            }

        # LibEMG peer, same raw EMG, in its own venv
        if not libemg:
            out["libemg"] = {"skipped": "disabled (--no-libemg)"}
        else:
            try:
                if quick and not libemg_env.installed():
                    raise RuntimeError("quick mode does not install the LibEMG venv")
                out["libemg_install"] = libemg_env.ensure(log=log)
                train = patient_from_config(cfg, session=TRAIN_SESSION).generate(train_s)
                npz = Path(tmp) / "peer_input.npz"
                libemg_env.write_input(
                    npz,
                    train=(train.emg, train.torque),
                    tests=[(rec.emg, rec.torque)],
                    joints=list(joints),
                    fs_hz=fs,
                    per_tick=spt,
                    timed_ticks=400 if quick else 2000,
                )
                res = libemg_env.run_peer(npz, Path(tmp) / "peer_out.json")
                res["r2_test_session"] = res.pop("r2")[0]
                out["libemg"] = res
                out["ratio_libemg_vs_exoctl"] = ratios(res["per_tick"], out["exoctl"])
            except Exception as e:
                out["libemg"] = {"skipped": f"{type(e).__name__}: {e}"}
    return out


class _ChildMonitor(threading.Thread):
    """Samples the HIL controller child's /proc figures while a session runs."""

    def __init__(self, name: str = "controller", period_s: float = 0.1):
        super().__init__(daemon=True)
        self.name_, self.period = name, period_s
        self.samples: list[tuple[float, dict]] = []
        self.pid: int | None = None
        self.stop_ev = threading.Event()

    def run(self) -> None:
        while not self.stop_ev.is_set():
            if self.pid is None:
                for p in mp.active_children():
                    if p.name == self.name_:
                        self.pid = p.pid
            if self.pid is not None:
                s = proc_sample(self.pid)
                if s is not None:
                    self.samples.append((time.monotonic(), s))
            self.stop_ev.wait(self.period)

    def summary(self) -> dict[str, Any]:
        """Peak RSS, and CPU share as the median over 1 s windows (start-up and stop are a few
        windows among many, so the median is the session's steady share)."""
        if len(self.samples) < 3:
            return {"error": "the controller process was not sampled"}
        t = np.array([s[0] for s in self.samples])
        cpu = np.array([s[1]["cpu_s"] for s in self.samples])
        j = np.searchsorted(t, t + 1.0)
        ok = j < len(t)
        shares = (cpu[j[ok]] - cpu[ok]) / (t[j[ok]] - t[ok])
        if shares.size == 0:
            shares = np.array([(cpu[-1] - cpu[0]) / (t[-1] - t[0])])
        return {
            "process": "HIL controller child (exoctl.runtime.controller.Controller: acquisition, estimator, "
            "control loop, safety, firmware link), spawned by exoctl.hil.runner.run_hil",
            "peak_rss_mib": round(max(s["hwm_mib"] for _, s in self.samples), 1),
            "cpu_share_of_one_core": round(float(np.median(shares)), 3),
            "cpu_share_p90_1s": round(float(np.percentile(shares, 90)), 3),
            "sampled_s": round(float(t[-1] - t[0]), 1),
        }


def run_session(quick: bool = False, log=print) -> dict[str, Any]:
    from exoctl.hil.runner import run_hil

    out: dict[str, Any] = {}
    rates = (500,) if quick else (500, 1000)
    duration = 3.0 if quick else 20.0
    for rate in rates:
        log(f"  HIL session at {rate} Hz for {duration:g} s")
        mon = _ChildMonitor()
        mon.start()
        try:
            # The shipped network is trained for 500 Hz ticks (and refuses other rates); the
            # loop at other rates is measured with the rate-independent linear model.
            ov: dict = {"control": {"rate_hz": rate}}
            if rate != 500:
                ov["model"] = {"path": str(LINEAR_MODEL_PATH)}
            s = run_hil(duration, None, ov)
        finally:
            mon.stop_ev.set()
            mon.join(2.0)
        keys = (
            "control_rate_hz",
            "ticks",
            "deadline_misses",
            "loop_jitter_us",
            "tick_cost_us",
            "latency_ms",
            "sample_age_ms",
            "r2",
            "commands_sent",
            "commands_received",
            "faults",
        )
        r = {k: s.get(k) for k in keys}
        r["duration_s"] = duration
        r["process"] = mon.summary()
        out[f"{rate}Hz"] = r
    return out


def _wait_file(path: Path, proc, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not start (exit code {proc.poll()})")
        time.sleep(0.05)


def run_daemon(quick: bool = False, log=print) -> dict[str, Any]:
    """`exoctl daemon` in a session against `exoctl sim`: the deployed process's peak RSS and
    CPU share of one core, with its recorder writing to SQLite and its LSL outlets publishing.

    Two processes started here and stopped by their own pids (SIGTERM, then kill): the
    simulator (EMG over LSL, firmware on a pty) and the daemon, configured with the pty and the
    LSL source id, its data and socket under a temporary directory. The session is started and
    stopped through the control socket, as the clinician CLI does.
    """
    import json
    import os
    import subprocess
    import sys

    from exoctl.service import client as C

    duration = 3.0 if quick else 20.0
    procs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="exoctl-bench-") as tmpd:
        tmp = Path(tmpd)
        try:
            info = tmp / "sim.json"
            sim = subprocess.Popen(
                [sys.executable, "-m", "exoctl.cli", "sim", "--info-file", str(info)],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            procs.append(sim)
            _wait_file(info, sim, 60.0, "exoctl sim")
            ends = json.loads(info.read_text())
            svc = local_service(tmp)
            sock = Path(svc["socket_path"])
            cfg_path = write_config(
                tmp / "exoctl.yaml",
                service=svc,
                device={"serial": {"port": ends["port"]}},
                emg={"lsl": {"source_id": ends["source_id"]}},
            )
            env = {
                k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC")
            }
            dlog = (tmp / "daemon.log").open("w+")
            daemon = None
            for attempt in range(2):  # a start on a loaded machine may miss its EMG deadline
                daemon = subprocess.Popen(
                    [sys.executable, "-m", "exoctl.cli", "--config", str(cfg_path), "daemon"],
                    stdout=dlog,
                    stderr=subprocess.STDOUT,
                    env=env,
                )
                procs.append(daemon)
                deadline = time.monotonic() + 60.0
                ok = False
                while time.monotonic() < deadline and daemon.poll() is None:
                    try:
                        st = C.call(sock, "status", timeout_s=2.0)
                        if st["daemon"]["loop_healthy"]:
                            ok = True
                            break
                    except Exception:
                        pass
                    time.sleep(0.2)
                if ok:
                    break
                if attempt == 1 or daemon.poll() is None:
                    dlog.seek(0)
                    tail = " | ".join(dlog.read().strip().splitlines()[-3:])
                    raise RuntimeError(f"exoctl daemon did not become healthy: {tail}")
            log(f"  daemon pid {daemon.pid}: session of {duration:g} s")
            C.call(sock, "session.start", {"patient": "BENCH01", "protocol": "bench"})
            samples = []
            t_end = time.monotonic() + duration
            while time.monotonic() < t_end:
                s = proc_sample(daemon.pid)
                if s is not None:
                    samples.append((time.monotonic(), s))
                time.sleep(0.1)
            st = C.call(sock, "status", timeout_s=5.0)
            C.call(sock, "session.stop", {"reason": "benchmark done"}, timeout_s=10.0)
            t = np.array([x[0] for x in samples])
            cpu = np.array([x[1]["cpu_s"] for x in samples])
            j = np.searchsorted(t, t + 1.0)
            ok = j < len(t)
            shares = (cpu[j[ok]] - cpu[ok]) / (t[j[ok]] - t[ok])
            loop = st.get("loop", {})
            return {
                "process": "exoctl daemon (controller, recorder writing SQLite, control socket, "
                "LSL outlets) in a session against exoctl sim",
                "duration_s": duration,
                "peak_rss_mib": round(max(x[1]["hwm_mib"] for x in samples), 1),
                "cpu_share_of_one_core": round(float(np.median(shares)), 3),
                "cpu_share_p90_1s": round(float(np.percentile(shares, 90)), 3),
                "loop": {
                    k: loop.get(k)
                    for k in (
                        "target_rate_hz",
                        "control_rate_hz",
                        "deadline_misses",
                        "loop_jitter_us",
                        "tick_cost_us",
                        "latency_ms",
                    )
                },
                "recorder": {
                    k: st.get("recorder", {}).get(k) for k in ("written_chunks", "dropped")
                },
                "safety_state": st.get("safety_state"),
            }
        finally:
            stop_children(reversed(procs))
