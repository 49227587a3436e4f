"""The service's log format, in a module of its own so that the control socket's process
(``exoctl.service.rpc.front``) sets it up without importing the daemon."""

from __future__ import annotations

import sys
from typing import Any

import structlog


def configure_logging(stream: Any = None) -> None:
    """JSON lines on stdout, ISO UTC timestamps; journald adds its own metadata."""
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(default=str),
        ],
        logger_factory=structlog.PrintLoggerFactory(stream or sys.stdout),
        cache_logger_on_first_use=True,
    )
