"""The exceptions firmware_bridge raises on purpose, under one base.

firmware_bridge is a top-level package of its own (the host side of the firmware protocol,
usable without the rest of exoctl), so its base is here rather than in ``exoctl.errors``;
exoctl names both bases together as ``exoctl.errors.EXPECTED_ERRORS``. Each class keeps the
builtin base it had, so existing ``except RuntimeError`` / ``except ValueError`` still work.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every exception firmware_bridge raises on purpose."""


class LinkError(BridgeError, RuntimeError):
    """The link cannot do what was asked (timeout, version or configuration mismatch)."""
