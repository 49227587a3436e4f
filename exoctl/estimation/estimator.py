"""The streaming torque estimator: raw EMG chunk in, estimated joint torques out.

One ``step`` per control tick. Every new EMG sample goes through the causal conditioning and
the activation dynamics (their states must see every sample); the synergy solve and the model
run once, on the newest sample, because only the newest estimate is commanded. All buffers are
preallocated by the stages; ``step`` returns views that stay valid until the next call.

Per tick the estimator forms a source vector ``[h, a, angles, velocities]`` (the latter two
from the telemetry the control loop read first) and the feeder of the model's input kind
(``exoctl.estimation.input_kinds``) gives the model the features it names in the form that
kind takes (the newest tick, a window of the last N ticks, segment sums carried from tick to
tick for the streaming network, ...).
A model made for a rate k times lower than the control rate steps on every k-th tick (its
estimate held in between; see ``TorqueModel.ticks_per_step``).

The model's rate (``estimator.model_every_ticks``, k): the signal chain and the model's input
(window rows, segment sums) still take one row per control tick, so a model's lags, counted in
its own ticks, keep their meaning and no model is re-exported for another rate; only the ONNX
run happens on every k-th row, on the newest rows, and its value is held in between. The held
estimate keeps the instant of the row it was computed from (``paired_at``); ``ran`` says
whether the last ``step`` ran the model and ``held`` whether rows wait for the next run, so
that the estimate's age counts from its run. Rows are counted from the start or the last
``reset``; offline scoring holds the value the same way (``exoctl.offline.predict.predict``,
``every``).

EMG at any rate (``exoctl.signal.tick_grid``), as training and evaluation take it: at a whole
multiple of the tick rate the chain runs sample by sample and a tick reads its newest sample;
at any other rate (100 Hz lab envelopes, raw EMG at 1.5 kHz) the envelope is made at the EMG's
own rate, carried onto the tick grid by the samples' time stamps (``TickCarrier``: linear, one
sample late) and the MVC division and activation dynamics run once per tick at the tick rate,
exactly as ``exoctl.offline.features.signal_ticks`` computes them offline.

EMG and kinematics are paired by their time stamps on one clock (``exoctl.estimation.pairing``):
the telemetry's device time is mapped onto the host's clock, and each row is made for one
instant that both inputs cover, both read at that instant. For carried EMG the rows follow the
tick grid in time, not the calls: the estimator makes one row per tick-grid instant up to the
paired instant (up to ``MAX_CATCHUP_S`` of them after a late call), so a window or sums model
sees as many rows as time passed, as offline, even when the control loop missed a deadline.
For EMG at a whole multiple of the tick rate the row is the newest sample's, and the
kinematics are read at that sample's stamp.

A model whose joints are some of the device's (a right-leg model on a four-joint device) runs;
the other joints' estimate is zero (``unassisted``), so they get no assistance.
"""

from __future__ import annotations

import math

import numpy as np

from exoctl.config.schema import Config
from exoctl.errors import NonFiniteEmg
from exoctl.estimation.pairing import DeviceClock, KinematicsHistory, paired_time
from exoctl.estimation.torque_model import (
    ModelError,
    TorqueModel,
    calibration_fingerprint,
    feature_names,
    feature_sources,
)
from exoctl.signal.calibration import Calibration, load_calibration
from exoctl.signal.chain import SignalChain, signal_differences
from exoctl.signal.dsp import EmgConditioner
from exoctl.signal.tick_grid import TickCarrier, samples_per_tick

MAX_CATCHUP_S = 0.1  # tick-grid rows made up after a late call; beyond, the grid jumps


