"""Readers for lab recordings: OpenSim Storage (.sto, .mot), CSV, XDF, gait-cycle .mat files.

Every reader returns a ``Table``: a time vector, named columns and a float64 data matrix, so the
dataset loader (exoctl.data.dataset) treats all formats alike. Readers do not resample, fill or
rescale: they report the file as it is (NaNs stay NaN, gaps stay gaps) so that ``exoctl data
check`` can show a person what is actually in the file.

Formats
- OpenSim Storage (.sto, .mot; versions 1-3 and the older SIMM/.mot header): header lines up
  to ``endheader`` (keys such as ``inDegrees=yes`` are kept in ``meta``), then one tab-separated
  line of column labels whose first is ``time``, then numeric rows. Read as real files come:
  labels and rows ending with a tab (CEINMS), cells padded with spaces, CRLF line ends, blank
  lines, empty or ``nan`` cells (NaN), and ``nRows``/``nColumns`` missing or wrong (a wrong
  count is a warning in ``Table.warnings``: the rows are what the file holds).
- CSV: first line holds the column names; delimiter ``,``, ``;`` or tab (sniffed); empty or
  ``nan`` cells become NaN; the time column is named (default ``time``).
- XDF (LabRecorder): one stream, chosen by name or type; channel labels from the stream's
  ``desc/channels/channel/label`` (``ch0``, ``ch1``, ... when absent); time stamps are pyxdf's
  synchronised, de-jittered LSL times in seconds.
- Gait-cycle MATLAB files (``read_mat_cycles``): a struct with ``all`` (points x columns x
  cycles) and ``colheaders``, every signal resampled to a fixed number of points per gait
  cycle and no time axis (e.g. 3dpredictsim's ``ExperimentalData.mat``). One cycle is read as
  a table whose time axis comes from a stride time the dataset description states.

Why one module of this length (~480 lines): one small reader per lab format, all returning
the same ``Table`` and sharing the cell parsing and timing summary; a format is found in one
place, and each reader reads top to bottom in one screen or two.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from exoctl.errors import DataError
from exoctl.regular_file import check_regular, open_regular

__all__ = [
    "ImportErrorWithPath",
    "Table",
    "read_csv",
    "read_mat_cycles",
    "read_sto",
    "read_table",
    "read_xdf",
    "timing_summary",
]


class ImportErrorWithPath(DataError):
    """A file that cannot be read as asked; the message names the file."""


MAX_LINE_CHARS = 1 << 20
"""Longest line read from a text recording (1 Mi characters; a row of 64 channels is ~1 KB).
Lines are read one at a time up to this bound, so memory follows the row count: a 160 MB file
of one line used to be read whole (4 GB peak) before its error."""
MAX_ABS_VALUE = 1e15
"""Largest magnitude accepted in a recording's cell. No lab quantity in seconds, volts, N m or
radians comes near it; beyond it squares and sums overflow (numpy warnings, infinite RMS) or
lose all precision. Infinite cells (``inf``, ``1e999``, 5,000-digit numbers) are refused too;
NaN stays a missing value."""


def _read_lines(path: Path) -> list[tuple[int, str]]:
    """(1-based line number, text without its line end) for every line of ``path``.

    Read line by line, at most MAX_LINE_CHARS per line (refused beyond, with file:line);
    undecodable bytes are replaced; ``\n``, ``\r\n`` and ``\r`` end lines alike.
    """
    out: list[tuple[int, str]] = []
    with open_regular(path, "a recording", ImportErrorWithPath) as raw:
        f = io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline=None)
        for no, line in enumerate(iter(lambda: f.readline(MAX_LINE_CHARS + 1), ""), 1):
            if len(line) > MAX_LINE_CHARS and not line.endswith("\n"):
                raise ImportErrorWithPath(
                    f"{path}:{no}: line longer than {MAX_LINE_CHARS} characters: not a table "
                    "row (is this the right file?)"
                )
            out.append((no, line.rstrip("\n")))
    return out


def _check_range(
    path: Path, data: np.ndarray, labels: Sequence[str], line_nos: Sequence[int] | None
) -> None:
    """Refuse an infinite or huge cell, naming the file, line (text files), data row (the
    sample, for binary files) and column."""
    with np.errstate(invalid="ignore"):
        bad = np.abs(data) > MAX_ABS_VALUE  # NaN compares False: a missing value, kept
    if not bad.any():
        return
    r, c = (int(i) for i in np.argwhere(bad)[0])
    v = float(data[r, c])
    what = "not finite" if not math.isfinite(v) else f"out of range (|x| > {MAX_ABS_VALUE:g})"
    where = f"{path}:{line_nos[r]}: data row {r + 1}" if line_nos else f"{path}: sample {r + 1}"
    raise ImportErrorWithPath(
        f"{where}, column {labels[c]!r}: value {v:.6g} is {what}"
        f" ({int(bad.sum())} such cell(s) in the file)"
    )


@dataclass(frozen=True)
class Table:
    path: Path
    columns: tuple[str, ...]
    t: np.ndarray  # (n,) seconds
    data: np.ndarray  # (n, c) float64, columns in ``columns`` order (time excluded)
    nominal_rate_hz: float | None = None  # what the file declares (XDF), if anything
    meta: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()  # e.g. a header count that disagrees with the rows

    def index(self, spec: str | int, *, what: str = "column") -> int:
        """Column index of a label (exact, then case-insensitive) or of a 0-based index."""
        if isinstance(spec, bool):
            raise ImportErrorWithPath(f"{self.path}: {what} {spec!r} is not a label or index")
        if isinstance(spec, int):
            if 0 <= spec < len(self.columns):
                return spec
            raise ImportErrorWithPath(
                f"{self.path}: {what} index {spec} out of range (0..{len(self.columns) - 1})"
            )
        if spec in self.columns:
            return self.columns.index(spec)
        folded = [c.casefold() for c in self.columns]
        if folded.count(spec.casefold()) == 1:
            return folded.index(spec.casefold())
        raise ImportErrorWithPath(
            f"{self.path}: {what} {spec!r} not found; columns there: {list(self.columns)}"
        )


def read_table(
    path: str | Path,
    fmt: str = "auto",
    *,
    time_column: str = "time",
    skip_rows: int = 0,
    stream: str | None = None,
    xdf_cache: dict[Path, Any] | None = None,
    variable: str | None = None,
    cycle: int | None = None,
    stride_s: float | None = None,
) -> Table:
    """Dispatch on ``fmt`` (``auto``: by extension)."""
    path = Path(path)
    if fmt == "auto":
        ext = path.suffix.lower()
        fmt = {
            ".sto": "sto",
            ".mot": "mot",
            ".csv": "csv",
            ".txt": "csv",
            ".xdf": "xdf",
            ".mat": "mat",
        }.get(ext, "")
        if path.name.lower().endswith((".xdf.gz", ".xdfz")):
            fmt = "xdf"
        if not fmt:
            raise ImportErrorWithPath(
                f"{path}: cannot tell the format from the extension {ext!r}; "
                "set format: sto, mot, csv, xdf or mat"
            )
    if not path.exists():
        raise ImportErrorWithPath(f"{path}: file not found")
    check_regular(path, "a recording", ImportErrorWithPath)
    if fmt in ("sto", "mot"):
        return read_sto(path)
    if fmt == "csv":
        return read_csv(path, time_column=time_column, skip_rows=skip_rows)
    if fmt == "xdf":
        if stream is None:
            raise ImportErrorWithPath(f"{path}: an XDF file needs `stream:` (name or type)")
        return _in_range(read_xdf(path, stream, cache=xdf_cache))
    if fmt == "mat":
        if variable is None or cycle is None or stride_s is None:
            raise ImportErrorWithPath(
                f"{path}: a gait-cycle .mat file needs `variable:`, `cycle:` and `stride_s:`"
            )
        return _in_range(read_mat_cycles(path, variable, cycle, stride_s, cache=xdf_cache))
    raise ImportErrorWithPath(f"{path}: unknown format {fmt!r}; known: sto, mot, csv, xdf, mat")


def _in_range(tab: Table) -> Table:
    """A binary recording's table, once its time stamps and samples are checked in range."""
    _check_range(tab.path, tab.t[:, None], ("time",), None)
    _check_range(tab.path, tab.data, tab.columns, None)
    return tab


