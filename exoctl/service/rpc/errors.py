"""The JSON-RPC error codes the daemon answers with, and the exceptions handlers raise to
answer with one of them."""

from __future__ import annotations

from typing import Any

from exoctl.errors import ExoctlError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603
# Implementation-defined server errors (-32000 to -32099).
REFUSED = -32000
"""The daemon understood the request and declines it (fault latched, no session, ...)."""
PERMISSION_DENIED = -32001
"""The peer's credentials are not among the allowed users and groups."""
BUSY = -32002
"""Every connection slot is mid-request; nothing was read or done. Connect again shortly."""
CONNECTION_CLOSED = -32003
"""The daemon closed this idle connection (evicted for a newcomer, or idle too long) without
reading a request from it; nothing was done. Connect again."""
RETRYABLE = (BUSY, CONNECTION_CLOSED)
"""Errors that say the request was never read: safe to send again on a new connection."""


class RpcError(ExoctlError):
    """Raised by a handler to return a specific JSON-RPC error."""

    def __init__(self, code: int, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data


class InvalidParams(RpcError):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(INVALID_PARAMS, message, data)


class Refused(RpcError):
    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(REFUSED, message, data)


def limit_exceeded(name: str, maximum: float, message: str) -> RpcError:
    """The error for a request over one of ``Limits`` (``data`` names the limit)."""
    return RpcError(INVALID_REQUEST, message, {"limit": name, "max": maximum})
