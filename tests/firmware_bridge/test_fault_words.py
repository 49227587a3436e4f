"""Device fault bits in words, from the protocol's one table (FAULT_NAMES): what a clinician
reads instead of "firmware fault bits 0x1"."""

from __future__ import annotations

import numpy as np

from exoctl.config.schema import load_config
from exoctl.control.safety import SafetyInputs, SafetyLayer
from firmware_bridge import protocol as P


def test_every_named_bit_is_in_words() -> None:
    for bit, name in P.FAULT_NAMES.items():
        assert P.fault_names(bit) == [name]
        text = P.fault_text(bit)
        assert name.replace("_", " ") in text and f"0x{bit:04x}" in text
        assert ("latched" in text) == bool(bit & P.LATCHED_FAULTS)


def test_several_bits_and_an_unknown_one() -> None:
    bits = P.FAULT_HOST_TIMEOUT | P.FAULT_TORQUE_CLAMPED | 0x0100
    assert P.fault_names(bits) == ["host_timeout", "torque_clamped", "bit 0x0100"]
    assert P.fault_text(bits).startswith("host timeout (latched), torque clamped, bit 0x0100")
    assert P.fault_text(0) == "no device fault"


def test_the_safety_layer_names_a_firmware_fault_in_words() -> None:
    cfg = load_config()
    n = len(cfg.device.joints)
    layer = SafetyLayer(cfg.device.joints, cfg.safety, 500.0)
    inp = SafetyInputs.healthy(n, now=10.0)
    out = np.zeros(n)
    inp.firmware_fault_bits = P.FAULT_HOST_TIMEOUT
    inp.now = 10.002
    layer.apply(np.ones(n), np.ones(n), inp, out)
    (event,) = [e for e in layer.events(include_pending=True) if e.kind == "firmware_fault"]
    assert "host timeout (latched)" in event.detail, event.detail