_NAN_TOKENS = frozenset({"nan", "-nan", "+nan", "na", "n/a", "-nan(ind)", "1.#qnan", "-1.#ind"})


def _cells(line: str, n: int = 0) -> list[str]:
    """A Storage line's cells: tab-separated when it has a tab, else whitespace-separated.

    Real files end the header and every row with a tab (CEINMS, some OpenSim exports) and pad
    cells with spaces: every cell is stripped, and trailing empty cells beyond the first ``n``
    are dropped (an empty cell within the ``n`` columns is a missing value).
    """
    parts = line.split("\t") if "\t" in line else line.split()
    parts = [p.strip() for p in parts]
    while len(parts) > n and not parts[-1]:
        parts.pop()
    return parts


def _cell_value(cell: str) -> float:
    if not cell or cell.lower() in _NAN_TOKENS:
        return math.nan
    return float(cell)


def _parse_numbers(path: Path, lines: list[tuple[int, str]], n_cols: int) -> np.ndarray:
    """Rows of numbers; blank lines skipped, empty or ``nan`` cells NaN, ragged rows refused."""
    body = [ln.rstrip(" \t") for _, ln in lines if ln.strip()]
    if body:
        try:  # fast path; the slow one below only runs to say what is wrong, or for blanks
            arr = np.loadtxt(body, dtype=np.float64, ndmin=2)
            if arr.shape[1] == n_cols:
                return arr
        except ValueError:
            pass
    rows = []
    for no, line in lines:
        if not line.strip():
            continue
        parts = _cells(line, n_cols)
        if len(parts) != n_cols:
            raise ImportErrorWithPath(
                f"{path}:{no}: {len(parts)} values, expected {n_cols} (one per column)"
            )
        try:
            rows.append([_cell_value(p) for p in parts])
        except ValueError:
            raise ImportErrorWithPath(
                f"{path}:{no}: not a number among {[p[:20] for p in parts[:6]]}..."
            ) from None
    if not rows:
        raise ImportErrorWithPath(f"{path}: no data rows")
    return np.array(rows, dtype=np.float64)


