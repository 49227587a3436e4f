"""Commands that read the recordings directly from the data directory (they work with the
daemon stopped): ``patients list``, ``sessions list|show|export|report``."""

from __future__ import annotations

import argparse
from typing import Any

from exoctl.service.commands.common import emit, guarded, rpc_call, service_config
from exoctl.service.commands.text import format_kv, format_table, format_when


@guarded
def cmd_patients_list(args: argparse.Namespace) -> int:
    from exoctl.recordings.recorder import list_patients

    rows = list_patients(service_config(args).data_dir)
    return emit(args, rows, lambda r: format_table(r, ["patient", "sessions", "last_session"]))


@guarded
def cmd_sessions_list(args: argparse.Namespace) -> int:
    from exoctl.recordings.recorder import list_sessions

    svc = service_config(args)
    try:
        rows = list_sessions(svc.data_dir, args.patient)
    except PermissionError:
        # The data directory is the service user's; the daemon can list it for us.
        from exoctl.service import client as C

        try:
            rows = rpc_call(args, "sessions.list", {"patient": args.patient})
        except (C.DaemonNotRunning, C.PermissionDenied):
            raise PermissionError(str(svc.data_dir)) from None

    def human(rows: list[dict[str, Any]]) -> str:
        shown = [
            {
                **r,
                "start": format_when(r.get("start_time")),
                "duration_s": None if r.get("duration_s") is None else round(r["duration_s"], 1),
            }
            for r in rows
        ]
        return format_table(
            shown, ["id", "patient", "protocol", "start", "duration_s", "end_reason", "events"]
        )

    return emit(args, rows, human)


@guarded
def cmd_sessions_show(args: argparse.Namespace) -> int:
    import numpy as np

    from exoctl.recordings import recorder as R

    db = R.find_session(service_config(args).data_dir, args.id)
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
        s["start_time"] = format_when(s["start_time"])
        s["stop_time"] = format_when(s["stop_time"])
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

    return emit(args, data, human)


@guarded
def cmd_sessions_export(args: argparse.Namespace) -> int:
    from exoctl.recordings import recorder as R
    from exoctl.recordings.export import export_session

    db = R.find_session(service_config(args).data_dir, args.id)
    out = args.out or (f"{args.id}.npz" if args.format == "npz" else args.id)
    files = export_session(db, args.id, args.format, out, exact=args.exact, raw_emg=args.raw_emg)
    note = "" if args.raw_emg else "raw EMG not included (it stays in the recording): --raw-emg"
    return emit(
        args,
        {"files": [str(f) for f in files]},
        lambda d: "\n".join(["exported:", *d["files"], *([note] if note else [])]),
    )


@guarded
def cmd_sessions_report(args: argparse.Namespace) -> int:
    from exoctl.recordings import recorder as R
    from exoctl.recordings.report import write_report

    db = R.find_session(service_config(args).data_dir, args.id)
    out = write_report(db, args.id, args.out)
    return emit(args, {"report": str(out)}, lambda d: f"report written: {d['report']}")
