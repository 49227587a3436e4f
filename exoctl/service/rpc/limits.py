"""What one client may ask of the control socket (see ``exoctl.service.rpc``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    """What one client may ask of the control socket (see the module docstring)."""

    max_request_bytes: int = 16 * 1024
    max_batch: int = 32
    max_depth: int = 32
    max_number_digits: int = 40
    max_items: int = 4096
    max_connections: int = 64
    request_timeout_s: float = 2.0
    idle_timeout_s: float = 60.0
    send_timeout_s: float = 2.0
    requests_per_s: float = 250.0
    request_burst: float = 25.0
    connections_per_s: float = 250.0
    connection_burst: float = 50.0
    request_cpu_share: float = 0.1
    """Of one core: the thread CPU time that request work (accepting, reading, parsing,
    answering, the handlers) may take on average; beyond it requests wait their turn."""
    request_cpu_burst_s: float = 0.05


DEFAULT_MAX_REQUEST_BYTES = Limits.max_request_bytes
