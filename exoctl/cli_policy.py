"""The one policy of every ``exoctl`` command: what goes where, and what the exit code means.

* Results go to stdout: a table or text by default, one JSON document with ``--json``. JSON is
  always strict (RFC 8259): a figure that does not exist (NaN, infinite: nothing measured) is
  ``null``, never ``NaN``.
* Diagnostics go to stderr as ``exoctl: <message>``: one line per problem, each naming what to
  fix (file, line and key for a file), never a traceback. With ``--json`` a failure is also
  reported on stdout as ``{"ok": false, "error": ..., "exit_code": ...}`` so a script reading
  stdout always gets a JSON document.
* Exit codes, shared by every command family (README.md and docs/deploy.md list them too):

  ===  ============================================================================
  0    ok
  1    error: a bad configuration or input file (configuration, calibration, dataset,
       scenario, model), data that cannot be used, or a run that failed
  2    usage: the command line itself is wrong (unknown option, a value out of range)
  3    the daemon is not running (no socket, or nobody listening)
  4    permission denied (socket modes, credentials, an unreadable data directory)
  5    refused by the daemon (a fault is latched, a session is already running, ...)
  70   internal error: a bug in exoctl (the one line says where; ``EXOCTL_DEBUG=1``
       prints the traceback too)
  130  interrupted (Ctrl-C)
  141  the output was closed before the command finished writing it (a reader such as
       ``head`` exited: 128 + SIGPIPE, as a shell reports it); nothing is printed. What the
       command did (a session started, an e-stop) is done all the same
  ===  ============================================================================
"""

from __future__ import annotations

import math
import os
import sys

from exoctl.jsonout import dumps

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing (see UsageError)
if TYPE_CHECKING:
    from typing import Any, TextIO

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_RUNNING = 3
EXIT_PERMISSION = 4
EXIT_REFUSED = 5
EXIT_INTERNAL = 70
EXIT_INTERRUPTED = 130
EXIT_CLOSED_OUTPUT = 141  # 128 + SIGPIPE


class UsageError(Exception):
    """A combination of options argparse cannot check (``--trial`` without ``--replay``): the
    command line is wrong, exit 2 with one line.

    This module is on the path of ``exoctl estop``, which must start at once: it imports no
    more than it uses there (``traceback`` and ``argparse`` where they are needed, ``typing``
    only for the type checker)."""


def seconds(text: str) -> float:
    """An argparse type: a finite, positive number of seconds (``-1``, ``0``, ``nan`` are
    usage errors, exit 2, not a run that ends at once or never)."""
    import argparse

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text} s: must be a positive number of seconds")
    return value


def json_text(obj: Any) -> str:
    """One strict JSON document: NaN and infinities are null (see exoctl/jsonout.py)."""
    return dumps(obj)


def emit_json(obj: Any, out: TextIO | None = None) -> None:
    print(json_text(obj), file=out or sys.stdout, flush=True)


def fail(message: str, code: int, *, json_mode: bool = False, data: Any = None) -> int:
    """Report a failure the documented way and return its exit code."""
    if json_mode:
        doc: dict[str, Any] = {"ok": False, "error": message, "exit_code": code}
        if data is not None:
            doc["data"] = data
        emit_json(doc)
    for line in message.split("\n"):  # not splitlines(): a \r or \x1c is escaped, not a line
        print(f"exoctl: {shown(line)}", file=sys.stderr)
    return code


def shown(text: str) -> str:
    """``text`` as it may reach a terminal: every character that is not printable (control
    characters, ESC sequences, carriage returns, line breaks, bidirectional overrides, lone
    surrogates from undecodable bytes) is written as its Python escape (``\\x1b``,
    ``\\r``...), so text from a recording, a daemon's answer or a file can neither move the
    cursor, recolour, hide or overwrite what a clinician reads. Printable text (``Müller``)
    is kept as it is. The one helper every printer uses (tables, key-value lists, the status
    screen, error lines); idempotent, so text that went through it twice reads the same.
    Multi-line text: escape each line (``shown_lines``)."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else _escape(c) for c in text)


def shown_lines(text: str) -> str:
    """Multi-line text for a terminal: its line breaks kept, each line through ``shown``."""
    return "\n".join(shown(line) for line in text.split("\n"))


_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(c: str) -> str:
    if c in _ESCAPES:
        return _ESCAPES[c]
    o = ord(c)
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}" if o < 0x10000 else f"\\U{o:08x}"


def one_line(message: str) -> str:
    """A message from elsewhere (a child process, a library) folded onto one line."""
    return " ".join(part.strip() for part in message.splitlines() if part.strip())


def internal_error(exc: BaseException) -> str:
    """One line for a bug: the exception and the innermost frame of exoctl that raised it."""
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    ours = [
        f
        for f in frames
        if f"{os.sep}exoctl{os.sep}" in f.filename or "firmware_bridge" in f.filename
    ]
    at = ""
    if frames:  # where it was raised, and the innermost place in exoctl if that is elsewhere
        at = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}"
        if ours and ours[-1] is not frames[-1]:
            at += f" (in exoctl: {os.path.basename(ours[-1].filename)}:{ours[-1].lineno})"
    return (
        f"internal error (a bug in exoctl, please report it): {type(exc).__name__}{at}: "
        f"{one_line(str(exc))[:300]} (EXOCTL_DEBUG=1 prints the traceback)"
    )


def closed_output() -> int:
    """The reader of stdout went away (``exoctl status | head -2``): end quietly.

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError; the command
    ends with ``EXIT_CLOSED_OUTPUT`` and no traceback. stdout is pointed at /dev/null first,
    so the interpreter's own flush at exit has nowhere to fail."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # stdout is not a file descriptor (an embedding, a test): nothing to flush
    return EXIT_CLOSED_OUTPUT


def debug_enabled() -> bool:
    return os.environ.get("EXOCTL_DEBUG", "") not in ("", "0")
