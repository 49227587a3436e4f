"""The model registry from the CLI: ``patients show|accept|rollback`` (no daemon needed).

They read and write the registry in the data directory (``exoctl.service.registry``), so run
them as the service user like ``sessions ...``. The acceptor recorded is the user running
the command.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from exoctl.service.commands.common import emit, guarded, service_config
from exoctl.service.commands.text import format_table, format_when


def _registry(args: argparse.Namespace):
    from exoctl.service.registry import Registry

    return Registry(service_config(args).data_dir)


def _show(doc: dict[str, Any]) -> str:
    rows = []
    for m in doc["models"]:
        gain = m.get("gain") or {}
        verdict = ((m.get("scores") or {}).get("verdict") or {}).get("accepted")
        rows.append(
            {
                "version": f"{m['version']}{' *' if m['version'] == doc['current'] else ''}",
                "made": format_when(m["created_at"]),
                "model": Path(m["model_path"]).name,
                "calibration": Path(m["calibration_path"]).name,
                "gains": ", ".join(f"{k} x{v:.2f}" for k, v in gain.items() if v != 1.0) or "-",
                "guard": {True: "accepted", False: "refused", None: "-"}[verdict],
                "from": ", ".join(str(s) for s in m.get("sources") or []) or "-",
                "accepted_by": m["accepted_by"],
            }
        )
    sel = [
        {"when": format_when(s["at"]), "version": s["version"], "by": s["by"], "why": s["reason"]}
        for s in doc["selections"]
    ]
    return (
        f"patient {doc['patient']}: current model version {doc['current']} (*)\n\n"
        + format_table(rows, list(rows[0]) if rows else ["version"])
        + "\n\nchanges of the current model:\n"
        + format_table(sel, ["when", "version", "by", "why"])
    )


@guarded
def cmd_patients_show(args: argparse.Namespace) -> int:
    """A patient's models (which one is current, made when, from which recordings, with
    what scores, accepted by whom) and every change of the current one."""
    return emit(args, _registry(args).history(args.patient), _show)


@guarded
def cmd_patients_accept(args: argparse.Namespace) -> int:
    """Make a model and calibration the patient's current one (a new registry version)."""
    for what, p in (("--model", args.model), ("--calibration", args.calibration)):
        if not Path(p).is_file():
            from exoctl.service.registry import RegistryError

            raise RegistryError(f"{what}: no such file {p}")
    scores = None
    if args.scores:
        try:
            scores = json.loads(Path(args.scores).read_text())
        except (OSError, ValueError) as e:
            from exoctl.service.registry import RegistryError

            raise RegistryError(f"--scores {args.scores}: not a readable JSON file ({e})") from None
    version = _registry(args).accept(
        args.patient, args.model, args.calibration, sources=args.source or [],
        scores=scores, gain=(scores or {}).get("gain"), note=args.note,
        reference_session=args.reference,
    )  # fmt: skip
    doc = {"patient": args.patient, "version": version, "current": version}
    return emit(
        args, doc, lambda d: f"patient {d['patient']}: model version {d['version']} is current"
    )


@guarded
def cmd_patients_rollback(args: argparse.Namespace) -> int:
    """Make an earlier model version current again (recorded as one more change)."""
    m = _registry(args).roll_back(args.patient, args.to)
    doc = {"patient": args.patient, "current": m["version"], "model": m}
    return emit(
        args,
        doc,
        lambda d: (
            f"patient {d['patient']}: model version {d['current']} is current again "
            f"({Path(d['model']['model_path']).name})"
        ),
    )


def register(psp: Any, add: Any) -> None:
    """Add ``show``, ``accept`` and ``rollback`` to ``exoctl patients``."""
    p = add(psp, "show", cmd_patients_show, "a patient's model history and current model")
    p.add_argument("patient")
    p = add(psp, "accept", cmd_patients_accept, "make a model the patient's current one")
    p.add_argument("patient")
    p.add_argument("--model", required=True, help="ONNX torque model")
    p.add_argument("--calibration", required=True, help="its calibration YAML")
    p.add_argument("--source", action="append", help="a recording it was made from (repeat)")
    p.add_argument("--scores", help="JSON file of its figures (e.g. exoctl adapt --report)")
    p.add_argument("--note", help="free text")
    p.add_argument(
        "--reference", metavar="ID", help="the recording later warm-ups are compared with"
    )
    p = add(psp, "rollback", cmd_patients_rollback, "make an earlier model version current")
    p.add_argument("patient")
    p.add_argument("--to", type=int, required=True, metavar="VERSION")
