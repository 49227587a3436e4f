"""The dataset description's schema: what a ``datasets/*.yaml`` file may say, validated.

One pydantic model per part of the description (the dataset, a trial, its EMG, moments and
angles files, an envelope's stated making). ``exoctl.data.dataset`` reads the files they name;
this module only says what a description may contain and refuses anything else, by key.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from exoctl.config.schema import JointName
from exoctl.errors import DataError

FORMAT = "exoctl-dataset/1"
EMG_SCALE_TO_UV = {"uV": 1.0, "mV": 1e3, "V": 1e6}


class DatasetError(DataError):
    """A description or a file it names that cannot be used; the message is for a person."""


class _M(BaseModel):
    # strict: numbers and booleans as YAML writes them, never text read as one (the
    # configuration's policy, exoctl.config.schema._Model)
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


ColumnRef = str | Annotated[int, Field(ge=0)]


class FileSpec(_M):
    file: str
    format: Literal["auto", "sto", "mot", "csv", "xdf", "mat"] = "auto"
    stream: str | None = None
    """XDF only: the stream's name or type."""
    time_column: str = "time"
    skip_rows: Annotated[int, Field(ge=0)] = 0
    """CSV only: lines after the header to ignore (e.g. a units row)."""
    time_offset_s: float = 0.0
    variable: str | None = None
    """Gait-cycle .mat only: dotted path to the struct with ``all`` and ``colheaders``."""
    cycle: Annotated[int, Field(ge=0)] | None = None
    """Gait-cycle .mat only: which cycle (0-based index on the last axis)."""
    stride_s: Annotated[float, Field(gt=0.2, le=5.0)] | None = None
    """Gait-cycle .mat only: the stride time the cycle's points are spread over (the file has
    no time axis: this is stated by whoever describes the data)."""

    @model_validator(mode="after")
    def _mat_keys(self) -> FileSpec:
        is_mat = self.format == "mat" or (
            self.format == "auto" and self.file.lower().endswith(".mat")
        )
        given = [k for k in ("variable", "cycle", "stride_s") if getattr(self, k) is not None]
        if is_mat and len(given) != 3:
            missing = [k for k in ("variable", "cycle", "stride_s") if k not in given]
            raise ValueError(
                f"a gait-cycle .mat file needs variable, cycle and stride_s; missing {missing}"
            )
        if not is_mat and given:
            raise ValueError(f"{given} apply to gait-cycle .mat files only")
        return self


class EnvelopeSpec(_M):
    """What an enveloped EMG file holds, as its source states it (goes into model metadata).

    A model trained on envelopes made elsewhere is only fed the same kind of signal live: the
    estimator compares this with its own chain and refuses a mismatch.
    """

    lowpass_hz: Annotated[float, Field(gt=0, le=50)] | None = None
    """The envelope's low-pass cut-off; null when the source does not state it."""
    normalisation: Literal["mvc", "peak", "none", "unknown"] = "unknown"
    """mvc: divided by a maximal voluntary contraction; peak: each channel divided by its own
    maximum over the recording(s); none: not normalised; unknown: not stated."""
    processing: str | None = None
    """The source's own words on how the envelope was made (free text)."""


class EmgSpec(FileSpec):
    kind: Literal["raw", "enveloped"]
    normalised: bool = False
    """Enveloped EMG already divided by each muscle's MVC (so the MVC is 1)."""
    units: Literal["uV", "mV", "V"] = "uV"
    channels: Annotated[dict[str, ColumnRef], Field(min_length=1)]
    """muscle name -> column label or index."""
    envelope: EnvelopeSpec | None = None
    """kind: enveloped only: how the envelope was made (low-pass, normalisation)."""

    @model_validator(mode="after")
    def _normalised_needs_envelope(self) -> EmgSpec:
        if self.normalised and self.kind != "enveloped":
            raise ValueError("normalised: true applies to kind: enveloped only")
        if self.envelope is not None and self.kind != "enveloped":
            raise ValueError("envelope: applies to kind: enveloped only")
        return self


class MomentSpec(FileSpec):
    columns: Annotated[dict[JointName, ColumnRef], Field(min_length=1)]
    units: Literal["Nm", "Nm/kg"] = "Nm"
    sign: dict[JointName, Literal[1, -1]] = {}

    @model_validator(mode="after")
    def _sign_joints(self) -> MomentSpec:
        _check_sign(self.sign, self.columns)
        return self


class AngleSpec(FileSpec):
    columns: Annotated[dict[JointName, ColumnRef], Field(min_length=1)]
    units: Literal["rad", "deg"] | None = None
    sign: dict[JointName, Literal[1, -1]] = {}

    @model_validator(mode="after")
    def _sign_joints(self) -> AngleSpec:
        _check_sign(self.sign, self.columns)
        return self


def _check_sign(sign: Iterable[str], columns: Iterable[str]) -> None:
    extra = sorted(set(sign) - set(columns))
    if extra:
        raise ValueError(f"sign names joints without a column: {extra}")


class TrialSpec(_M):
    name: Annotated[str, Field(min_length=1)]
    role: Literal["task", "mvc"] = "task"
    body_mass_kg: Annotated[float, Field(gt=0, le=500)] | None = None
    emg: EmgSpec
    moment: MomentSpec | None = None
    angle: AngleSpec | None = None


class DatasetSpec(_M):
    format: Literal["exoctl-dataset/1"]
    name: str = ""
    subject: str | None = None
    body_mass_kg: Annotated[float, Field(gt=0, le=500)] | None = None
    muscles: list[str] | None = None
    joints: list[JointName] | None = None
    notes: str | None = None
    trials: Annotated[list[TrialSpec], Field(min_length=1)]

    @field_validator("trials")
    @classmethod
    def _unique(cls, v: list[TrialSpec]) -> list[TrialSpec]:
        names = [t.name for t in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"trial names must be unique, repeated: {dup}")
        return v

    @model_validator(mode="after")
    def _same_channels(self) -> DatasetSpec:
        muscles = self.muscles or list(self.trials[0].emg.channels)
        if len(set(muscles)) != len(muscles):
            raise ValueError(f"muscles repeated: {muscles}")
        for i, t in enumerate(self.trials):
            got = list(t.emg.channels)
            if set(got) != set(muscles):
                raise ValueError(
                    f"trials[{i}] ({t.name}).emg.channels maps muscles {got}, but the dataset's "
                    f"muscles are {muscles}: every trial must map the same muscles"
                )
        joints: Sequence[str] | None = self.joints
        for i, t in enumerate(self.trials):
            for part in ("moment", "angle"):
                spec = getattr(t, part)
                if spec is None:
                    continue
                got = list(spec.columns)
                if joints is None:
                    joints = got
                if set(got) != set(joints):
                    raise ValueError(
                        f"trials[{i}] ({t.name}).{part}.columns maps joints {got}, but the "
                        f"dataset's joints are {joints}: every trial must map the same joints"
                    )
        return self
