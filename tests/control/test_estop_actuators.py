"""An e-stop switches the actuators off on purpose: that is not reported as a device fault."""

from __future__ import annotations

import numpy as np

from exoctl.config.schema import load_config
from exoctl.control.safety import SafetyInputs, SafetyLayer, SafetyState

CFG = load_config()
RATE = 500.0
DT = 1.0 / RATE


def _run(layer: SafetyLayer, inp: SafetyInputs, req: float, ticks: int) -> np.ndarray:
    n = len(CFG.device.joints)
    out = np.zeros(n)
    r = np.full(n, req)
    for _ in range(ticks):
        inp.now += DT
        layer.apply(r, r, inp, out)
    return out


def test_estop_then_actuators_off_records_only_the_estop() -> None:
    layer = SafetyLayer(CFG.device.joints, CFG.safety, RATE)
    inp = SafetyInputs.healthy(len(CFG.device.joints), now=10.0)
    inp.angles[:] = 0.5
    _run(layer, inp, 20.0, 100)
    layer.estop(inp.now)
    inp.actuators_enabled = False  # Controller.estop also disables the firmware
    out = _run(layer, inp, 20.0, int(5 * CFG.safety.telemetry_timeout_s / DT))
    assert not out.any() and layer.state == SafetyState.ESTOP
    assert [e.kind for e in layer.events(include_pending=True)] == ["estop"]
    # Re-enabled by the clear (as Controller.clear_fault does for a session): clean again.
    inp.actuators_enabled = True
    _run(layer, inp, 20.0, 5)
    assert layer.clear_fault(inp.now)
    # Off while assisting *without* an e-stop is still a fault (the device's, this time).
    inp.actuators_enabled = False
    _run(layer, inp, 20.0, int(2 * CFG.safety.telemetry_timeout_s / DT))
    assert layer.state >= SafetyState.SAFE_STOP
    assert [e.kind for e in layer.events(include_pending=True)] == ["actuators_off"]