class Estimator:
    def __init__(
        self, cfg: Config, calibration: Calibration, model: TorqueModel, max_chunk: int = 4096
    ) -> None:
        muscles = cfg.emg.muscles
        joints = cfg.joint_names
        calibration.check_muscles(muscles)
        model.check_layout(
            joints,
            muscles,
            calibration.k,
            "configuration/calibration",
            tick_rate_hz=cfg.tick_rate_hz,
            calibration=calibration_fingerprint(muscles, calibration.mvc, calibration.W),
            joint_subset=True,
        )
        idx = feature_sources(model.info.features, muscles, joints, calibration.k)
        k, m, nj = calibration.k, len(muscles), len(joints)
        # The shipped linear layout [h, a] is the source vector's head: no gather needed.
        direct = k + m if model.info.features == feature_names(muscles, k) else 0
        self._src = np.zeros(k + m + 2 * nj, dtype=np.float32)
        self._h_src = self._src[:k]
        self._a_src = self._src[k : k + m]
        self._ang_src = self._src[k + m : k + m + nj]
        self._vel_src = self._src[k + m + nj :]
        self._instant = not model.info.input.has_history
        self._feeder = model.info.input.feeder(model.features[0], idx, direct)
        self.ticks_per_step = model.ticks_per_step(cfg.tick_rate_hz) or 1
        self.model_every = cfg.estimator.model_every_ticks
        self._ticks = 0
        self._pushed = False  # a row went to the model's input since its last run
        self._due = False  # a row the model is to run on (its input not changed since)
        self._due_at = math.nan  # that row's instant (LSL clock)
        self._row_at = math.nan  # the newest row's instant (direct path)
        self.ran = False
        """Whether the last ``step`` ran the model (False: the estimate was held)."""
        self.model_runs = 0
        chain = SignalChain.from_config(cfg, calibration, max_chunk)
        differs = signal_differences(model.info.extra.get("emg_signal"), chain.settings)
        if differs:
            raise ModelError(
                f"{model.path}: trained on another kind of EMG signal than this configuration's "
                f"chain produces ({cfg.source or 'configuration'}):\n  " + "\n  ".join(differs)
            )
        fs, rate = cfg.emg.sampling_rate_hz, cfg.tick_rate_hz
        # EMG at a rate that is not a whole multiple of the tick rate: carried onto the tick
        # grid (module docstring); the source-rate stage makes the envelope of raw EMG.
        self.carrier: TickCarrier | None = None
        self._source_stage: EmgConditioner | None = None
        if samples_per_tick(fs, rate) is None:
            settings = chain.settings
            if settings.input == "raw":
                self._source_stage = SignalChain(
                    settings, fs, len(muscles), max_chunk=max_chunk
                ).conditioner
            self.carrier = TickCarrier(fs, len(muscles))
            chain = SignalChain(
                settings.with_input("enveloped"),
                rate,
                len(muscles),
                mvc=calibration.mvc,
                W=calibration.W,
                max_chunk=1,
            )
        self.conditioner = chain.conditioner
        self.activation_dynamics = chain.activation_dynamics
        assert chain.nnls is not None  # a chain made with a calibration has its W
        self.nnls = chain.nnls
        self.model = model
        self.calibration = calibration
        self.k = calibration.k
        self.n_muscles = len(muscles)
        # Latest values, for the recorder and the status view (copied, not recomputed).
        self.activation = np.zeros(self.n_muscles)
        self.synergy = np.zeros(self.k)
        self.estimate = np.zeros(len(cfg.joint_names))
        # The model's outputs in the device's joint order (all of them, or a subset).
        self.assisted = tuple(model.info.joints)
        self.unassisted = tuple(j for j in joints if j not in self.assisted)
        self._out_idx: np.ndarray | None = None
        if self.assisted != tuple(joints):
            self._out_idx = np.array([joints.index(j) for j in self.assisted], dtype=np.intp)
        self._row = np.zeros((1, self.n_muscles))  # the carried envelope, one row per tick
        self._carried = False  # a sample has arrived since the start or a reset
        # Pairing by time stamps (module docstring).
        self._uses_kinematics = any(
            f.startswith(("angle:", "velocity:")) for f in model.info.features
        )
        self.device_clock = DeviceClock()
        self.kinematics = KinematicsHistory(nj)
        self.period_s = 1.0 / rate
        self._max_catchup = max(1, int(round(MAX_CATCHUP_S * rate)))
        self._grid0 = math.nan  # the tick grid's first instant (LSL clock)
        self._grid_k = 0  # the next grid instant is grid0 + k * period
        self._emg_newest = -math.inf  # the newest EMG sample's stamp
        self.paired_at = math.nan  # the instant the newest estimate is for (LSL clock)

    @property
    def held(self) -> bool:
        """Rows have entered the model's input since its last run: the estimate is older than
        the newest row (held by ``model_every``), and its age counts from that run."""
        return self._pushed

    @property
    def needs_time(self) -> bool:
        """Whether ``step`` needs the samples' stamps and the tick's LSL time (carried EMG)."""
        return self.carrier is not None

    def step(
        self,
        emg: np.ndarray,
        angles: np.ndarray | None = None,
        velocities: np.ndarray | None = None,
        stamps: np.ndarray | None = None,
        now: float | None = None,
        fw_time_s: float = math.nan,
        received_at: float = math.nan,
    ) -> np.ndarray:
        """Consume (n, channels) new raw samples; return the newest estimate.

        ``stamps`` (the samples' LSL times) and ``now`` (the tick's LSL time) are needed when
        the EMG is carried onto the tick grid (``needs_time``).

        ``angles`` and ``velocities`` are the latest joint telemetry (rad, rad/s, joint order),
        for models whose feature layout includes them; the default layout does not. ``None``
        keeps the previous values (zero before any telemetry). ``fw_time_s`` is the
        telemetry's device time and ``received_at`` the host time it arrived: with them the
        kinematics are paired with the EMG by time (module docstring); without them they are
        taken as measured at ``now`` (or, for EMG at a multiple of the tick rate, used as is).

        Carried EMG: one row per tick-grid instant up to the paired instant (none when no new
        instant is covered: the estimate holds). Otherwise an empty chunk keeps the last
        estimate for an instantaneous model; a model that sees past ticks (its input kind ``has_history``) still advances by one tick
        (time passed, the telemetry may have changed).
        """
        if self.carrier is not None:
            if stamps is None or now is None:
                raise ValueError(
                    "EMG carried onto the tick grid needs the samples' stamps and the tick's time"
                )
            return self._step_carried(emg, angles, velocities, stamps, now, fw_time_s, received_at)
        if angles is not None and velocities is not None:
            if math.isnan(fw_time_s) or stamps is None or not stamps.shape[0]:
                self._ang_src[:] = angles
                self._vel_src[:] = velocities
            else:  # the kinematics at the newest EMG sample's stamp
                t_kin = self.device_clock.to_host(fw_time_s, received_at)
                self.kinematics.push(t_kin, angles, velocities)
                self.kinematics.at(float(stamps[-1]), self._ang_src, self._vel_src)
        elif angles is not None:
            self._ang_src[:] = angles
        elif velocities is not None:
            self._vel_src[:] = velocities
        self.ran = False
        if emg.shape[0] == 0 and self._instant:
            return self.estimate
        if emg.shape[0]:
            self._chain(emg)
            if stamps is not None and stamps.shape[0]:
                self._row_at = float(stamps[-1])
        self._next_row(self._row_at)
        if self._due:
            self._run_model()
        return self.estimate

    def _next_row(self, at: float) -> None:
        """The sources of one tick's row (``self._src``, for instant ``at``) into the model's
        input. A model at a lower rate takes every ``ticks_per_step``-th row; the model is due
        on every ``model_every``-th row. A due row whose input the next push would change is
        run first, so the held value is always the one computed on its own row."""
        tick = self._ticks
        self._ticks = tick + 1
        run = tick % self.model_every == 0
        if tick % self.ticks_per_step == 0:
            if self._due and not run:
                self._run_model()
            self._feeder.push(self._src)
            self._pushed = True
        if run and self._pushed:
            self._due = True
            self._due_at = at

    def _run_model(self) -> None:
        if self._out_idx is None:
            self.estimate[:] = self.model.run()
        else:
            self.estimate[self._out_idx] = self.model.run()
        self.paired_at = self._due_at
        self._due = self._pushed = False
        self.ran = True
        self.model_runs += 1

    def _step_carried(
        self,
        emg: np.ndarray,
        angles: np.ndarray | None,
        velocities: np.ndarray | None,
        stamps: np.ndarray,
        now: float,
        fw_time_s: float,
        received_at: float,
    ) -> np.ndarray:
        """New samples into the carrier (enveloped at their own rate), the telemetry into the
        kinematics history; then one row per tick-grid instant up to the paired instant, each
        with both inputs read at that instant, through MVC, activation dynamics, NNLS and the
        model's feeder; the model runs once, on the newest row."""
        assert self.carrier is not None
        self.ran = False
        if emg.shape[0]:
            if self._source_stage is not None:
                env = self._source_stage.process(emg)  # refuses non-finite samples
            else:
                if not np.isfinite(np.add.reduce(emg, axis=None)):
                    raise NonFiniteEmg("EMG chunk contains NaN or infinite samples")
                env = emg
            self.carrier.push(env, stamps)
            self._emg_newest = float(stamps[-1])
            self._carried = True
        if angles is not None and velocities is not None:
            t_kin = now
            if not math.isnan(fw_time_s):
                t_kin = self.device_clock.to_host(fw_time_s, received_at)
            self.kinematics.push(t_kin, angles, velocities)
        if not self._carried:
            return self.estimate  # no sample yet: nothing to carry (offline, tick 0 is the
            # first sample's)
        t = paired_time(
            now,
            self._emg_newest + self.carrier.late_s,
            self.kinematics.newest if self._uses_kinematics else math.inf,
        )
        period = self.period_s
        if math.isnan(self._grid0):
            self._grid0, self._grid_k = t, 0
        behind = int(math.floor((t - self._grid0) / period + 1e-6)) - self._grid_k + 1
        if behind > self._max_catchup:  # a long stall: rows older than the limit are lost
            self._grid_k += behind - self._max_catchup
        while True:
            g = self._grid0 + self._grid_k * period
            if g > t + 1e-6 * period:
                break
            self._grid_k += 1
            self._row[0] = self.carrier.at(g)
            self.kinematics.at(g, self._ang_src, self._vel_src)
            self._chain(self._row)
            self._next_row(g)
        if self._due:  # once per call, on the newest due row
            self._run_model()
        return self.estimate

    def _chain(self, emg: np.ndarray) -> None:
        """Conditioning -> activation -> synergies on new rows; the newest row's activation and
        synergies become the model's sources (one place for both the direct and carried step)."""
        e = self.conditioner.process(emg)
        a = self.activation_dynamics.process(e)
        self.activation[:] = a[-1]
        h = self.nnls.solve(self.activation)
        self.synergy[:] = h
        self._a_src[:] = self.activation
        self._h_src[:] = h

    def invalidate(self) -> None:
        """The newest input was refused (non-finite EMG): the estimate reads NaN until a step
        on good samples, so the safety layer's model-output watchdog sees the fault and a
        window model cannot compute a finite estimate from what it held before."""
        self.estimate.fill(np.nan)

    def reset(self) -> None:
        self.conditioner.reset()
        self.activation_dynamics.reset()
        self.nnls.reset()
        self.activation[:] = 0.0
        self.synergy[:] = 0.0
        self.estimate[:] = 0.0
        self._src[:] = 0.0
        self._feeder.reset()
        self._ticks = 0
        self._pushed = self._due = self.ran = False
        self._due_at = self._row_at = math.nan
        if self._source_stage is not None:
            self._source_stage.reset()
        if self.carrier is not None:
            self.carrier.reset()
        self._carried = False
        self.device_clock.reset()
        self.kinematics.reset()
        self._grid0 = math.nan
        self._grid_k = 0
        self._emg_newest = -math.inf
        self.paired_at = math.nan


def check_model_and_calibration(cfg: Config) -> None:
    """Load the configured calibration and model and check they fit, as the controller will.

    For commands that start other processes (``exoctl hil``, ``exoctl bench up``): a bad
    model or calibration is then refused in the parent, in a second or two and before any
    child starts, instead of by the controller's process once the simulator is up (8-30 s).
    """
    build_estimator(cfg, max_chunk=1)


def build_estimator(cfg: Config, max_chunk: int = 4096) -> Estimator:
    """Load the configured calibration and model and check they fit the configuration."""
    calibration = load_calibration(cfg.estimator.calibration)
    model = TorqueModel(cfg.model.path)
    return Estimator(cfg, calibration, model, max_chunk=max_chunk)
