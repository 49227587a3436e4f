"""A session's start and stop for the daemon: what must hold before assistance runs, and what is
recorded at either end.

A session starts only with its recording open (no assistance unrecorded), room on the data disk
for ``service.recording_reserve_s`` of it, every text field checked and, when the patient has a
model in the registry, that model loaded first (refused when its files changed since it was
accepted). These steps act on the daemon's state (its pump's lock, recorder, controller, session
id), so each takes the daemon; the RPC methods (``Daemon.rpc_session_start``, ``rpc_session_stop``)
and the daemon's own stop call them.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from exoctl.recordings import recorder as R
from exoctl.recordings.fields import patient_problem, text_problem
from exoctl.service import rpc
from exoctl.service.pump import recording_bytes_needed, recording_bytes_per_s, stream_meta

if TYPE_CHECKING:
    from exoctl.service.daemon import Daemon

log = structlog.get_logger("exoctl.daemon")


def start(
    d: Daemon, patient: str, protocol: str | None = None, assist: Any = None
) -> dict[str, Any]:
    """Start a session for ``patient`` (``session.start``): refused, with the reason, unless
    everything in the module docstring holds."""
    from exoctl.runtime.controller import ControllerError

    # Every text field is checked before anything starts or is recorded (no stub rows).
    problem = patient_problem(patient) or (
        None if protocol is None else text_problem("protocol", protocol)
    )
    if problem:
        raise rpc.InvalidParams(problem)
    assist = check_assist(assist, d.controller.joints)
    with d.pump.lock:
        if d.controller.session is not None or d.recorder.active_session is not None:
            raise rpc.Refused(
                f"a session is already running (session {d._session_id}); stop it first"
            )
        check_free_space(d)
        registered = patient_model(d, patient)
        try:
            info = d.controller.start_session(patient, protocol, assist)
        except ControllerError as e:
            raise rpc.Refused(str(e)) from None
        try:
            model, cal = artifacts(d)
            sid = d.recorder.start_session(
                patient,
                protocol=protocol,
                config=d.cfg.model_dump(mode="json"),
                model=model,
                calibration=cal,
                streams=stream_meta(d.cfg, d.controller.n_synergies),
            )
        except Exception as e:
            # No recording, no session: assistance must not run unrecorded.
            with contextlib.suppress(Exception):
                d.controller.stop_session(wait_ramp=False)
            log.error("recording_failed", error=str(e))
            raise rpc.RpcError(rpc.INTERNAL_ERROR, f"cannot record the session: {e}") from e
        d._session_id = sid
        d._record_event(
            "session_start",
            {"patient": patient, "protocol": protocol, "gains": info.gains,
             "registry_version": None if registered is None else registered["version"]},
        )  # fmt: skip
    d.notifier.status(f"session {sid} running (patient {patient})")
    log.info("session_started", session_id=sid, patient=patient, protocol=protocol,
             gains=info.gains)  # fmt: skip
    return {
        "session_id": sid,
        "patient": patient,
        "protocol": protocol,
        "gains": info.gains,
        "registry_version": None if registered is None else registered["version"],
    }


def check_free_space(d: Daemon) -> None:
    """Refuse a session whose recording the data disk has no room for: about
    ``recording_bytes_per_s`` for ``service.recording_reserve_s`` seconds, and its log."""
    need_s = d.svc.recording_reserve_s
    rate = recording_bytes_per_s(d.cfg, d.controller.n_synergies)
    need = recording_bytes_needed(d.cfg, d.controller.n_synergies, need_s)
    try:
        free = R.free_bytes(d.svc.data_dir)
    except OSError as e:
        raise rpc.Refused(f"cannot tell the free space of {d.svc.data_dir}: {e}") from None
    if free < need:
        raise rpc.Refused(
            f"not enough free disk space to record a session: {d.svc.data_dir} has "
            f"{free / 1e6:.1f} MB free, and {need_s:g} s of recording "
            f"(service.recording_reserve_s) needs about {need / 1e6:.1f} MB at "
            f"{rate / 1e3:.0f} kB/s. Free space on that disk, or shorten "
            "service.recording_reserve_s"
        )


def patient_model(d: Daemon, patient: str) -> dict[str, Any] | None:
    """Run the patient's current model from the registry (``exoctl patients show``), when
    there is one and it is not the one running; refuse when its files changed since it was
    accepted. Loaded before the session starts, so assistance ramps in on it."""
    from exoctl.runtime.controller import ControllerError
    from exoctl.service.registry import Registry

    try:
        cur = Registry(d.svc.data_dir).current(patient)
    except R.RecorderError as e:
        raise rpc.Refused(f"patient {patient}: the model registry cannot be read: {e}") from e
    if cur is None:
        return None
    m, c = artifacts(d)
    if (m.sha256, c.sha256) == (cur["model_sha256"], cur["calibration_sha256"]):
        return cur
    for key in ("model", "calibration"):
        ident = R.file_identity(cur[f"{key}_path"]) if Path(cur[f"{key}_path"]).is_file() else None
        if ident is None or ident["sha256"] != cur[f"{key}_sha256"]:
            raise rpc.Refused(
                f"patient {patient}: model version {cur['version']}'s {key} file "
                f"{cur[f'{key}_path']} is missing or changed since it was accepted; roll "
                "back to another version (exoctl patients rollback) or restore the file"
            )
    cfg = d.cfg.with_overrides(
        model={"path": cur["model_path"]}, estimator={"calibration": cur["calibration_path"]}
    )
    try:
        d.controller.swap_model(cfg)
    except ControllerError as e:
        raise rpc.Refused(f"patient {patient}: model version {cur['version']}: {e}") from None
    except Exception as e:  # a file that cannot be loaded as a model or calibration
        raise rpc.Refused(
            f"patient {patient}: model version {cur['version']} cannot be loaded: {e}"
        ) from None
    d.cfg = cfg
    log.info("patient_model_loaded", patient=patient, version=cur["version"],
             model=cur["model_path"], calibration=cur["calibration_path"])  # fmt: skip
    return cur


def stop(d: Daemon, reason: str) -> dict[str, Any]:
    from exoctl.runtime.controller import ControllerError

    with d.pump.lock:
        s = d.controller.session
        try:
            d.controller.stop_session()
        except ControllerError as e:
            raise rpc.Refused(str(e)) from None
        d.pump.pump_once()  # everything up to the end of the ramp-out
        sid = d._session_id
        d._record_event("session_stop", {"reason": reason})
        try:
            d.recorder.stop_session(reason)
            problem = d.recorder.last_close_problem
        except R.RecorderError as e:  # the session has stopped all the same
            problem = str(e)
        d._session_id = None
    if problem is None:
        log.info("session_stopped", session_id=sid, reason=reason)
    else:
        log.error("session_stopped", session_id=sid, reason=reason, recording_problem=problem)
    d.notifier.status(f"no session (last: {sid}, {reason})")
    return {
        "session_id": sid,
        "patient": s.patient if s else None,
        "end_reason": reason,
        "duration_s": round(time.time() - s.started_at, 3) if s else None,
        # None: the file is complete; else why its end could not be written (the data
        # committed before stays readable)
        "recording_problem": problem,
    }


def artifacts(d: Daemon) -> tuple[R.Artifact, R.Artifact]:
    ident = d.controller.model_identity()
    m = R.Artifact.from_file(ident.model_path, ident.model_id)
    c = R.Artifact.from_file(ident.calibration_path, ident.calibration_id)
    return m, c


def check_assist(assist: Any, joints: Any = None) -> Any:
    """Levels as the RPC caller gave them; a bad level, an empty mapping or (with ``joints``)
    an unknown joint is the caller's error (invalid params), not a refusal."""
    from exoctl.config.assist_level import AssistLevelError, check_levels

    if assist is None:
        return None
    try:
        return check_levels(assist, joints)
    except AssistLevelError as e:
        raise rpc.InvalidParams(str(e)) from None
