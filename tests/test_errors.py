"""The exception tree: one base per package, each class still what it was (names, modules,
builtin bases), and the signal chain's refusal of bad EMG is exactly NonFiniteEmg."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from exoctl.errors import EXPECTED_ERRORS, DataError, ExoctlError, NonFiniteEmg
from firmware_bridge.errors import BridgeError

# (module, class, category, the builtin base it had before the tree existed)
TREE = [
    ("exoctl.config.schema", "ConfigError", DataError, ValueError),
    ("exoctl.signal.calibration", "CalibrationError", DataError, ValueError),
    ("exoctl.estimation.torque_model", "ModelError", DataError, ValueError),
    ("exoctl.data.dataset", "DatasetError", DataError, ValueError),
    ("exoctl.data.importers", "ImportErrorWithPath", DataError, ValueError),
    ("exoctl.acquisition.sources", "AcquisitionError", ExoctlError, RuntimeError),
    ("exoctl.runtime.controller", "ControllerError", ExoctlError, RuntimeError),
    ("exoctl.recordings.recorder", "RecorderError", ExoctlError, RuntimeError),
    ("exoctl.service.client", "ClientError", ExoctlError, RuntimeError),
    ("exoctl.service.client", "DaemonNotRunning", ExoctlError, RuntimeError),
    ("exoctl.service.rpc", "RpcError", ExoctlError, Exception),
    ("exoctl.service.rpc", "Refused", ExoctlError, Exception),
    ("firmware_bridge.link", "LinkError", BridgeError, RuntimeError),
    ("firmware_bridge.protocol", "FrameError", BridgeError, ValueError),
]


@pytest.mark.parametrize(("module", "name", "category", "builtin"), TREE)
def test_every_class_is_under_its_base_and_keeps_its_builtin_base(
    module, name, category, builtin
) -> None:
    cls = getattr(importlib.import_module(module), name)
    assert issubclass(cls, category) and issubclass(cls, builtin)
    assert issubclass(cls, EXPECTED_ERRORS)


def test_non_finite_emg_is_data_error_and_value_error() -> None:
    assert issubclass(NonFiniteEmg, DataError) and issubclass(NonFiniteEmg, ValueError)
    assert not issubclass(BridgeError, ExoctlError)  # firmware_bridge imports nothing of exoctl


def test_each_stage_refuses_non_finite_input_as_non_finite_emg() -> None:
    from exoctl.signal.activation import ActivationDynamics
    from exoctl.signal.dsp import EmgConditioner
    from exoctl.signal.synergy import OnlineNNLS

    bad = np.ones((4, 2))
    bad[2, 1] = np.inf
    with pytest.raises(NonFiniteEmg, match="NaN or infinite"):
        EmgConditioner(2000.0, 2).process(bad)
    with pytest.raises(NonFiniteEmg, match="NaN or infinite"):
        ActivationDynamics(2, 2000.0).process(bad)
    with pytest.raises(NonFiniteEmg, match="NaN or infinite"):
        OnlineNNLS(np.eye(2)).solve(np.array([0.1, np.nan]))
    # a shape error is not bad EMG: a plain ValueError, which the control loop does not absorb
    with pytest.raises(ValueError, match="shape") as e:
        EmgConditioner(2000.0, 2).process(np.ones((4, 3)))
    assert not isinstance(e.value, NonFiniteEmg)
