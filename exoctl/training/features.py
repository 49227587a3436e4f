"""Per-tick features: the module is ``exoctl.offline.features`` (the HIL bench's replay score
uses it too); this name stays for code that imports it from here."""

from exoctl.offline.features import (
    TickSet,
    TickSpec,
    calibrate_recordings,
    condition,
    feature_layout,
    fingerprint,
    signal_ticks,
    tick_features,
    windows,
)

__all__ = [
    "TickSet",
    "TickSpec",
    "calibrate_recordings",
    "condition",
    "feature_layout",
    "fingerprint",
    "signal_ticks",
    "tick_features",
    "windows",
]
