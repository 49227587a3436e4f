"""Writers for the lab formats, and export of a recording as a dataset a lab would hand over.

Why this exists: the simulator's recordings must go through exactly the path a lab's data goes
through (files on disk, a dataset description, ``exoctl data check``, ``exoctl calibrate``), so
the export deliberately looks like lab data rather than like our internal arrays:

- EMG in microvolts with amplifier-style column labels (``EMG01``...), mapped to muscles by the
  description; at the EMG rate (e.g. 2 kHz).
- joint moments as OpenSim inverse dynamics names them (``hip_flexion_l_moment``,
  ``knee_angle_l_moment``) and joint angles as OpenSim inverse kinematics does (``hip_flexion_l``,
  ``knee_angle_l``, in degrees for .sto/.mot), at a lower rate (100 Hz) and starting a little
  later than the EMG. OpenSim's knee angle is negative in flexion, so the knee columns are
  negated here and the description says ``sign: -1`` for them: the reader must undo it.
- CSV: moments in N m/kg (the description gives ``units: Nm/kg`` and the body mass), angles in
  rad. XDF: one file with an EMG stream and a kinematics/kinetics stream, LSL time stamps offset
  by an arbitrary clock value, as LabRecorder writes them.

``write_xdf`` is a small, complete XDF 1.0 writer (file header, stream headers, sample chunks,
clock offsets, stream footers) that ``pyxdf.load_xdf`` reads.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from exoctl.config.yamlfile import dump_yaml, read_yaml_mapping

from .dataset import DatasetError

__all__ = [
    "XdfStream",
    "export_recording",
    "write_csv",
    "write_sto",
    "write_xdf",
]


def write_sto(
    path: str | Path,
    t: np.ndarray,
    data: np.ndarray,
    columns: Sequence[str],
    *,
    name: str = "exoctl",
    in_degrees: bool = False,
) -> Path:
    """OpenSim Storage, version 1 (what OpenSim 3/4 write for .sto and .mot)."""
    path = Path(path)
    data = np.asarray(data, dtype=np.float64).reshape(len(t), -1)
    if data.shape[1] != len(columns):
        raise ValueError(f"{len(columns)} column names for {data.shape[1]} columns")
    header = (
        f"{name}\nversion=1\nnRows={len(t)}\nnColumns={len(columns) + 1}\n"
        f"inDegrees={'yes' if in_degrees else 'no'}\nendheader\n"
        + "\t".join(["time", *columns])
        + "\n"
    )
    block = np.column_stack([np.asarray(t, dtype=np.float64), data])
    with path.open("w") as f:
        f.write(header)
        np.savetxt(f, block, fmt="%.9g", delimiter="\t")
    return path


def write_csv(
    path: str | Path,
    t: np.ndarray,
    data: np.ndarray,
    columns: Sequence[str],
    *,
    time_column: str = "time",
) -> Path:
    path = Path(path)
    data = np.asarray(data, dtype=np.float64).reshape(len(t), -1)
    if data.shape[1] != len(columns):
        raise ValueError(f"{len(columns)} column names for {data.shape[1]} columns")
    block = np.column_stack([np.asarray(t, dtype=np.float64), data])
    with path.open("w") as f:
        f.write(",".join([time_column, *columns]) + "\n")
        np.savetxt(f, block, fmt="%.9g", delimiter=",")
    return path


# ----------------------------------------------------------------------------------- XDF


@dataclass(frozen=True)
class XdfStream:
    name: str
    type: str
    t: np.ndarray  # (n,) LSL time stamps, s
    data: np.ndarray  # (n, ch)
    labels: Sequence[str]
    nominal_srate: float
    unit: str = ""
    channel_format: str = "float32"  # float32 or double64


_XDF_DTYPES = {"float32": "<f4", "double64": "<f8"}


def _varlen(n: int) -> bytes:
    if n < 256:
        return b"\x01" + struct.pack("<B", n)
    if n < 2**32:
        return b"\x04" + struct.pack("<I", n)
    return b"\x08" + struct.pack("<Q", n)


def _chunk(tag: int, content: bytes) -> bytes:
    return _varlen(len(content) + 2) + struct.pack("<H", tag) + content


def _stream_header_xml(s: XdfStream, uid: int) -> bytes:
    chans = "".join(
        f"<channel><label>{escape(str(lab))}</label><unit>{escape(s.unit)}</unit>"
        f"<type>{escape(s.type)}</type></channel>"
        for lab in s.labels
    )
    xml = (
        '<?xml version="1.0"?>\n<info>'
        f"<name>{escape(s.name)}</name><type>{escape(s.type)}</type>"
        f"<channel_count>{len(s.labels)}</channel_count>"
        f"<nominal_srate>{s.nominal_srate:.10g}</nominal_srate>"
        f"<channel_format>{s.channel_format}</channel_format>"
        f"<source_id>exoctl-export-{uid}</source_id><version>1.1</version>"
        f"<created_at>{float(s.t[0]) if len(s.t) else 0.0:.6f}</created_at>"
        f"<uid>exoctl-{uid:08x}</uid><session_id>default</session_id>"
        "<hostname>exoctl</hostname>"
        f"<desc><channels>{chans}</channels><acquisition><manufacturer>exoctl</manufacturer>"
        "</acquisition></desc></info>"
    )
    return xml.encode()


def write_xdf(path: str | Path, streams: Sequence[XdfStream], *, chunk_samples: int = 512) -> Path:
    """Write streams to an XDF 1.0 file, interleaving sample chunks by time as LabRecorder does."""
    path = Path(path)
    out = bytearray(b"XDF:")
    out += _chunk(1, b'<?xml version="1.0"?>\n<info><version>1.0</version></info>')
    for sid, s in enumerate(streams, start=1):
        data = np.asarray(s.data)
        if data.ndim != 2 or data.shape != (len(s.t), len(s.labels)):
            raise ValueError(f"stream {s.name}: data {data.shape} vs {len(s.t)} x {len(s.labels)}")
        if s.channel_format not in _XDF_DTYPES:
            raise ValueError(f"stream {s.name}: channel_format must be float32 or double64")
        out += _chunk(2, struct.pack("<I", sid) + _stream_header_xml(s, sid))
    # sample chunks, in order of their first time stamp across streams
    pieces: list[tuple[float, int, int, int]] = []
    for sid, s in enumerate(streams, start=1):
        for start in range(0, len(s.t), chunk_samples):
            pieces.append((float(s.t[start]), sid, start, min(start + chunk_samples, len(s.t))))
    pieces.sort()
    last_offset: dict[int, float] = {}
    for t0, sid, a, b in pieces:
        s = streams[sid - 1]
        n = b - a
        rec = np.dtype(
            [("flag", "u1"), ("ts", "<f8"), ("v", _XDF_DTYPES[s.channel_format], (len(s.labels),))]
        )
        arr = np.zeros(n, dtype=rec)
        arr["flag"] = 8
        arr["ts"] = np.asarray(s.t[a:b], dtype=np.float64)
        arr["v"] = np.asarray(s.data[a:b])
        out += _chunk(3, struct.pack("<I", sid) + _varlen(n) + arr.tobytes())
        if t0 - last_offset.get(sid, -np.inf) >= 5.0:  # LabRecorder: every 5 s per stream
            out += _chunk(4, struct.pack("<Idd", sid, t0, 0.0))
            last_offset[sid] = t0
    for sid, s in enumerate(streams, start=1):
        first = float(s.t[0]) if len(s.t) else 0.0
        last = float(s.t[-1]) if len(s.t) else 0.0
        footer = (
            '<?xml version="1.0"?>\n<info>'
            f"<first_timestamp>{first:.9f}</first_timestamp>"
            f"<last_timestamp>{last:.9f}</last_timestamp>"
            f"<sample_count>{len(s.t)}</sample_count></info>"
        ).encode()
        out += _chunk(6, struct.pack("<I", sid) + footer)
    path.write_bytes(bytes(out))
    return path


# ------------------------------------------------------------------------ dataset export

_OPENSIM_COORD = {"hip": "hip_flexion", "knee": "knee_angle"}
_OPENSIM_SIGN = {"hip": 1.0, "knee": -1.0}  # OpenSim knee_angle is negative in flexion
KINEMATICS_RATE_HZ = 100.0
KINEMATICS_LATE_S = 0.05  # the kinematics file starts this much after the EMG


def _opensim_names(joints: Sequence[str]) -> tuple[list[str], list[float]]:
    names, signs = [], []
    for j in joints:
        base, _, side = j.rpartition("_")
        names.append(f"{_OPENSIM_COORD[base]}_{side}")
        signs.append(_OPENSIM_SIGN[base])
    return names, signs


def export_recording(
    rec: Any,
    out_dir: str | Path,
    *,
    fmt: str = "sto",
    trial: str = "walk",
    description: str = "dataset.yaml",
    body_mass_kg: float | None = None,
    role: str = "task",
    clock_offset_s: float = 1234.5,
) -> Path:
    """Write a recording (t, emg, torque, angles, muscles, joints, fs_hz) as lab files.

    ``fmt`` is ``sto`` (EMG .sto, moments .sto, angles .mot in degrees), ``csv`` (three CSV files,
    moments in N m/kg) or ``xdf`` (one XDF file with two streams). The trial is added to the
    dataset description in ``out_dir`` (created, or extended when it exists). Returns the
    description's path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    muscles, joints = list(rec.muscles), list(rec.joints)
    t = np.asarray(rec.t, dtype=np.float64)
    fs = float(rec.fs_hz)
    labels = [f"EMG{i + 1:02d}" for i in range(len(muscles))]
    channels = dict(zip(muscles, labels, strict=True))
    step = max(1, int(round(fs / KINEMATICS_RATE_HZ)))
    first = int(round(KINEMATICS_LATE_S * fs))
    ki = np.arange(first, len(t), step)
    tk = t[ki]
    coords, signs = _opensim_names(joints)
    sign = np.array(signs)
    moment = np.asarray(rec.torque)[ki] * sign
    angle = np.asarray(rec.angles)[ki] * sign
    mom_cols = [f"{c}_moment" for c in coords]
    sign_map = {j: int(s) for j, s in zip(joints, signs, strict=True) if s < 0}
    trial_spec: dict[str, Any] = {"name": trial, "role": role}
    emg_spec: dict[str, Any] = {"file": "", "kind": "raw", "units": "uV", "channels": channels}
    mom_spec: dict[str, Any] = {
        "file": "",
        "columns": dict(zip(joints, mom_cols, strict=True)),
        "units": "Nm",
    }
    ang_spec: dict[str, Any] = {"file": "", "columns": dict(zip(joints, coords, strict=True))}
    if sign_map:
        mom_spec["sign"] = sign_map
        ang_spec["sign"] = sign_map
    if fmt == "sto":
        write_sto(out / f"{trial}_emg.sto", t, rec.emg, labels, name=f"{trial} EMG (uV)")
        write_sto(out / f"{trial}_id.sto", tk, moment, mom_cols, name=f"{trial} inverse dynamics")
        write_sto(
            out / f"{trial}_ik.mot", tk, np.degrees(angle), coords, name=trial, in_degrees=True
        )
        emg_spec["file"] = f"{trial}_emg.sto"
        mom_spec["file"] = f"{trial}_id.sto"
        ang_spec["file"] = f"{trial}_ik.mot"
        ang_spec["units"] = "deg"
    elif fmt == "csv":
        if body_mass_kg is None:
            raise ValueError("CSV export writes moments in N m/kg: give body_mass_kg")
        write_csv(out / f"{trial}_emg.csv", t, rec.emg, labels)
        write_csv(out / f"{trial}_moments.csv", tk, moment / body_mass_kg, mom_cols)
        write_csv(out / f"{trial}_angles.csv", tk, angle, coords)
        emg_spec["file"] = f"{trial}_emg.csv"
        mom_spec["file"] = f"{trial}_moments.csv"
        mom_spec["units"] = "Nm/kg"
        ang_spec["file"] = f"{trial}_angles.csv"
        ang_spec["units"] = "rad"
    elif fmt == "xdf":
        kin = np.column_stack([moment, angle])
        write_xdf(
            out / f"{trial}.xdf",
            [
                XdfStream(
                    "exoctl-emg", "EMG", t + clock_offset_s, rec.emg, labels, fs, "microvolts"
                ),
                XdfStream(
                    "exoctl-kinetics",
                    "MoCap",
                    tk + clock_offset_s,
                    kin,
                    mom_cols + coords,
                    KINEMATICS_RATE_HZ,
                    channel_format="double64",
                ),
            ],
        )
        emg_spec.update(file=f"{trial}.xdf", stream="exoctl-emg")
        mom_spec.update(file=f"{trial}.xdf", stream="exoctl-kinetics")
        ang_spec.update(file=f"{trial}.xdf", stream="exoctl-kinetics", units="rad")
    else:
        raise ValueError(f"unknown export format {fmt!r}; use sto, csv or xdf")
    trial_spec["emg"] = emg_spec
    trial_spec["moment"] = mom_spec
    trial_spec["angle"] = ang_spec
    if body_mass_kg is not None:
        trial_spec["body_mass_kg"] = float(body_mass_kg)

    desc_path = out / description
    if desc_path.exists():
        desc = read_yaml_mapping(desc_path, "dataset description", DatasetError)
        desc["trials"] = [x for x in desc.get("trials", []) if x.get("name") != trial]
    else:
        desc = {
            "format": "exoctl-dataset/1",
            "name": out.name,
            "muscles": muscles,
            "joints": joints,
            "trials": [],
        }
    desc["trials"].append(trial_spec)
    desc_path.write_text(
        "# exoctl dataset description (see exoctl/data/dataset.py); paths relative to this file\n"
        + dump_yaml(desc, sort_keys=False, width=120)
    )
    return desc_path