def _header_count(meta: dict[str, Any], *keys: str) -> int | None:
    for k in keys:
        for mk, v in meta.items():
            if mk.lower() == k.lower():
                try:
                    return int(str(v).split()[0])
                except (ValueError, IndexError):
                    return None
    return None


def read_sto(path: str | Path) -> Table:
    """OpenSim Storage file (.sto / .mot) as real files come: see the module docstring.

    A header count (``nRows``/``nColumns``, or the SIMM ``datarows``/``datacolumns``) that
    disagrees with the rows is not an error (the rows are what the file holds) but a warning
    in ``Table.warnings``; a missing count is nothing to warn about.
    """
    path = Path(path)
    try:
        numbered = _read_lines(path)
    except OSError as e:
        raise ImportErrorWithPath(f"{path}: cannot read: {e.strerror}") from None
    lines = [ln for _, ln in numbered]
    end = next((i for i, ln in enumerate(lines) if ln.strip().lower() == "endheader"), None)
    if end is None:
        raise ImportErrorWithPath(f"{path}: not an OpenSim Storage file (no 'endheader' line)")
    meta: dict[str, Any] = {}
    for ln in lines[:end]:
        if "=" in ln:
            k, _, v = ln.partition("=")
            meta[k.strip()] = v.strip()
        elif ln.strip().lower().startswith(("datarows", "datacolumns")):
            k, _, v = ln.strip().partition(" ")
            meta[k] = v.strip()
        elif ln.strip() and "name" not in meta:
            meta["name"] = ln.strip()
    label_idx = next((i for i in range(end + 1, len(lines)) if lines[i].strip()), None)
    if label_idx is None:
        raise ImportErrorWithPath(f"{path}: no column labels after 'endheader'")
    labels = _cells(lines[label_idx])
    if not labels or labels[0].lower() != "time":
        raise ImportErrorWithPath(
            f"{path}: the first column after 'endheader' must be 'time', got {labels[:3]}"
        )
    empty = [i for i, c in enumerate(labels) if not c]
    if empty:
        raise ImportErrorWithPath(
            f"{path}:{label_idx + 1}: column label {empty[0]} is empty (labels {labels[:6]}...)"
        )
    rows = numbered[label_idx + 1 :]
    del lines
    data = _parse_numbers(path, rows, len(labels))
    _check_range(path, data, labels, [no for no, ln in rows if ln.strip()])
    del rows, numbered
    if "inDegrees" in meta:
        meta["inDegrees"] = meta["inDegrees"].lower() in ("yes", "true", "1")
    warnings = []
    n_rows = _header_count(meta, "nRows", "datarows")
    if n_rows is not None and n_rows != data.shape[0]:
        warnings.append(
            f"{path}: header says nRows={n_rows}, the file has {data.shape[0]} data rows "
            "(the rows are used)"
        )
    n_cols = _header_count(meta, "nColumns", "datacolumns")
    if n_cols is not None and n_cols != len(labels):
        warnings.append(
            f"{path}: header says nColumns={n_cols}, the file has {len(labels)} columns "
            "(time included; the labels are used)"
        )
    return Table(
        path,
        tuple(labels[1:]),
        data[:, 0].copy(),
        np.ascontiguousarray(data[:, 1:]),
        None,
        meta,
        tuple(warnings),
    )


