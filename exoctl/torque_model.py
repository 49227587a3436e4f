"""The torque model: an ONNX graph run through onnxruntime, one inference per control tick.

Contract: one float32 input ``features`` of shape (1, n_features) and one float32 output
``torque`` of shape (1, n_joints). The model's ``metadata_props`` carry a JSON document under
the key ``exoctl`` naming the feature layout, the joints, the muscles and the synergy count, so
that a model trained for another electrode layout or another joint set is refused at load time
instead of producing plausible-looking nonsense at run time.

Session settings follow onnxruntime's advice for small models on a latency budget: one intra-
and one inter-op thread, sequential execution, and no spinning thread pools (spinning causes
latency spikes on a 2-core machine that also runs the acquisition thread). Inputs and outputs
are bound once to preallocated numpy buffers (IOBinding), so a tick allocates nothing here.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

METADATA_KEY = "exoctl"
MODEL_FORMAT = "exoctl-torque-model/1"


class ModelError(ValueError):
    """A model file that this configuration must not use."""


@dataclass(frozen=True)
class ModelInfo:
    features: tuple[str, ...]
    joints: tuple[str, ...]
    muscles: tuple[str, ...]
    n_synergies: int
    extra: dict

    @staticmethod
    def from_json(path: Path, text: str) -> ModelInfo:
        try:
            doc = json.loads(text)
            if doc.get("format") != MODEL_FORMAT:
                raise ModelError(
                    f"{path}: metadata format {doc.get('format')!r}, expected {MODEL_FORMAT!r}"
                )
            return ModelInfo(
                features=tuple(doc["features"]),
                joints=tuple(doc["joints"]),
                muscles=tuple(doc["muscles"]),
                n_synergies=int(doc["n_synergies"]),
                extra={
                    k: v
                    for k, v in doc.items()
                    if k not in ("features", "joints", "muscles", "n_synergies")
                },
            )
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ModelError(f"{path}: unreadable '{METADATA_KEY}' metadata: {e}") from None


def feature_names(muscles: Sequence[str], n_synergies: int) -> tuple[str, ...]:
    """The default feature layout: synergy activations, then muscle activations."""
    return tuple(f"h{i}" for i in range(n_synergies)) + tuple(f"a:{m}" for m in muscles)


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
        if not self.path.is_file():
            raise ModelError(f"{self.path}: model file not found")
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
        self._check_shape("input 'features'", inputs["features"].shape, n_f)
        self._check_shape("output 'torque'", outputs["torque"].shape, n_j)
        self.features = np.zeros((1, n_f), dtype=np.float32)
        self.torque = np.zeros((1, n_j), dtype=np.float32)
        self._io = self._session.io_binding()
        self._io.bind_ortvalue_input("features", ort.OrtValue.ortvalue_from_numpy(self.features))
        self._io.bind_ortvalue_output("torque", ort.OrtValue.ortvalue_from_numpy(self.torque))

    def _check_shape(self, what: str, shape: list, n: int) -> None:
        last = shape[-1] if shape else None
        if isinstance(last, int) and last != n:
            raise ModelError(f"{self.path}: {what} has width {last}, metadata says {n}")

    def check_layout(
        self, joints: Sequence[str], muscles: Sequence[str], n_synergies: int, where: str
    ) -> None:
        """Refuse a model whose inputs or outputs do not match the configuration/calibration."""
        problems = []
        if tuple(joints) != self.info.joints:
            problems.append(f"joints {list(self.info.joints)} vs configured {list(joints)}")
        if tuple(muscles) != self.info.muscles:
            problems.append(f"muscles {list(self.info.muscles)} vs configured {list(muscles)}")
        if n_synergies != self.info.n_synergies:
            problems.append(
                f"{self.info.n_synergies} synergies vs {n_synergies} in the calibration"
            )
        if problems:
            raise ModelError(f"{self.path}: model does not match {where}: " + "; ".join(problems))

    def run(self) -> np.ndarray:
        """Run on the current contents of ``self.features``; returns ``self.torque[0]``."""
        self._session.run_with_iobinding(self._io)
        return self.torque[0]
