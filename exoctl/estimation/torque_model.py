"""The torque model: an ONNX graph run through onnxruntime, one inference per control tick.

Contract: one float32 input ``features`` and one float32 output ``torque`` of shape
(1, n_joints). The model's ``metadata_props`` carry a JSON document under the key ``exoctl``
naming the feature layout, the joints, the muscles and the synergy count, so that a model
trained for another electrode layout or another joint set is refused at load time instead of
producing plausible-looking nonsense at run time.

The input's form, stated by the metadata's ``input`` entry (absent: instantaneous), is one of
the input kinds of ``exoctl.estimation.input_kinds`` (its ``KINDS``: the newest tick, a window
of the last N ticks, segment sums of a window, ...). Each kind's record holds that entry's
parameters and says the input's shape, how the estimator feeds it tick by tick and how
training builds it offline; nothing here depends on which kind it is. A model with a past
has a tick rate R, the rate its time runs at: a model made for another rate sees time wrongly
scaled. The control rate must be R or a whole multiple of it: at k x R the model is evaluated
on every k-th control tick (the features of that tick) and its estimate held in between,
which is how a 500 Hz network runs in a 1 kHz loop.

Per-tick feature names (``features``): ``h<i>`` synergy activation i (0 <= i < K),
``a:<muscle>`` muscle activation, ``angle:<joint>`` joint angle (rad) and ``velocity:<joint>``
joint velocity (rad/s) from the latest telemetry. An optional ``calibration_fingerprint``
(see ``calibration_fingerprint``) ties a model to the calibration whose W and MVC made its
inputs: the same K with another W would give other synergy activations.

Session settings follow onnxruntime's advice for small models on a latency budget: one intra-
and one inter-op thread, sequential execution, and no spinning thread pools (spinning causes
latency spikes on a 2-core machine that also runs the acquisition thread). Inputs and outputs
are bound once to preallocated numpy buffers (IOBinding), so a tick allocates nothing here.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from exoctl.errors import DataError
from exoctl.estimation.input_kinds import (
    InputKindError,
    Instant,
    ModelInput,
    Window,
    parse_input,
)
from exoctl.regular_file import check_regular

METADATA_KEY = "exoctl"
MODEL_FORMAT = "exoctl-torque-model/1"


class ModelError(DataError):
    """A model file that this configuration must not use."""


_CORE_KEYS = ("features", "joints", "muscles", "n_synergies", "input")


@dataclass(frozen=True)
class ModelInfo:
    features: tuple[str, ...]
    joints: tuple[str, ...]
    muscles: tuple[str, ...]
    n_synergies: int
    extra: dict
    input: ModelInput = Instant()
    """The input kind's record, with its parameters (``exoctl.estimation.input_kinds``)."""

    @property
    def input_kind(self) -> str:
        return self.input.name

    @property
    def window_ticks(self) -> int:
        """Ticks of the past (the newest included) the model's input covers."""
        return self.input.span_ticks

    @property
    def tick_rate_hz(self) -> float | None:
        return self.input.tick_rate_hz

    @staticmethod
    def from_json(path: Path, text: str) -> ModelInfo:
        try:
            doc = json.loads(text)
            if doc.get("format") != MODEL_FORMAT:
                raise ModelError(
                    f"{path}: metadata format {doc.get('format')!r}, expected {MODEL_FORMAT!r}"
                )
            try:
                inp = parse_input(doc.get("input"))
            except InputKindError as e:
                raise ModelError(f"{path}: {e}") from None
            return ModelInfo(
                features=tuple(doc["features"]),
                joints=tuple(doc["joints"]),
                muscles=tuple(doc["muscles"]),
                n_synergies=int(doc["n_synergies"]),
                extra={k: v for k, v in doc.items() if k not in _CORE_KEYS},
                input=inp,
            )
        except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as e:
            if isinstance(e, ModelError):
                raise
            raise ModelError(f"{path}: unreadable '{METADATA_KEY}' metadata: {e}") from None


