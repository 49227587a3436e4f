"""Clinician CLI: the daemon and session commands of ``exoctl``.

Commands (all accept ``--json`` for scripts; tables by default)::

    exoctl daemon                                     run the supervisor (systemd runs this)
    exoctl session start --patient P [--assist 0.3 | --assist hip_l=0.3,knee_l=0.2]
                         [--protocol NAME]
    exoctl session stop
    exoctl status [--watch [SECONDS]]
    exoctl estop
    exoctl fault clear
    exoctl assist set 0.4 | hip_l=0.4 knee_l=0.2
    exoctl model load [--model PATH] [--calibration PATH]   (between sessions)
    exoctl patients list
    exoctl sessions list [--patient P]
    exoctl sessions show ID
    exoctl sessions export ID [--format parquet|csv|npz] [--exact] [--raw-emg] --out PATH
    exoctl sessions report ID --out FILE.html

Exit codes (stable; scripts may rely on them; shared by every exoctl command, see
exoctl/cli_policy.py):

    0    ok
    1    error (bad configuration, recording not found, daemon-side failure, ...)
    2    usage error (argparse)
    3    the daemon is not running (no socket, or nobody listening)
    4    permission denied (socket file modes, or the daemon refused your credentials;
         for ``sessions ...``: the data directory is not readable by you)
    5    refused by the daemon (e.g. a fault is latched, a session is already running)
    70   internal error (a bug; one line says where)
    130  interrupted

The configuration is ``--config PATH``, else ``$EXOCTL_CONFIG``, else
``/etc/exoctl/exoctl.yaml`` when it exists, else the packaged default.

``sessions ...`` and ``patients list`` read the recordings directly (they work with the
daemon stopped); the data directory is 0700, so run them as the service user
(``sudo -u exoctl exoctl sessions list``) or as root.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from exoctl import cli_policy
from exoctl.cli_policy import (  # the codes every exoctl command shares
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_REFUSED,
    EXIT_USAGE,
)


# ---------------------------------------------------------------------------------------
# helpers
def config_path(args: argparse.Namespace) -> Path:
    """The one lookup rule (exoctl.config.lookup): --config, $EXOCTL_CONFIG, /etc/exoctl, package.
    A clinician then types ``exoctl status``, not the path each time."""
    from exoctl.config.lookup import config_path as lookup

    return lookup(args)


def _service_config(args: argparse.Namespace) -> Any:
    from exoctl.config.schema import load_config

    return load_config(config_path(args)).service


def _rpc(args: argparse.Namespace, method: str, params: Any = None) -> Any:
    from exoctl.service.client import Client

    svc = _service_config(args)
    with Client(svc.socket_path, timeout_s=getattr(args, "timeout", 30.0)) as c:
        return c.call(method, params)


def _guard(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Map every expected failure to a message on stderr and a documented exit code."""

    def run(args: argparse.Namespace) -> int:
        from exoctl.config.schema import ConfigError
        from exoctl.service import client as C

        try:
            return fn(args)
        except C.DaemonNotRunning as e:
            return _fail(args, str(e), EXIT_NOT_RUNNING)
        except C.PermissionDenied as e:
            return _fail(args, str(e), EXIT_PERMISSION)
        except C.RemoteError as e:
            if e.refused:
                return _fail(args, f"refused by the daemon: {e.message}", EXIT_REFUSED, e.data)
            return _fail(args, f"daemon error {e.code}: {e.message}", EXIT_ERROR, e.data)
        except C.ClientError as e:
            return _fail(args, str(e), EXIT_ERROR)
        except PermissionError as e:
            return _fail(
                args,
                f"permission denied: {e.filename or e}: run as the service user "
                "(sudo -u exoctl exoctl ...) or as root",
                EXIT_PERMISSION,
            )
        except ConfigError as e:
            return _fail(args, str(e), EXIT_ERROR)
        except Exception as e:
            # A RecorderError can only come from a command that imported the recordings'
            # store (where it is defined); not importing it (and numpy) here keeps
            # `exoctl status` quick.
            store = sys.modules.get("exoctl.service.store")
            if store is not None and isinstance(e, store.RecorderError):
                return _fail(args, str(e), EXIT_ERROR)
            raise
        except KeyboardInterrupt:
            return 130

    run.__doc__ = fn.__doc__
    return run


