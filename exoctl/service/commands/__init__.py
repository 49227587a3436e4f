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
    exoctl patients show P | accept P --model M --calibration C | rollback P --to VERSION
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
    141  the output was closed (``exoctl status | head -2``), nothing more printed

The configuration is ``--config PATH``, else ``$EXOCTL_CONFIG``, else
``/etc/exoctl/exoctl.yaml`` when it exists, else the packaged default.

``sessions ...`` and ``patients list`` read the recordings directly (they work with the
daemon stopped); the data directory is 0700, so run them as the service user
(``sudo -u exoctl exoctl sessions list``) or as root.

Modules: ``control`` (commands that talk to the daemon), ``quick`` (``status`` and ``estop``,
which start at once, and their parser without argparse), ``recordings`` (commands that read the
data directory), ``text`` (how results are shown), ``common`` (configuration, the daemon call,
exit codes); ``register`` below wires them into ``exoctl``.

Importing this package imports no command module and no argparse (``exoctl estop`` imports
``quick`` through it); ``register`` imports them, and the formatting helpers re-exported here
from ``text`` are imported when first used (``__getattr__``).
"""

from __future__ import annotations

from exoctl.cli_policy import (  # the codes every exoctl command shares
    EXIT_ERROR,
    EXIT_NOT_RUNNING,
    EXIT_OK,
    EXIT_PERMISSION,
    EXIT_REFUSED,
    EXIT_USAGE,
)
from exoctl.service.commands.common import (
    config_path,
    end_reason,
    parse_assist,
    patient_id,
    protocol_name,
    watch_period,
)
from exoctl.service.commands.quick import QUICK_COMMANDS, cmd_estop, cmd_status

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing at run time
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable
    from typing import Any

    from exoctl.service.commands.text import (
        STATE_WORDS,
        assist_message,
        clear_message,
        fmt_num,
        fmt_us,
        format_kv,
        format_status,
        format_table,
    )

__all__ = [
    "EXIT_ERROR",
    "EXIT_NOT_RUNNING",
    "EXIT_OK",
    "EXIT_PERMISSION",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "QUICK_COMMANDS",
    "STATE_WORDS",
    "assist_message",
    "clear_message",
    "config_path",
    "end_reason",
    "fmt_num",
    "fmt_us",
    "format_kv",
    "format_status",
    "format_table",
    "parse_assist",
    "patient_id",
    "protocol_name",
    "register",
    "register_quick",
    "watch_period",
]

_FROM_TEXT = frozenset(
    ("STATE_WORDS", "assist_message", "clear_message", "fmt_num", "fmt_us", "format_kv",
     "format_status", "format_table")
)  # fmt: skip


def __getattr__(name: str) -> Any:
    """The formatting helpers of ``text``, imported on first use (datetime and the tables are
    not needed to press the e-stop)."""
    if name in _FROM_TEXT:
        from exoctl.service.commands import text

        return getattr(text, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ---------------------------------------------------------------------------------------
def _common() -> argparse.ArgumentParser:
    import argparse

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output")
    return common


def _add(
    sp: Any, name: str, fn: Callable[[argparse.Namespace], int], help: str
) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sp.add_parser(
        name, parents=[_common()], help=help, description=help
    )
    p.set_defaults(func=fn)
    return p


def register_quick(subparsers: argparse._SubParsersAction) -> None:
    """Add ``status`` and ``estop`` (``QUICK_COMMANDS``) to the full parser: the same
    commands the quick parser (``quick.parse``) runs, with the same options."""
    p = _add(subparsers, "status", cmd_status, "daemon, device and session status")
    p.add_argument(
        "--watch",
        nargs="?",
        type=watch_period,
        const=1.0,
        default=None,
        metavar="SECONDS",
        help="refresh every SECONDS (default 1, at least 0.2) until Ctrl-C",
    )
    _add(subparsers, "estop", cmd_estop, "emergency stop: remove assistance now, latch a fault")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the daemon/session commands to ``exoctl``'s sub-command parser."""
    from exoctl.service.commands.control import (
        cmd_assist_set,
        cmd_daemon,
        cmd_fault_clear,
        cmd_model_load,
        cmd_session_start,
        cmd_session_stop,
    )
    from exoctl.service.commands.patients import register as register_patients
    from exoctl.service.commands.recordings import (
        cmd_patients_list,
        cmd_sessions_export,
        cmd_sessions_list,
        cmd_sessions_report,
        cmd_sessions_show,
    )

    add = _add

    add(subparsers, "daemon", cmd_daemon, "run the exoctl supervisor (foreground; for systemd)")

    session = subparsers.add_parser("session", help="start or stop a therapy session")
    ssp = session.add_subparsers(dest="session_cmd", required=True, metavar="{start,stop}")
    p = add(ssp, "start", cmd_session_start, "start a session (assistance ramps in)")
    p.add_argument(
        "--patient", required=True, type=patient_id, help="patient id (letters, digits, . _ -)"
    )
    p.add_argument(
        "--assist",
        action="append",
        metavar="GAIN|JOINT=GAIN,...",
        help="assist gain in [0, 1] for all joints, or per joint (default: configuration)",
    )
    p.add_argument(
        "--protocol",
        default=None,
        type=protocol_name,
        help="protocol name, recorded with the session (printable text, at most 200 characters)",
    )
    p = add(ssp, "stop", cmd_session_stop, "stop the session (assistance ramps out)")
    p.add_argument(
        "--reason",
        default="stopped by clinician",
        type=end_reason,
        help="recorded end reason (printable text, at most 200 characters)",
    )

    register_quick(subparsers)

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
    psp = patients.add_subparsers(
        dest="patients_cmd", required=True, metavar="{list,show,accept,rollback}"
    )
    add(psp, "list", cmd_patients_list, "list patients and their session counts")
    register_patients(psp, add)

    sessions = subparsers.add_parser("sessions", help="recorded sessions")
    ssp = sessions.add_subparsers(
        dest="sessions_cmd", required=True, metavar="{list,show,export,report}"
    )
    p = add(ssp, "list", cmd_sessions_list, "list recorded sessions")
    p.add_argument("--patient", type=patient_id, help="only this patient")
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