def read_csv(path: str | Path, *, time_column: str = "time", skip_rows: int = 0) -> Table:
    """CSV with a header row and a time column (seconds).

    ``skip_rows``: lines after the header to ignore (e.g. a units row in amplifier exports).
    """
    path = Path(path)
    try:
        numbered = [
            (no, ln)
            for no, ln in _read_lines(path)
            if ln.strip() and not ln.lstrip().startswith("#")
        ]
    except OSError as e:
        raise ImportErrorWithPath(f"{path}: cannot read: {e.strerror}") from None
    lines = [ln for _, ln in numbered]
    if len(lines) < 2:
        raise ImportErrorWithPath(f"{path}: needs a header row and at least one data row")
    try:
        dialect = csv.Sniffer().sniff(lines[0], delimiters=",;\t")
        delim = dialect.delimiter
    except csv.Error:
        delim = ","
    header = [h.strip() for h in next(csv.reader(io.StringIO(lines[0]), delimiter=delim))]
    folded = [h.casefold() for h in header]
    if time_column.casefold() not in folded:
        raise ImportErrorWithPath(
            f"{path}: time column {time_column!r} not found; columns there: {header}"
        )
    ti = folded.index(time_column.casefold())
    numbered = numbered[1 + skip_rows :]
    lines = [ln for _, ln in numbered]
    if not lines:
        raise ImportErrorWithPath(f"{path}: no data rows after the header and {skip_rows} skipped")
    try:  # fast path; the csv module below handles empty cells and reports errors
        data = np.loadtxt(lines, delimiter=delim, ndmin=2)
        if data.shape[1] != len(header):
            raise ValueError("column count")
    except ValueError:
        data = _csv_rows(path, numbered, delim, len(header))
    del lines
    _check_range(path, data, header, [no for no, _ in numbered])
    keep = [j for j in range(len(header)) if j != ti]
    return Table(
        path,
        tuple(header[j] for j in keep),
        data[:, ti].copy(),
        np.ascontiguousarray(data[:, keep]),
        None,
        {"delimiter": delim},
    )


