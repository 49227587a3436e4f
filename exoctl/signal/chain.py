"""The signal chain, built in one place: EMG -> conditioning -> activation dynamics -> synergies.

The estimator (online, per tick), calibration (``exoctl calibrate``), the linear model and the
training features (offline, whole recordings) all build their chain here, from one
``ChainSettings``, so that what a model learns from is what the controller computes.

``ChainSettings`` also says what kind of signal the chain feeds a model (``describe``), and
``signal_differences`` compares that with what a model's training EMG was (the ``emg_signal``
entry of its metadata): raw EMG conditioned by this chain with given filters, or envelopes
made elsewhere with a stated low-pass and normalisation. The estimator refuses a model whose
training signal its live chain does not produce, naming the configuration key that differs and
what to do.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from .activation import ActivationDynamics
from .dsp import EmgConditioner
from .synergy import OnlineNNLS

__all__ = ["CHUNK", "ChainSettings", "SignalChain", "signal_differences", "synergy_activations"]

CHUNK = 4096  # offline processing chunk (samples)
INPUTS = ("raw", "enveloped")


@dataclass(frozen=True)
class ChainSettings:
    """The configuration's ``estimator`` section as the chain uses it (also without a Config:
    calibration and training run it at a dataset's own rate, which no live Config may allow)."""

    input: str = "raw"  # raw | enveloped (the EMG arrives as an envelope made elsewhere)
    bandpass_hz: tuple[float, float] = (20.0, 450.0)
    notch_hz: float | None = None
    envelope_hz: float = 6.0
    c1: float = -0.5
    c2: float = -0.5
    shape_a: float = -1.0
    delay_s: float = 0.0
    reference_rate_hz: float = 1000.0

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ValueError(f"chain input {self.input!r}: allowed {', '.join(INPUTS)}")

    @classmethod
    def from_config(cls, cfg: Any) -> ChainSettings:
        est, act = cfg.estimator, cfg.estimator.activation
        return cls(
            est.input,
            tuple(est.bandpass_hz),
            est.notch_hz,
            est.envelope_hz,
            act.c1,
            act.c2,
            act.shape_a,
            act.delay_s,
            act.reference_rate_hz,
        )

    def with_input(self, kind: str) -> ChainSettings:
        return replace(self, input=kind)

    def activation_dict(self) -> dict[str, float]:
        return {
            "c1": self.c1,
            "c2": self.c2,
            "shape_a": self.shape_a,
            "delay_s": self.delay_s,
            "reference_rate_hz": self.reference_rate_hz,
        }

    def as_dict(self) -> dict[str, Any]:
        """The filter and activation settings (a calibration's provenance)."""
        return {
            "bandpass_hz": list(self.bandpass_hz),
            "notch_hz": self.notch_hz,
            "envelope_hz": self.envelope_hz,
            "activation": self.activation_dict(),
        }

    def describe(self, envelope: dict[str, Any] | None = None) -> dict[str, Any]:
        """What this chain feeds a model: a model's ``emg_signal`` metadata entry.

        ``envelope``: for enveloped input, how the envelopes were made as their source states
        it (``lowpass_hz``, ``normalisation``, ``processing``; unknown values None/"unknown").
        Either way the chain divides by the calibration's MVC and runs the activation dynamics.
        """
        doc: dict[str, Any] = {"input": self.input}
        if self.input == "raw":
            doc["conditioning"] = {
                "bandpass_hz": list(self.bandpass_hz),
                "notch_hz": self.notch_hz,
                "envelope_hz": self.envelope_hz,
                "rectification": "full-wave",
                "causal": True,
            }
        else:
            env = dict(envelope or {})
            doc["envelope"] = {
                "lowpass_hz": env.get("lowpass_hz"),
                "normalisation": env.get("normalisation") or "unknown",
                "processing": env.get("processing"),
            }
        doc["normalisation"] = "divided by the calibration's per-muscle MVC"
        doc["activation"] = self.activation_dict()
        return doc


def _close(a: float | None, b: float | None) -> bool:
    if a is None or b is None:
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)


