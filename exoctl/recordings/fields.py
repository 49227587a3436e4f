"""The text fields of the control API (patient id, protocol name, end reason) and the ids of
recordings: what each may hold, checked in one place by the daemon (``-32602`` invalid params)
and by the CLI (exit 2), before anything is started or recorded.

Why so strict: these strings become directory names (the patient id), rows in the recording
and lines on a clinician's terminal. A patient id ``P05\\n`` made a directory no command could
list; a protocol name with terminal escapes rewrote the ``status`` screen; a reason that was
not valid UTF-8 (a lone surrogate, from a terminal in another encoding) failed only when
written to SQLite, after the session had stopped. So:

* ids are matched whole (``fullmatch``: ``$`` would also match before a final newline);
* free text is printable Unicode (``str.isprintable``: no control characters, no line breaks,
  no escapes, no bidirectional overrides, no surrogates, hence valid UTF-8) of at most
  ``MAX_TEXT_CHARS`` characters.

Import-light (``re`` only): the CLI checks its arguments with it before importing anything else.
"""

from __future__ import annotations

import re
from typing import Any

PATIENT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
"""A patient id, matched whole (``PATIENT_RE.fullmatch``): it is a directory name."""
SESSION_RE = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")
"""A session id, matched whole (``SESSION_RE.fullmatch``)."""
MAX_TEXT_CHARS = 200


def patient_problem(value: Any) -> str | None:
    """Why ``value`` is not a patient id, or None when it is one."""
    if isinstance(value, str) and PATIENT_RE.fullmatch(value):
        return None
    return (
        f"invalid patient id {value!r}: use 1-64 letters, digits, '.', '_' or '-', "
        "starting with a letter or digit"
    )


def session_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a session id, or None when it is one."""
    if isinstance(value, str) and SESSION_RE.fullmatch(value):
        return None
    return f"invalid session id {value!r}: expected e.g. 20260101T120000Z-0a1b2c"


def text_problem(key: str, value: Any, max_chars: int = MAX_TEXT_CHARS) -> str | None:
    """Why ``value`` cannot be the free-text field ``key``, or None when it can."""
    if not isinstance(value, str):
        return f"{key} must be a string, not {type(value).__name__}"
    if len(value) > max_chars:
        return f"{key} is {len(value)} characters long: at most {max_chars}"
    if not value.isprintable():
        bad = next(c for c in value if not c.isprintable())
        return (
            f"{key} {value!r} holds the character {ascii(bad)}: only printable text is allowed "
            "(no control characters, line breaks or terminal escapes, valid UTF-8)"
        )
    return None
