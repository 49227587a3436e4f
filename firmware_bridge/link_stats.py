"""The shape of ``HostLink.stats()``: the link's counters as the controller status, the HIL
summary and the daemon's reports read them by key (and serialise them to JSON as they are).

A TypedDict, not a dataclass, so the value stays a plain dict on the wire and in JSON while a
type checker catches a misspelt or missing key at the reader.
"""

from __future__ import annotations

from typing import TypedDict


class RttStats(TypedDict):
    """Round-trip times of torque command -> telemetry echo, in ms (None before the first)."""

    p50: float | None
    p99: float | None
    max: float | None
    count: int
    histogram: list[list[float | int | None]]  # non-empty bins: [upper edge ms or None, count]


class LinkStats(TypedDict):
    frames_good: int
    crc_errors: int
    framing_errors: int
    length_errors: int
    version_errors: int
    unknown_type_errors: int
    direction_errors: int
    value_errors: int
    seq_gaps: int
    telemetry_received: int
    commands_sent: int
    commands_zeroed: int
    heartbeats_sent: int
    tx_errors: int
    tx_would_block: int
    rtt_ms: RttStats
    rtt_ms_p50: float | None
    rtt_ms_p99: float | None
    rtt_ms_max: float | None
    reconnects: int
    device_session_losses: int
    link_losses: int
    low_latency: bool
    enabled: bool
    healthy: bool
    device_faults: list[str]
    """History: the name of every fault the device reported (FaultReport), oldest first."""
    device_faults_current: list[str] | None
    """Now: the fault bits set in the newest telemetry by name (None before any telemetry)."""
    protocol_fault: str | None
