"""The streaming torque estimator: raw EMG chunk in, estimated joint torques out.

One ``step`` per control tick. Every new EMG sample goes through the causal conditioning and
the activation dynamics (their states must see every sample); the synergy solve and the model
run once, on the newest sample, because only the newest estimate is commanded. All buffers are
preallocated by the stages; ``step`` returns views that stay valid until the next call.
"""

from __future__ import annotations

import numpy as np

from exoctl.config import Config
from exoctl.signal.activation import ActivationDynamics
from exoctl.signal.calibration import Calibration, load_calibration
from exoctl.signal.dsp import EmgConditioner
from exoctl.signal.synergy import OnlineNNLS
from exoctl.torque_model import ModelError, TorqueModel, feature_names


class Estimator:
    def __init__(
        self, cfg: Config, calibration: Calibration, model: TorqueModel, max_chunk: int = 4096
    ) -> None:
        muscles = cfg.emg.muscles
        calibration.check_muscles(muscles)
        model.check_layout(cfg.joint_names, muscles, calibration.k, "configuration/calibration")
        expected = feature_names(muscles, calibration.k)
        if model.info.features != expected:
            raise ModelError(
                f"{model.path}: feature layout {list(model.info.features)} is not the one this "
                f"estimator produces {list(expected)}"
            )
        fs = cfg.emg.sampling_rate_hz
        est = cfg.estimator
        act = est.activation
        self.conditioner = EmgConditioner(
            fs,
            len(muscles),
            bandpass_hz=est.bandpass_hz,
            notch_hz=est.notch_hz,
            envelope_hz=est.envelope_hz,
            mvc=calibration.mvc,
            enveloped_input=est.input == "enveloped",
            max_chunk=max_chunk,
        )
        self.activation_dynamics = ActivationDynamics(
            len(muscles),
            fs,
            c1=act.c1,
            c2=act.c2,
            shape_a=act.shape_a,
            delay_s=act.delay_s,
            reference_rate_hz=act.reference_rate_hz,
            max_chunk=max_chunk,
        )
        self.nnls = OnlineNNLS(calibration.W)
        self.model = model
        self.calibration = calibration
        self.k = calibration.k
        self.n_muscles = len(muscles)
        # Latest values, for the recorder and the status view (copied, not recomputed).
        self.activation = np.zeros(self.n_muscles)
        self.synergy = np.zeros(self.k)
        self.estimate = np.zeros(len(cfg.joint_names))

    def step(
        self,
        emg: np.ndarray,
        angles: np.ndarray | None = None,
        velocities: np.ndarray | None = None,
    ) -> np.ndarray:
        """Consume (n, channels) new raw samples; return the estimate for the newest one.

        ``angles`` and ``velocities`` are the latest joint telemetry (rad, rad/s, joint order),
        for models whose feature layout includes them; the default layout does not.
        """
        if emg.shape[0] == 0:
            return self.estimate
        e = self.conditioner.process(emg)
        a = self.activation_dynamics.process(e)
        self.activation[:] = a[-1]
        h = self.nnls.solve(self.activation)
        self.synergy[:] = h
        feats = self.model.features[0]
        feats[: self.k] = h
        feats[self.k :] = self.activation
        self.estimate[:] = self.model.run()
        return self.estimate

    def reset(self) -> None:
        self.conditioner.reset()
        self.activation_dynamics.reset()
        self.nnls.reset()
        self.activation[:] = 0.0
        self.synergy[:] = 0.0
        self.estimate[:] = 0.0


def build_estimator(cfg: Config, max_chunk: int = 4096) -> Estimator:
    """Load the configured calibration and model and check they fit the configuration."""
    calibration = load_calibration(cfg.estimator.calibration)
    model = TorqueModel(cfg.model.path)
    return Estimator(cfg, calibration, model, max_chunk=max_chunk)