def signal_differences(model_signal: dict[str, Any] | None, live: ChainSettings) -> list[str]:
    """How the live chain's signal differs from a model's training EMG; empty when it does not.

    Each entry names the configuration key, both values and what to do. A model without an
    ``emg_signal`` entry (made before models carried one: the shipped simulator models) was
    trained on raw EMG through this chain and is not checked here.
    """
    if not model_signal:
        return []
    out: list[str] = []
    kind = model_signal.get("input")
    if kind not in INPUTS:
        return [f"the model's emg_signal.input is {kind!r}, not one of {INPUTS}: retrain it"]
    if kind == "enveloped" and live.input != "enveloped":
        env = model_signal.get("envelope") or {}
        lp = env.get("lowpass_hz")
        out.append(
            "the model was trained on EMG envelopes made elsewhere (low-pass "
            f"{f'{lp:g} Hz' if lp else 'not stated'}, normalisation "
            f"{env.get('normalisation', 'unknown')}), but estimator.input = raw: this chain "
            "band-passes, rectifies and envelopes raw EMG itself. Stream envelopes made the "
            "same way with estimator.input: enveloped, or train the model on raw EMG"
        )
    elif kind == "raw" and live.input != "raw":
        out.append(
            "the model was trained on raw EMG conditioned by this chain, but estimator.input = "
            "enveloped (the live EMG arrives already enveloped): set estimator.input: raw and "
            "stream raw EMG, or train the model on envelopes made the way the live ones are"
        )
    elif kind == "raw":
        cond = model_signal.get("conditioning") or {}
        want_bp = cond.get("bandpass_hz")
        if want_bp is not None and not all(
            _close(a, b) for a, b in zip(want_bp, live.bandpass_hz, strict=True)
        ):
            out.append(
                f"estimator.bandpass_hz = {list(live.bandpass_hz)}, the model was trained with "
                f"{list(want_bp)}: set it to {list(want_bp)} or retrain"
            )
        if "notch_hz" in cond and not _close(cond["notch_hz"], live.notch_hz):
            out.append(
                f"estimator.notch_hz = {live.notch_hz}, the model was trained with "
                f"{cond['notch_hz']}: set it so or retrain"
            )
        if "envelope_hz" in cond and not _close(cond["envelope_hz"], live.envelope_hz):
            out.append(
                f"estimator.envelope_hz = {live.envelope_hz:g}, the model was trained on "
                f"envelopes low-passed at {cond['envelope_hz']:g} Hz: set it so or retrain"
            )
    else:  # enveloped, live enveloped: the live envelope's low-pass is estimator.envelope_hz
        lp = (model_signal.get("envelope") or {}).get("lowpass_hz")
        if lp is not None and not _close(lp, live.envelope_hz):
            out.append(
                f"estimator.envelope_hz = {live.envelope_hz:g} (the low-pass of the streamed "
                f"envelopes), the model was trained on envelopes low-passed at {lp:g} Hz: "
                "stream envelopes made that way (and say so there) or retrain"
            )
    act = model_signal.get("activation") or {}
    for key, mine in live.activation_dict().items():
        if key in act and not _close(act[key], mine):
            out.append(
                f"estimator.activation.{key} = {mine:g}, the model was trained with "
                f"{act[key]:g}: set it so or retrain"
            )
    return out


class SignalChain:
    """Conditioning + activation dynamics + warm-started NNLS for one set of muscles.

    ``mvc`` None gives the un-normalised envelope (what calibration measures MVC on); ``W``
    None leaves out the synergy stage. Online the estimator calls the three stages itself (one
    chunk per tick); offline ``envelope``/``activations`` run a whole recording in chunks.
    """

    def __init__(
        self,
        settings: ChainSettings,
        fs_hz: float,
        n_channels: int,
        *,
        mvc: np.ndarray | None = None,
        W: np.ndarray | None = None,
        max_chunk: int = CHUNK,
    ) -> None:
        self.settings = settings
        self.fs_hz = float(fs_hz)
        self.conditioner = EmgConditioner(
            fs_hz,
            n_channels,
            bandpass_hz=settings.bandpass_hz,
            notch_hz=settings.notch_hz,
            envelope_hz=settings.envelope_hz,
            mvc=mvc,
            enveloped_input=settings.input == "enveloped",
            max_chunk=max_chunk,
        )
        self.activation_dynamics = ActivationDynamics.from_settings(
            n_channels, fs_hz, settings, max_chunk
        )
        self.nnls = OnlineNNLS(W) if W is not None else None

    @classmethod
    def from_config(cls, cfg: Any, calibration: Any, max_chunk: int = CHUNK) -> SignalChain:
        """The live chain: the configuration's settings and EMG rate, the calibration's MVC
        (times its session gain, when it has one) and W."""
        return cls(
            ChainSettings.from_config(cfg),
            cfg.emg.sampling_rate_hz,
            len(cfg.emg.muscles),
            mvc=getattr(calibration, "mvc_in_use", calibration.mvc),
            W=calibration.W,
            max_chunk=max_chunk,
        )

    def envelope(self, x: np.ndarray) -> np.ndarray:
        """Conditioned EMG (n, m) of a whole recording (divided by the MVC when one is set)."""
        out = np.empty(x.shape)
        for i in range(0, x.shape[0], self.conditioner.max_chunk):
            j = i + self.conditioner.max_chunk
            out[i:j] = self.conditioner.process(x[i:j])
        return out

    def activate(self, e: np.ndarray) -> np.ndarray:
        """Activation dynamics over a whole excitation series (n, m) at this chain's rate."""
        out = np.empty(e.shape)
        step = self.activation_dynamics.max_chunk
        for i in range(0, e.shape[0], step):
            out[i : i + step] = self.activation_dynamics.process(e[i : i + step])
        return out

    def activations(self, x: np.ndarray) -> np.ndarray:
        """EMG (n, m) -> muscle activations a (n, m): conditioning then activation dynamics."""
        return self.activate(self.envelope(x))

    def synergies(self, a: np.ndarray, every: int = 1) -> np.ndarray:
        """Synergy activations h (n, K) of activation rows (see ``synergy_activations``)."""
        if self.nnls is None:
            raise ValueError("this chain has no synergy matrix W")
        return _solve_rows(self.nnls, a, every)


def _solve_rows(nnls: OnlineNNLS, a: np.ndarray, every: int) -> np.ndarray:
    h = np.zeros((a.shape[0], nnls.k))
    for i in range(0, a.shape[0], every):
        h[i : i + every] = nnls.solve(a[i])
    return h


def synergy_activations(W: np.ndarray, a: np.ndarray, every: int = 1) -> np.ndarray:
    """The warm-started NNLS row by row, as the estimator solves it once per tick (``every``:
    solve on every n-th row and hold it, as a tick holds its estimate)."""
    return _solve_rows(OnlineNNLS(W), a, every)