def _fail(args: argparse.Namespace, msg: str, code: int, data: Any = None) -> int:
    return cli_policy.fail(msg, code, json_mode=getattr(args, "json", False), data=data)


def _emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> int:
    if getattr(args, "json", False):
        cli_policy.emit_json(data)
    else:
        text = human(data)
        if text:
            print(text)
    return EXIT_OK


def format_table(rows: list[dict[str, Any]], columns: Iterable[str]) -> str:
    cols = list(columns)
    if not rows:
        return "(none)"
    cells = [[_cell(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(cols)]
    line = "  ".join(c.upper().ljust(w) for c, w in zip(cols, widths, strict=True))
    body = ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells]
    return "\n".join([line.rstrip(), *(b.rstrip() for b in body)])


def fmt_num(v: float) -> str:
    """A figure for people: no exponent, no minus zero, at most three significant digits."""
    if not math.isfinite(v):
        return "-" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    a = abs(v)
    if a >= 100:
        s = f"{v:.0f}"
    elif a >= 10:
        s = f"{v:.1f}"
    elif a >= 1:
        s = f"{v:.2f}"
    elif a >= 1e-4:
        s = f"{v:.3g}"
    else:
        s = "0"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s[1:] if s.startswith("-") and float(s) == 0.0 else s


def fmt_us(v: float | None) -> str:
    """A duration given in microseconds: in us below a millisecond, else in ms."""
    if v is None:
        return "-"
    return f"{fmt_num(v)} us" if abs(v) < 1000 else f"{fmt_num(v / 1000.0)} ms"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return fmt_num(v)
    if isinstance(v, dict | list):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch).strftime("%Y-%m-%d %H:%M:%S")