def _csv_rows(path: Path, lines: list[tuple[int, str]], delim: str, n_cols: int) -> np.ndarray:
    rows = []
    for i, (no, line) in enumerate(lines):
        row = next(csv.reader([line], delimiter=delim), [])
        if len(row) != n_cols:
            raise ImportErrorWithPath(
                f"{path}:{no}: data row {i + 1}: {len(row)} cells, expected {n_cols}"
            )
        try:
            rows.append([float(c) if c.strip() else math.nan for c in row])
        except ValueError:
            raise ImportErrorWithPath(
                f"{path}:{no}: data row {i + 1}: not a number in {[c[:20] for c in row[:6]]}"
            ) from None
    return np.array(rows, dtype=np.float64)


def read_xdf(path: str | Path, stream: str, *, cache: dict[Path, Any] | None = None) -> Table:
    """One stream of an XDF file (LabRecorder), chosen by its name or, failing that, its type."""
    import pyxdf

    path = Path(path)
    key = path.resolve()
    if cache is not None and key in cache:
        streams = cache[key]
    else:
        try:
            streams, _header = pyxdf.load_xdf(str(path))
        except Exception as e:  # pyxdf raises bare Exception/IOError on bad files
            raise ImportErrorWithPath(f"{path}: cannot read as XDF: {e}") from None
        if cache is not None:
            cache[key] = streams

    def info(s: dict[str, Any], k: str) -> str:
        v = s["info"].get(k)
        return str(v[0]) if isinstance(v, list) and v else ""

    by_name = [s for s in streams if info(s, "name") == stream]
    chosen = by_name or [s for s in streams if info(s, "type") == stream]
    if len(chosen) != 1:
        listing = [f"{info(s, 'name')} (type {info(s, 'type')})" for s in streams]
        what = "no stream" if not chosen else f"{len(chosen)} streams"
        raise ImportErrorWithPath(f"{path}: {what} named or typed {stream!r}; streams: {listing}")
    s = chosen[0]
    series = s["time_series"]
    if isinstance(series, list):
        raise ImportErrorWithPath(f"{path}: stream {stream!r} holds strings, not numbers")
    data = np.asarray(series, dtype=np.float64)
    if data.ndim == 1:
        data = data[:, None]
    n_ch = int(info(s, "channel_count") or data.shape[1])
    labels: list[str] = []
    chans: list[dict[str, Any]] = []
    try:
        chans = list(s["info"]["desc"][0]["channels"][0]["channel"])
        labels = [str(c.get("label", [""])[0]) for c in chans]
    except (KeyError, IndexError, TypeError, AttributeError):
        chans, labels = [], []
    if len(labels) != n_ch or any(not lab for lab in labels):
        labels = [f"ch{i}" for i in range(n_ch)]
    t = np.asarray(s["time_stamps"], dtype=np.float64)
    if data.shape[0] == 0:
        data = np.zeros((0, n_ch))
    srate = float(info(s, "nominal_srate") or 0.0)
    meta = {"stream_name": info(s, "name"), "stream_type": info(s, "type")}
    units = {str(c.get("unit", [""])[0]) for c in chans if isinstance(c, dict)}
    if len(units) == 1 and "" not in units:
        meta["unit"] = units.pop()
    return Table(path, tuple(labels), t, np.ascontiguousarray(data), srate or None, meta)


