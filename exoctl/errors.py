"""One base for the exceptions exoctl raises on purpose.

Why one base: a caller (the CLI, the daemon, the HIL runner) can tell "exoctl refused this and
the message says why, for a person" (``except ExoctlError``) from a bug (anything else), and a
handler never has to guess which ``ValueError`` meant what. The control loop relies on this:
it treats exactly :class:`NonFiniteEmg` as bad EMG, so a shape mismatch or a programming error
in a stage stops the loop (and the firmware's own timeout zeroes torque) instead of being
mistaken for a noisy electrode.

Each project exception keeps its name, its module and the builtin base it had before
(``ValueError`` or ``RuntimeError``), so every existing ``import`` and ``except`` still works:

=========================  ==================================  ============================
class                      module                              category (builtin base)
=========================  ==================================  ============================
ConfigError                exoctl.config.yamlfile (+ schema)   DataError (ValueError)
CalibrationError           exoctl.signal.calibration           DataError (ValueError)
ModelError                 exoctl.estimation.torque_model      DataError (ValueError)
DatasetError               exoctl.data.spec                    DataError (ValueError)
ImportErrorWithPath        exoctl.data.importers               DataError (ValueError)
NonFiniteEmg               exoctl.errors                       DataError (ValueError)
AcquisitionError           exoctl.acquisition.sources          ExoctlError (RuntimeError)
ControllerError            exoctl.runtime.controller           ExoctlError (RuntimeError)
RecorderError              exoctl.recordings.store (+ recorder) ExoctlError (RuntimeError)
ChildError                 exoctl.hil.processes                ExoctlError (RuntimeError)
RpcError (+ 2 subclasses)  exoctl.service.rpc                  ExoctlError
ClientError (+ 4)          exoctl.service.client               ExoctlError (RuntimeError)
=========================  ==================================  ============================

``firmware_bridge`` is a separate top-level package (the product's design: it is what a
firmware team ships and tests without exoctl installed), so it does not import from here. Its
errors (``LinkError``, ``FrameError``, ``FirmwareToolError``) derive from
:class:`firmware_bridge.errors.BridgeError` instead; :data:`EXPECTED_ERRORS` names both bases for a handler that means "any refusal with
a message for a person".
"""

from __future__ import annotations

from firmware_bridge.errors import BridgeError


class ExoctlError(Exception):
    """Base of every exception exoctl raises on purpose; the message is meant for a person."""


class DataError(ExoctlError, ValueError):
    """Content that must not be used: a configuration, calibration, model, data set, imported
    file or signal. The message names where (file, line, key) and what is allowed."""


class NonFiniteEmg(DataError):
    """An EMG (or excitation, or activation) chunk with NaN or infinite values.

    The signal-chain stages raise it *before* touching their filter state, so a refused chunk
    leaves them as they were. The control loop catches exactly this class: the estimate goes
    NaN and the safety layer's model-output watchdog acts on it.
    """


EXPECTED_ERRORS: tuple[type[Exception], ...] = (ExoctlError, BridgeError)
"""Everything exoctl or firmware_bridge raises on purpose (``except EXPECTED_ERRORS``)."""
