"""Exports of a recorded session: Parquet (the default), CSV, NPZ.

Parquet, not HDF5: a columnar file that pandas, polars, R (arrow), MATLAB (``parquetread``),
DuckDB and Spark read without a plug-in; per-column compression (zstd) with encodings made for
numeric series (byte-stream-split for floats); and a typed schema in the file itself, where
each field carries its unit and the file carries the session's identity. HDF5 would give one
file with groups, but its readers need the C library, its compression filters beyond gzip are
plug-ins a reader may lack, and its units are a convention of attributes, not part of a schema.

Layout of a Parquet or CSV export: a directory with ``session.json`` (identity,
configuration, model and calibration hashes, which streams were exported), ``events.*`` and
one file per stream; the raw EMG only when asked for (``raw_emg``, see export_session). Every
stream file has ``t_session`` (seconds since the session started) and one column per
channel; a categorical channel (the safety state) is exported as its names, never as a code.

Precision: times are float64 seconds, as recorded. Channel values are written as float32 (the
resolution of LSL streams, of the ONNX model's output and of the firmware's telemetry; 24 bits
of mantissa, a relative error below 6e-8) unless ``exact=True``, which keeps every value as
recorded (float64), at about twice the size. CSV writes the shortest text that reads back to
the same value in that precision.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.recordings import store
from exoctl.recordings.store import RecorderError, StreamTable

FORMATS = ("parquet", "csv", "npz")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


RAW_EMG = "emg_raw"


def export_session(
    db: str | Path,
    session_id: str | None = None,
    fmt: str = "parquet",
    out: str | Path = ".",
    *,
    exact: bool = False,
    raw_emg: bool = False,
    streams: list[str] | None = None,
) -> list[Path]:
    """Export a recording; returns the files written.

    ``parquet`` and ``csv``: ``out`` is a directory (created). ``npz``: ``out`` is a file
    holding ``<stream>`` and ``<stream>__t`` arrays plus ``session_json`` and
    ``events_json``. Every stream is exported except the raw EMG, unless ``raw_emg``: at 2 kHz
    on 16 channels it is two thirds of a session's data and is needed only to reprocess the
    signal chain (it stays in the recording; ``session.json`` lists what was left out).
    ``streams`` names the streams to export instead.
    """
    if fmt not in FORMATS:
        raise RecorderError(f"unknown export format {fmt!r}: use {', '.join(FORMATS)}")
    if fmt == "parquet":
        _require_pyarrow()
    out = Path(out)
    with store.open_session_db(db) as conn:
        info = store.session_info(conn, session_id)
        events = store.read_events(conn)
        names = store.stream_names(conn)
        if streams is not None:
            unknown = sorted(set(streams) - set(names))
            if unknown:
                raise RecorderError(f"no stream {unknown} in this session; it has {names}")
            chosen = [s for s in names if s in streams]
        else:
            chosen = [s for s in names if raw_emg or s != RAW_EMG]
        tables = [store.read_table(conn, s) for s in chosen]
    info["exported_streams"] = chosen
    info["not_exported"] = {
        s: "raw EMG: export with --raw-emg" if s == RAW_EMG else "not requested"
        for s in names
        if s not in chosen
    }
    if fmt == "npz":
        return [_npz(info, events, tables, out)]
    out.mkdir(parents=True, exist_ok=True)
    p = out / "session.json"
    p.write_text(json.dumps(info, indent=2, default=str))
    written = [p]
    if fmt == "parquet":
        written.append(_parquet_events(info, events, out / "events.parquet"))
        for tab in tables:
            written.append(_parquet_stream(info, tab, out / f"{_file(tab.name)}.parquet", exact))
    else:
        written.append(_csv_events(info, events, out / "events.csv"))
        for tab in tables:
            written.append(_csv_stream(info, tab, out / f"{_file(tab.name)}.csv", exact))
    return written


def _file(stream: str) -> str:
    return _SAFE.sub("_", stream).lstrip(".") or "stream"


def _require_pyarrow() -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise RecorderError(
            "Parquet export needs pyarrow: pip install 'exoctl[report]' (or use --format csv)"
        ) from None


def _values(col: store.Column, exact: bool) -> np.ndarray:
    v = np.asarray(col.values)
    if v.dtype.kind == "f" and not exact:
        return v.astype(np.float32)
    return v


def _wall(info: dict[str, Any], t: float) -> str:
    epoch = info["start_time"] + (t - info["start_mono"])
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).isoformat(timespec="milliseconds")


def _event_rows(info: dict[str, Any], events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    from exoctl.recordings.events import describe

    return [
        {
            "t": e["t"],
            "t_session": e["t"] - info["start_mono"],
            "wall_time_utc": _wall(info, e["t"]),
            "kind": e["kind"],
            "summary": describe(e).text,
            "detail_json": json.dumps(e["detail"]) if e["detail"] is not None else "",
        }
        for e in events
    ]


# ------------------------------------------------------------------------------- parquet
def _parquet_stream(info: dict[str, Any], tab: StreamTable, path: Path, exact: bool) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    fields = [pa.field("t_session", pa.float64(), False, {"unit": "s"})]
    arrays: list[Any] = [pa.array(tab.t - info["start_mono"])]
    for c in tab.columns:
        meta = {"unit": c.unit or ""}
        if c.levels is not None:
            codes = np.asarray(c.values).astype(np.int64)
            if codes.size and (codes.min() < 0 or codes.max() >= len(c.levels)):
                raise RecorderError(
                    f"{tab.name}.{c.name}: a code outside its {len(c.levels)} names"
                )
            arr = pa.DictionaryArray.from_arrays(
                pa.array(codes.astype(np.int8)), pa.array(list(c.levels))
            )
            meta = {"levels": json.dumps(list(c.levels))}
        else:
            arr = pa.array(_values(c, exact))
        fields.append(pa.field(c.name, arr.type, True, meta))
        arrays.append(arr)
    schema = pa.schema(fields, metadata=_file_meta(info, tab.name, tab.description))
    table = pa.Table.from_arrays(arrays, schema=schema)
    floats = [f.name for f in schema if pa.types.is_floating(f.type)]
    pq.write_table(
        table,
        path,
        compression="zstd",
        compression_level=9,
        use_dictionary=[f.name for f in schema if pa.types.is_dictionary(f.type)],
        use_byte_stream_split=floats,
        row_group_size=1 << 20,
    )
    return path


def _parquet_events(info: dict[str, Any], events: list[dict[str, Any]], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = _event_rows(info, events)
    units = {"t": "s (controller clock)", "t_session": "s", "wall_time_utc": "ISO 8601, UTC"}
    fields = [
        pa.field("t", pa.float64(), False, {"unit": units["t"]}),
        pa.field("t_session", pa.float64(), False, {"unit": units["t_session"]}),
        pa.field("wall_time_utc", pa.string(), False, {"unit": units["wall_time_utc"]}),
        pa.field("kind", pa.string(), False),
        pa.field("summary", pa.string(), False, {"description": "what happened, in words"}),
        pa.field("detail_json", pa.string(), False, {"description": "as recorded, JSON"}),
    ]
    schema = pa.schema(fields, metadata=_file_meta(info, "events", "session events"))
    cols = {f.name: [r[f.name] for r in rows] for f in fields}
    pq.write_table(pa.table(cols, schema=schema), path, compression="zstd")
    return path


def _file_meta(info: dict[str, Any], stream: str, description: str | None) -> dict[str, str]:
    return {
        "exoctl.stream": stream,
        "exoctl.description": description or "",
        "exoctl.session_id": info["id"],
        "exoctl.patient": info["patient"],
        "exoctl.start_time_utc": _wall(info, info["start_mono"]),
        "exoctl.start_mono": repr(info["start_mono"]),
        "exoctl.time": "t_session = controller clock (CLOCK_MONOTONIC) - exoctl.start_mono",
        "exoctl.software_version": str(info["software_version"]),
        "exoctl.schema_version": str(store.SCHEMA_VERSION),
    }


# ----------------------------------------------------------------------------------- csv
def _header(name: str, unit: str | None) -> str:
    return f"{name} [{unit}]" if unit else name


def _text(v: np.ndarray) -> np.ndarray:
    """Shortest round-trip text of every value (numpy's Dragon4, per dtype)."""
    return v.astype(str) if v.dtype.kind == "f" else v.astype(np.int64).astype(str)


def _csv_stream(info: dict[str, Any], tab: StreamTable, path: Path, exact: bool) -> Path:
    head = ["t [s]", "t_session [s]"]
    cols: list[np.ndarray] = [np.asarray(tab.t), tab.t - info["start_mono"]]
    for c in tab.columns:
        head.append(_header(c.name, None if c.levels else c.unit))
        cols.append(c.names().astype(str) if c.levels else _values(c, exact))
    try:
        import pyarrow as pa
        import pyarrow.csv as pcsv
    except ImportError:  # CSV works without the report extra, about eight times slower
        _write_csv(path, head, [c if c.dtype.kind == "U" else _text(c) for c in cols])
        return path
    table = pa.table({f"c{i}": pa.array(c) for i, c in enumerate(cols)})
    with path.open("w", newline="") as f:
        f.write(",".join(_quote(h) for h in head) + "\n")
    with path.open("ab") as f:  # Arrow's writer prints the shortest round-trip text
        pcsv.write_csv(table, f, pcsv.WriteOptions(include_header=False, quoting_style="needed"))
    return path


def _csv_events(info: dict[str, Any], events: list[dict[str, Any]], path: Path) -> Path:
    import csv

    rows = _event_rows(info, events)
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t [s]", "t_session [s]", "wall_time_utc", "kind", "summary", "detail"])
        for r in rows:
            w.writerow(
                [repr(r["t"]), repr(r["t_session"]), r["wall_time_utc"], r["kind"],
                 r["summary"], r["detail_json"]]
            )  # fmt: skip
    return path


def _write_csv(path: Path, head: list[str], cols: list[np.ndarray], block: int = 20000) -> None:
    """Columns of text joined block by block."""
    n = cols[0].shape[0]
    with path.open("w", newline="") as f:
        f.write(",".join(_quote(h) for h in head) + "\n")
        for a in range(0, n, block):
            rows = zip(*(c[a : a + block].tolist() for c in cols), strict=True)
            f.write("\n".join(",".join(r) for r in rows))
            f.write("\n")


def _quote(s: str) -> str:
    return '"' + s.replace('"', '""') + '"' if any(ch in s for ch in ',"\n') else s


# ----------------------------------------------------------------------------------- npz
def _npz(
    info: dict[str, Any], events: list[dict[str, Any]], tables: list[StreamTable], out: Path
) -> Path:
    if out.suffix != ".npz":
        out = out.with_suffix(".npz") if out.suffix else out / f"{info['id']}.npz"
    out.parent.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, Any] = {
        "session_json": np.array(json.dumps(info, default=str)),
        "events_json": np.array(json.dumps(events, default=str)),
    }
    for tab in tables:
        cols = [c for c in tab.columns if c.levels is None]
        if cols:
            arrays[tab.name] = np.stack([np.asarray(c.values) for c in cols], axis=1)
        for c in tab.columns:
            if c.levels is not None:
                arrays[f"{tab.name}__{c.name}"] = c.names().astype(str)
        arrays[f"{tab.name}__t"] = tab.t
        arrays[f"{tab.name}__columns"] = np.array([c.name for c in cols])
        arrays[f"{tab.name}__units"] = np.array([c.unit or "" for c in cols])
    np.savez_compressed(out, **arrays)
    return out
