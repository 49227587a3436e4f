"""Session report for a clinician: one self-contained HTML file (charts inline as SVG).

What it answers, top to bottom: how long the patient walked and was assisted, at what
assistance level, what interrupted it and why (in plain words, at clock times), how much torque
each joint received, cadence and left/right symmetry; then the torque over the gait cycle
(the patient's own estimate, the command and what the device applied, mean +- sd over the
strides); then the same figures across the patient's sessions. Engineering detail (model and
calibration identity, muscle activations, loop timing) is folded away at the end.

The charts need matplotlib, in the optional ``report`` extra (``pip install 'exoctl[report]'``):
the daemon never imports it. How each figure is computed: exoctl.recordings.report.analysis.
"""

from __future__ import annotations

from pathlib import Path

from exoctl.recordings.store import RecorderError


def _require_matplotlib() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise RecorderError(
            "the session report draws its charts with matplotlib, which is not installed: "
            "pip install 'exoctl[report]'"
        ) from None


def build_report(db: str | Path, session_id: str | None = None, *, history: int = 12) -> str:
    """The report's HTML; ``history`` bounds the sessions in the patient view."""
    _require_matplotlib()
    from exoctl.recordings.report.page import build

    return build(Path(db), session_id, history=history)


def write_report(db: str | Path, session_id: str | None, out: str | Path) -> Path:
    out = Path(out)
    if out.suffix.lower() not in (".html", ".htm"):
        raise RecorderError(
            f"report format {out.suffix or '(none)'} not supported: use a .html file name "
            "(one self-contained file; print it to PDF from the browser if needed)"
        )
    text = build_report(db, session_id)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return out