def save_model(model, path: Path, producer: str, metadata: dict) -> None:
    """Stamp an ONNX ModelProto with its producer and exoctl metadata, check it and write it.

    Every exporter (linear baseline, lagged ridge, network) ends here, so every model carries
    the metadata that the loader checks. Needs the ``onnx`` package (dev/train extras), which
    the controller itself never imports.
    """
    import onnx
    from onnx import helper

    from exoctl import __version__

    model.producer_name = producer
    model.producer_version = __version__
    del model.metadata_props[:]
    helper.set_model_props(model, {METADATA_KEY: json.dumps(metadata, sort_keys=True)})
    onnx.checker.check_model(model)
    Path(path).write_bytes(model.SerializeToString())


def feature_names(muscles: Sequence[str], n_synergies: int) -> tuple[str, ...]:
    """The default feature layout: synergy activations, then muscle activations."""
    return tuple(f"h{i}" for i in range(n_synergies)) + tuple(f"a:{m}" for m in muscles)


def kinematic_feature_names(joints: Sequence[str]) -> tuple[str, ...]:
    """Joint angles then joint velocities, from telemetry."""
    return tuple(f"angle:{j}" for j in joints) + tuple(f"velocity:{j}" for j in joints)


def window_input(ticks: int, tick_rate_hz: float) -> dict:
    """The metadata ``input`` entry of a model that sees the last ``ticks`` control ticks
    (the window kind's entry, for callers that write window models' metadata by hand)."""
    return Window(int(ticks), float(tick_rate_hz)).entry()


def calibration_fingerprint(muscles: Sequence[str], mvc: np.ndarray, W: np.ndarray) -> str:
    """A hash of what a calibration does to the signals (muscle order, MVC, W), not of its file."""
    h = hashlib.sha256()
    h.update("\n".join(muscles).encode())
    h.update(np.ascontiguousarray(mvc, dtype="<f8").tobytes())
    h.update(np.ascontiguousarray(W, dtype="<f8").tobytes())
    return "sha256:" + h.hexdigest()


def session_options() -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return so