def _flatten(d: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v and len(v) <= 12:
            out.extend(_flatten(v, key + "."))
        else:
            out.append((key, v))
    return out


def format_kv(d: dict[str, Any]) -> str:
    items = _flatten(d)
    if not items:
        return "(empty)"
    w = max(len(k) for k, _ in items)
    return "\n".join(f"{k.ljust(w)}  {_cell(v)}" for k, v in items)


def parse_assist(values: list[str] | None) -> float | dict[str, float] | None:
    """``0.3`` (every joint) or ``hip_l=0.3,knee_l=0.2`` / ``hip_l=0.3 knee_l=0.2``."""
    if not values:
        return None
    parts = [p for v in values for p in v.replace(",", " ").split() if p]
    if len(parts) == 1 and "=" not in parts[0]:
        return _gain(parts[0])
    out: dict[str, float] = {}
    for p in parts:
        if "=" not in p:
            raise argparse.ArgumentTypeError(
                f"bad assist value {p!r}: use one gain for all joints (0.3) or joint=gain pairs"
            )
        k, v = p.split("=", 1)
        out[k.strip()] = _gain(v)
    return out


def _gain(s: str) -> float:
    from exoctl.control.assist_level import AssistLevelError, check_level

    try:
        return check_level(s)
    except AssistLevelError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


# ---------------------------------------------------------------------------------------
# daemon-facing commands
@_guard
def cmd_daemon(args: argparse.Namespace) -> int:
    """Run the supervisor in the foreground (systemd's ExecStart)."""
    from exoctl.service.daemon import run_daemon

    return run_daemon(config_path(args))


def _session_human(r: dict[str, Any]) -> str:
    return format_kv(r)


@_guard
def cmd_session_start(args: argparse.Namespace) -> int:
    try:
        assist = parse_assist(args.assist)
    except argparse.ArgumentTypeError as e:
        return _fail(args, str(e), EXIT_USAGE)
    params: dict[str, Any] = {"patient": args.patient, "protocol": args.protocol}
    if assist is not None:
        params["assist"] = assist
    r = _rpc(args, "session.start", params)
    return _emit(args, r, lambda r: "session started\n" + _session_human(r))


@_guard
def cmd_session_stop(args: argparse.Namespace) -> int:
    r = _rpc(args, "session.stop", {"reason": args.reason})
    return _emit(args, r, lambda r: "session stopped\n" + _session_human(r))


def format_status(st: dict[str, Any]) -> str:
    """The status a clinician reads: state, session, per-joint torques, loop, link, faults.

    Falls back to every key when the answer does not have the expected shape."""
    try:
        return _format_status(st)
    except (KeyError, TypeError, ValueError, AttributeError):
        return format_kv(st)


def _format_status(st: dict[str, Any]) -> str:
    d, loop, link = st["daemon"], st["loop"], st.get("link") or {}
    state = st["safety_state"]
    lines = [
        f"exoctl {d['version']} (pid {d['pid']}, up {d['uptime_s']:.0f} s)   "
        f"loop {'healthy' if d['loop_healthy'] else 'NOT HEALTHY'}   "
        f"safety {state}" + (f": {STATE_WORDS[state]}" if state in STATE_WORDS else "")
    ]
    s = st.get("session")
    if s:
        gains = _gains_text(s["gains"])
        lines.append(
            f"session   patient {s['patient']}, protocol {s.get('protocol') or '-'}, "
            f"running {time.time() - s['started_at']:.0f} s, id {s.get('id') or '-'}"
        )
        lines.append(f"assist    {gains}")
    else:
        lines.append("session   none")
    jit, cost, lat = loop["loop_jitter_us"], loop["tick_cost_us"], loop["latency_ms"]
    lines.append(
        f"loop      {loop['control_rate_hz']:.1f} Hz (target {loop['target_rate_hz']:g}), "
        f"{loop['deadline_misses']} deadline misses; last {loop.get('window_s', 0):g} s: "
        f"start error p99 {fmt_us(jit['p99'])}, tick cost p99 {fmt_us(cost['p99'])}, "
        f"EMG->command p99 {_cell(lat['p99'])} ms"
    )
    if st.get("loop_error"):
        lines.append(f"LOOP ERROR {st['loop_error']}")
    joints = list(st["estimate_nm"])
    rows = [
        {
            "joint": j,
            "estimate_nm": st["estimate_nm"][j],
            "command_nm": (st.get("command_nm") or {}).get(j),
            "applied_nm": (st.get("applied_nm") or {}).get(j),
        }
        for j in joints
    ]
    lines.append(format_table(rows, ["joint", "estimate_nm", "command_nm", "applied_nm"]))
    if link:
        rtt = link.get("rtt_ms") or {}
        lines.append(
            f"link      {'healthy' if link.get('healthy') else 'NOT HEALTHY'}, "
            f"{'enabled' if link.get('enabled') else 'disabled'}, "
            f"{link.get('commands_sent', 0)} commands, {link.get('telemetry_received', 0)} "
            f"telemetry, {link.get('crc_errors', 0)} CRC errors, rtt p99 {_cell(rtt.get('p99'))} ms"
        )
    acq = st.get("acquisition") or {}
    if acq:
        lines.append(
            f"EMG       {acq.get('samples', 0)} samples, {acq.get('overflow_samples', 0)} lost"
            + (f", error: {acq['error']}" if acq.get("error") else "")
        )
    rec = st.get("recorder") or {}
    if rec:
        lines.append(
            f"recording {rec.get('db_path') or 'none'}; {rec.get('written_chunks', 0)} chunks, "
            f"{rec.get('dropped', 0)} dropped, {rec.get('write_errors', 0)} write errors"
        )
    faults = st.get("faults") or []
    if faults:
        lines.append(f"faults    {len(faults)} recent, newest last:")
        for f in faults[-5:]:
            cleared = f.get("cleared_at")
            lines.append(
                f"  {_clock(f.get('wall_time'))}  {f.get('kind')}: {f.get('detail')}"
                + (f" (cleared {_clock(cleared)})" if cleared else "")
            )
    else:
        lines.append("faults    none")
    return "\n".join(lines)


# What each safety state means for the patient, in the clinician's words.
STATE_WORDS = {
    "NORMAL": "all inputs healthy",
    "DEGRADED": "an input is marginal, watched",
    "SAFE_STOP": "a fault was detected, torque is ramping to zero",
    "FAULT_LATCHED": "assistance OFF until a person clears the fault (exoctl fault clear)",
    "ESTOP": "e-stop, assistance OFF until a person clears it (exoctl fault clear)",
}
_OFF_STATES = ("SAFE_STOP", "FAULT_LATCHED", "ESTOP")


def _clock(epoch: float | None) -> str:
    if epoch is None:
        return "--:--:--"
    return dt.datetime.fromtimestamp(epoch).strftime("%H:%M:%S")


def _gains_text(gains: Any) -> str:
    if isinstance(gains, dict):
        return ", ".join(f"{j} {fmt_num(float(g))}" for j, g in gains.items())
    return "-" if gains is None else f"{fmt_num(float(gains))} on every joint"


def assist_message(r: dict[str, Any]) -> str:
    """What an ``assist set`` does to the patient's assistance, given the daemon's answer."""
    level = _gains_text(r.get("assist_gain"))
    state = r.get("safety_state")
    if state in _OFF_STATES:
        why = "the e-stop is latched" if state == "ESTOP" else "a fault is latched"
        if state == "SAFE_STOP":
            why = "a fault was just detected"
        return (
            f"assist level set to {level}, but assistance stays OFF: {why}. After "
            "`exoctl fault clear` it resumes at this level, ramped in."
        )
    if r.get("session") is False:
        return (
            f"assist level set to {level}, but no session is running, so nothing is assisted; "
            "`exoctl session start --assist ...` sets the level of the next session."
        )
    return f"assistance changes to {level}, ramped (no step in torque)."


def clear_message(r: dict[str, Any]) -> str:
    gains = r.get("assist_gain")
    if gains:
        ramp = r.get("ramp_in_s")
        over = f" over {fmt_num(float(ramp))} s" if ramp is not None else ""
        return f"fault cleared: assistance resumes at {_gains_text(gains)}, ramping in{over}."
    return "fault cleared; no session is running (assistance starts with `exoctl session start`)."


@_guard
def cmd_status(args: argparse.Namespace) -> int:
    if args.watch is None:
        return _emit(args, _rpc(args, "status"), format_status)
    from exoctl.service.client import Client

    svc = _service_config(args)
    with Client(svc.socket_path) as c:
        while True:
            st = c.call("status")
            if args.json:
                cli_policy.emit_json(st)
            else:
                print("\x1b[2J\x1b[H" + time.strftime("%H:%M:%S  exoctl status"), flush=False)
                print(format_status(st), flush=True)
            time.sleep(args.watch)


@_guard
def cmd_estop(args: argparse.Namespace) -> int:
    from exoctl.service.client import estop

    # The e-stop socket: no other client can hold it up (see exoctl.service.client.estop).
    r = estop(_service_config(args).socket_path, timeout_s=getattr(args, "timeout", 5.0))
    return _emit(
        args,
        r,
        lambda r: (
            "EMERGENCY STOP: torque is zero now and assistance stays OFF (latched).\n"
            "Check the patient; `exoctl fault clear` then resumes assistance, ramped in."
        ),
    )


@_guard
def cmd_fault_clear(args: argparse.Namespace) -> int:
    r = _rpc(args, "fault.clear")
    return _emit(args, r, lambda r: clear_message(r or {}))


@_guard
def cmd_assist_set(args: argparse.Namespace) -> int:
    try:
        gains = parse_assist(args.values)
    except argparse.ArgumentTypeError as e:
        return _fail(args, str(e), EXIT_USAGE)
    r = _rpc(args, "assist.set", {"gains": gains})
    return _emit(args, r, lambda r: assist_message(r or {}))


@_guard
def cmd_model_load(args: argparse.Namespace) -> int:
    if not args.model and not args.calibration:
        return _fail(args, "give --model and/or --calibration", EXIT_USAGE)
    params = {
        "model": str(Path(args.model).resolve()) if args.model else None,
        "calibration": str(Path(args.calibration).resolve()) if args.calibration else None,
    }
    r = _rpc(args, "model.load", params)
    return _emit(args, r, lambda r: "loaded\n" + format_kv(r or {}))


# ---------------------------------------------------------------------------------------
# recordings (read directly from the data directory)
@_guard
def cmd_patients_list(args: argparse.Namespace) -> int:
    from exoctl.service.recorder import list_patients

    rows = list_patients(_service_config(args).data_dir)
    return _emit(args, rows, lambda r: format_table(r, ["patient", "sessions", "last_session"]))


@_guard
def cmd_sessions_list(args: argparse.Namespace) -> int:
    from exoctl.service.recorder import list_sessions

    svc = _service_config(args)
    try:
        rows = list_sessions(svc.data_dir, args.patient)
    except PermissionError:
        # The data directory is the service user's; the daemon can list it for us.
        from exoctl.service import client as C

        try:
            rows = _rpc(args, "sessions.list", {"patient": args.patient})
        except (C.DaemonNotRunning, C.PermissionDenied):
            raise PermissionError(str(svc.data_dir)) from None

    def human(rows: list[dict[str, Any]]) -> str:
        shown = [
            {
                **r,
                "start": _when(r.get("start_time")),
                "duration_s": None if r.get("duration_s") is None else round(r["duration_s"], 1),
            }
            for r in rows
        ]
        return format_table(
            shown, ["id", "patient", "protocol", "start", "duration_s", "end_reason", "events"]
        )

    return _emit(args, rows, human)


@_guard
def cmd_sessions_show(args: argparse.Namespace) -> int:
    import numpy as np

    from exoctl.service import recorder as R

    db = R.find_session(_service_config(args).data_dir, args.id)
    with R.open_session_db(db) as conn:
        info = R.session_info(conn, args.id)
        streams = []
        for name in R.stream_names(conn):
            n, t0, chunks = conn.execute(
                "SELECT sum(n), min(t0), count(*) FROM chunks WHERE stream=?", (name,)
            ).fetchone()
            last_t0, last_t = conn.execute(
                "SELECT t0, t FROM chunks WHERE stream=? ORDER BY t0 DESC, id DESC LIMIT 1",
                (name,),
            ).fetchone()
            t1 = float(np.frombuffer(last_t, "<f8")[-1]) if last_t else last_t0
            streams.append({"stream": name, "samples": n, "chunks": chunks, "span_s": t1 - t0})
        events = R.read_events(conn)
    data = {"session": info, "streams": streams, "events": events, "path": str(db)}

    def human(d: dict[str, Any]) -> str:
        s = dict(d["session"])
        s.pop("config", None)
        s["start_time"] = _when(s["start_time"])
        s["stop_time"] = _when(s["stop_time"])
        ev = [
            {
                "t_s": round(e["t"] - d["session"]["start_mono"], 3),
                "kind": e["kind"],
                "detail": e["detail"],
            }
            for e in d["events"]
        ]
        return "\n\n".join(
            [
                format_kv(s),
                format_table(d["streams"], ["stream", "samples", "chunks", "span_s"]),
                format_table(ev, ["t_s", "kind", "detail"]),
                f"file: {d['path']}",
            ]
        )

    return _emit(args, data, human)


@_guard
def cmd_sessions_export(args: argparse.Namespace) -> int:
    from exoctl.service import recorder as R
    from exoctl.service.export import export_session

    db = R.find_session(_service_config(args).data_dir, args.id)
    out = args.out or (f"{args.id}.npz" if args.format == "npz" else args.id)
    files = export_session(db, args.id, args.format, out, exact=args.exact, raw_emg=args.raw_emg)
    note = "" if args.raw_emg else "raw EMG not included (it stays in the recording): --raw-emg"
    return _emit(
        args,
        {"files": [str(f) for f in files]},
        lambda d: "\n".join(["exported:", *d["files"], *([note] if note else [])]),
    )


@_guard
def cmd_sessions_report(args: argparse.Namespace) -> int:
    from exoctl.service import recorder as R
    from exoctl.service.report import write_report

    db = R.find_session(_service_config(args).data_dir, args.id)
    out = write_report(db, args.id, args.out)
    return _emit(args, {"report": str(out)}, lambda d: f"report written: {d['report']}")


# ---------------------------------------------------------------------------------------
def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the daemon/session commands to ``exoctl``'s sub-command parser."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")

    def add(sp: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str) -> Any:
        p = sp.add_parser(name, parents=[common], help=help, description=help)
        p.set_defaults(func=fn)
        return p

    add(subparsers, "daemon", cmd_daemon, "run the exoctl supervisor (foreground; for systemd)")

    session = subparsers.add_parser("session", help="start or stop a therapy session")
    ssp = session.add_subparsers(dest="session_cmd", required=True, metavar="{start,stop}")
    p = add(ssp, "start", cmd_session_start, "start a session (assistance ramps in)")
    p.add_argument("--patient", required=True, help="patient id (letters, digits, . _ -)")
    p.add_argument(
        "--assist",
        action="append",
        metavar="GAIN|JOINT=GAIN,...",
        help="assist gain in [0, 1] for all joints, or per joint (default: configuration)",
    )
    p.add_argument("--protocol", default=None, help="protocol name, recorded with the session")
    p = add(ssp, "stop", cmd_session_stop, "stop the session (assistance ramps out)")
    p.add_argument("--reason", default="stopped by clinician", help="recorded end reason")

    p = add(subparsers, "status", cmd_status, "daemon, device and session status")
    p.add_argument(
        "--watch",
        nargs="?",
        type=float,
        const=1.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 1) until Ctrl-C",
    )

    add(subparsers, "estop", cmd_estop, "emergency stop: remove assistance now, latch a fault")

    fault = subparsers.add_parser("fault", help="latched faults")
    fsp = fault.add_subparsers(dest="fault_cmd", required=True, metavar="{clear}")
    add(fsp, "clear", cmd_fault_clear, "clear a latched fault (after checking the patient)")

    assist = subparsers.add_parser("assist", help="assistance level")
    asp = assist.add_subparsers(dest="assist_cmd", required=True, metavar="{set}")
    p = add(asp, "set", cmd_assist_set, "change assist gains during a session (ramped)")
    p.add_argument("values", nargs="+", metavar="GAIN|JOINT=GAIN")

    model = subparsers.add_parser("model", help="torque model and calibration")
    msp = model.add_subparsers(dest="model_cmd", required=True, metavar="{load}")
    p = add(msp, "load", cmd_model_load, "load a model and/or calibration (between sessions)")
    p.add_argument("--model", help="ONNX torque model")
    p.add_argument("--calibration", help="calibration YAML")

    patients = subparsers.add_parser("patients", help="patients with recordings")
    psp = patients.add_subparsers(dest="patients_cmd", required=True, metavar="{list}")
    add(psp, "list", cmd_patients_list, "list patients and their session counts")

    sessions = subparsers.add_parser("sessions", help="recorded sessions")
    ssp = sessions.add_subparsers(
        dest="sessions_cmd", required=True, metavar="{list,show,export,report}"
    )
    p = add(ssp, "list", cmd_sessions_list, "list recorded sessions")
    p.add_argument("--patient", help="only this patient")
    p = add(ssp, "show", cmd_sessions_show, "one session: identity, streams, events")
    p.add_argument("id")
    p = add(
        ssp, "export", cmd_sessions_export,
        "export a session: Parquet or CSV (a directory, units in the schema or the headers), NPZ",
    )  # fmt: skip
    p.add_argument("id")
    p.add_argument(
        "--format", choices=["parquet", "csv", "npz"], default="parquet",
        help="parquet (default; needs the report extra), csv, npz",
    )  # fmt: skip
    p.add_argument(
        "--exact", action="store_true",
        help="every value as recorded (float64), about twice the size; default float32",
    )  # fmt: skip
    p.add_argument(
        "--raw-emg", action="store_true",
        help="include the raw EMG (2 kHz, every channel: about twice the size of the rest)",
    )  # fmt: skip
    p.add_argument("--out", help="output directory (parquet, csv) or file (npz); default: the id")
    p = add(ssp, "report", cmd_sessions_report, "HTML report for the clinician, with charts")
    p.add_argument("id")
    p.add_argument("--out", required=True, help="output file, .html")