def read_mat_cycles(
    path: str | Path,
    variable: str,
    cycle: int,
    stride_s: float,
    *,
    cache: dict[Path, Any] | None = None,
) -> Table:
    """One gait cycle of a cycle-normalised MATLAB struct, on a stated stride time.

    ``variable`` is a dotted path from the file's top-level variable to a struct holding
    ``all`` (points, columns, cycles) and ``colheaders`` (e.g.
    ``ExperimentalData.EMG.subject1``); ``cycle`` is the 0-based index on the last axis. The
    P points of a cycle are taken as equally spaced over one stride starting at heel strike:
    t = i * stride_s / P (the next cycle would start at stride_s). NaN stays NaN.
    """
    import scipy.io

    path = Path(path)
    key = path.resolve()
    if cache is not None and key in cache:
        top = cache[key]
    else:
        try:
            top = scipy.io.loadmat(str(path), squeeze_me=True, struct_as_record=False)
        except Exception as e:  # scipy raises ValueError, MatReadError, OSError...
            raise ImportErrorWithPath(f"{path}: cannot read as a MATLAB file: {e}") from None
        if cache is not None:
            cache[key] = top
    parts = variable.split(".")
    node: Any = top.get(parts[0])
    if node is None:
        names = sorted(k for k in top if not k.startswith("__"))
        raise ImportErrorWithPath(f"{path}: variable {parts[0]!r} not found; variables: {names}")
    for i, name in enumerate(parts[1:], start=1):
        fields = list(getattr(node, "_fieldnames", []))
        if name not in fields:
            raise ImportErrorWithPath(
                f"{path}: {'.'.join(parts[:i])} has no field {name!r}; fields: {fields}"
            )
        node = getattr(node, name)
    fields = list(getattr(node, "_fieldnames", []))
    if "all" not in fields or "colheaders" not in fields:
        raise ImportErrorWithPath(
            f"{path}: {variable} must be a struct with 'all' (points x columns x cycles) and "
            f"'colheaders'; its fields: {fields}"
        )
    arr = np.asarray(node.all, dtype=np.float64)
    heads = [str(h) for h in np.atleast_1d(node.colheaders)]
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[1] != len(heads):
        raise ImportErrorWithPath(
            f"{path}: {variable}.all has shape {arr.shape}; expected (points, {len(heads)} "
            "columns, cycles)"
        )
    n_cycles = arr.shape[2]
    if isinstance(cycle, bool) or not 0 <= int(cycle) < n_cycles:
        raise ImportErrorWithPath(
            f"{path}: {variable}: cycle {cycle} out of range (0..{n_cycles - 1})"
        )
    if not (math.isfinite(stride_s) and stride_s > 0):
        raise ImportErrorWithPath(f"{path}: stride_s = {stride_s!r} must be a positive number")
    data = np.ascontiguousarray(arr[:, :, int(cycle)])
    points = data.shape[0]
    t = np.arange(points) * (float(stride_s) / points)
    meta = {"variable": variable, "cycle": int(cycle), "cycles": n_cycles, "stride_s": stride_s}
    return Table(path, tuple(heads), t, data, points / float(stride_s), meta)


@dataclass(frozen=True)
class Timing:
    n: int
    rate_hz: float
    start_s: float
    duration_s: float
    gaps: int  # intervals longer than 1.5 sample periods
    longest_gap_s: float
    non_increasing: int  # time steps <= 0


def timing_summary(t: np.ndarray) -> Timing:
    """Rate (from the median step), span, gaps and backwards steps of a time vector."""
    n = int(t.size)
    if n < 2:
        return Timing(n, math.nan, float(t[0]) if n else math.nan, 0.0, 0, 0.0, 0)
    dt = np.diff(t)
    pos = dt[dt > 0]
    med = float(np.median(pos)) if pos.size else math.nan
    big = dt > 1.5 * med if math.isfinite(med) else np.zeros_like(dt, dtype=bool)
    # mean of the ordinary steps: unbiased under time-stamp jitter, unlike the median
    normal = (dt > 0) & ~big
    rate = float(np.count_nonzero(normal) / dt[normal].sum()) if normal.any() else math.nan
    return Timing(
        n=n,
        rate_hz=rate,
        start_s=float(t[0]),
        duration_s=float(t[-1] - t[0]),
        gaps=int(np.count_nonzero(big)),
        longest_gap_s=float(dt[big].max() - med) if big.any() else 0.0,
        non_increasing=int(np.count_nonzero(dt <= 0)),
    )