class TorqueModel:
    """Loads, checks and runs the ONNX torque model."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        if not self.path.exists():
            raise ModelError(f"{self.path}: model file not found")
        check_regular(self.path, "a model", ModelError)
        try:
            self._session = ort.InferenceSession(
                str(self.path), session_options(), providers=["CPUExecutionProvider"]
            )
        except Exception as e:  # onnxruntime raises its own exception types
            raise ModelError(f"{self.path}: onnxruntime cannot load it: {e}") from None
        meta = self._session.get_modelmeta().custom_metadata_map
        if METADATA_KEY not in meta:
            raise ModelError(f"{self.path}: no '{METADATA_KEY}' metadata; not an exoctl model")
        self.info = ModelInfo.from_json(self.path, meta[METADATA_KEY])
        inputs = {i.name: i for i in self._session.get_inputs()}
        outputs = {o.name: o for o in self._session.get_outputs()}
        if set(inputs) != {"features"} or "torque" not in outputs:
            raise ModelError(
                f"{self.path}: expected input 'features' and output 'torque', "
                f"found inputs {sorted(inputs)} and outputs {sorted(outputs)}"
            )
        n_f, n_j = len(self.info.features), len(self.info.joints)
        in_shape = inputs["features"].shape
        self._check_shape("input 'features'", in_shape, n_f)
        self._check_shape("output 'torque'", outputs["torque"].shape, n_j)
        shape = self.info.input.shape(n_f)
        if len(in_shape) != 1 + len(shape) or any(
            isinstance(got, int) and got != want
            for got, want in zip(in_shape[1:-1], shape[:-1], strict=False)
        ):
            raise ModelError(
                f"{self.path}: input 'features' has shape {in_shape}, metadata says "
                f"{self.info.input.describe()}: (1, {', '.join(map(str, shape))})"
            )
        self.features = np.zeros((1, *shape), dtype=np.float32)
        self.torque = np.zeros((1, n_j), dtype=np.float32)
        self._io = self._session.io_binding()
        self._io.bind_ortvalue_input("features", ort.OrtValue.ortvalue_from_numpy(self.features))
        self._io.bind_ortvalue_output("torque", ort.OrtValue.ortvalue_from_numpy(self.torque))

    def _check_shape(self, what: str, shape: list, n: int) -> None:
        last = shape[-1] if shape else None
        if isinstance(last, int) and last != n:
            raise ModelError(f"{self.path}: {what} has width {last}, metadata says {n}")

    def check_layout(
        self,
        joints: Sequence[str],
        muscles: Sequence[str],
        n_synergies: int,
        where: str,
        *,
        tick_rate_hz: float | None = None,
        calibration: str | None = None,
        joint_subset: bool = False,
    ) -> None:
        """Refuse a model whose inputs or outputs do not match the configuration/calibration.

        ``joint_subset``: a model whose joints are some of ``joints`` is accepted (the
        estimator gives the others zero: no assistance), e.g. a right-leg model on a
        four-joint device.

        ``tick_rate_hz`` (the control rate) is checked against the model's tick rate (it
        must be that rate or a whole multiple of it, see ``ticks_per_step``); ``calibration``
        (a ``calibration_fingerprint``) against the model's, when it has one.
        """
        problems = []
        info = self.info
        if tick_rate_hz is not None and self.ticks_per_step(tick_rate_hz) is None:
            problems.append(
                f"{info.input.describe()} vs a "
                f"configured control rate of {float(tick_rate_hz):g} Hz (neither that rate nor "
                "a whole multiple of it)"
            )
        want_cal = info.extra.get("calibration_fingerprint")
        if calibration is not None and want_cal and want_cal != calibration:
            problems.append(
                f"trained with calibration {want_cal} vs calibration {calibration} in use "
                "(other MVC or synergy matrix W)"
            )
        if joint_subset:
            extra = [j for j in self.info.joints if j not in joints]
            if extra or not self.info.joints:
                problems.append(
                    f"joints {list(self.info.joints)}: {extra} not among the configured "
                    f"{list(joints)}"
                )
        elif tuple(joints) != self.info.joints:
            problems.append(f"joints {list(self.info.joints)} vs configured {list(joints)}")
        if tuple(muscles) != self.info.muscles:
            problems.append(f"muscles {list(self.info.muscles)} vs configured {list(muscles)}")
        if n_synergies != self.info.n_synergies:
            problems.append(
                f"{self.info.n_synergies} synergies vs {n_synergies} in the calibration"
            )
        if problems:
            raise ModelError(f"{self.path}: model does not match {where}: " + "; ".join(problems))

    def ticks_per_step(self, control_rate_hz: float) -> int | None:
        """Control ticks per model step: 1 for an instantaneous model or one made for the
        control rate, k when the control rate is k times the model's, None otherwise."""
        rate = self.info.tick_rate_hz
        if rate is None:
            return 1
        k = round(float(control_rate_hz) / rate)
        if k >= 1 and abs(k * rate - float(control_rate_hz)) <= 1e-6 * float(control_rate_hz):
            return k
        return None

    def run(self) -> np.ndarray:
        """Run on the current contents of ``self.features``; returns ``self.torque[0]``."""
        self._session.run_with_iobinding(self._io)
        return self.torque[0]


def feature_sources(
    features: Sequence[str], muscles: Sequence[str], joints: Sequence[str], n_synergies: int
) -> np.ndarray:
    """Index of each model feature in the estimator's per-tick source vector.

    The source vector is ``[h (K), a (muscles), angle (joints), velocity (joints)]``. A name
    that the configuration/calibration cannot supply is refused, naming both sides.
    """
    m, j = len(muscles), len(joints)
    where = {f"h{i}": i for i in range(n_synergies)}
    where.update({f"a:{mu}": n_synergies + i for i, mu in enumerate(muscles)})
    where.update({f"angle:{jn}": n_synergies + m + i for i, jn in enumerate(joints)})
    where.update({f"velocity:{jn}": n_synergies + m + j + i for i, jn in enumerate(joints)})
    unknown = [f for f in features if f not in where]
    if unknown:
        raise ModelError(
            f"model features {unknown} cannot be computed here: the configuration/calibration "
            f"gives {list(where)} (K={n_synergies}, muscles {list(muscles)}, joints {list(joints)})"
        )
    return np.array([where[f] for f in features], dtype=np.intp)


def sidecar(model_path: Path, kind: str) -> Path:
    """A file beside a model, named from its stem: ``M.onnx`` -> ``M.calibration.yaml`` (the
    calibration it was trained with), ``M.pt`` (PyTorch weights), ``M.json`` (provenance)."""
    p = Path(model_path)
    return p.with_name(
        p.stem + {"calibration": ".calibration.yaml", "pt": ".pt", "json": ".json"}[kind]
    )
