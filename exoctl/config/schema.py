"""Typed, validated configuration.

The YAML file is parsed into frozen pydantic models once at start-up; the hot path reads plain
attributes. Every error names the file, the key (dotted path), the bad value and what is
allowed, because the person reading it is at a terminal next to a patient, not in a debugger.
Relative paths in the file are resolved against the file's own directory.
"""

from __future__ import annotations

import ipaddress
import re
import reprlib
import typing
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    Strict,
    ValidationError,
    field_validator,
    model_validator,
)

from exoctl.config.assist_level import ASSIST_MAX, ASSIST_MIN
from exoctl.config.paths import (
    CONFIG_DIR,
    DEFAULT_CONFIG,
    DEFAULT_SOCKET_PATH,
    PACKAGE_DIR,
    resolve_path,
)
from exoctl.config.yamlfile import ConfigError, YamlDocument, format_key, read_yaml_document

__all__ = ["CONFIG_DIR", "DEFAULT_CONFIG", "Config", "ConfigError", "deep_merge", "load_config"]

JointName = Literal["hip_l", "hip_r", "knee_l", "knee_r"]
JOINT_NAMES: tuple[str, ...] = typing.get_args(JointName)
BAUD_RATES = (115200, 230400, 460800, 921600, 1000000, 2000000, 3000000)


class _Model(BaseModel):
    # allow_inf_nan=False: no setting of exoctl is meaningful at infinity or NaN (a band-pass
    # edge at .inf used to pass here and fail later, in the filter design).
    # strict=True: a number is a number and a boolean true or false, never text read as one
    # ("40" was 40, "yes" and "on" were true); see STRICT_HINTS for what the errors say.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True)


FilePath = Annotated[Path, Strict(False)]
"""A path: written as text in the file (strict mode alone would take Path objects only)."""


class CrossFieldError(ValueError):
    """Settings that are each in range but wrong together; each problem names its key."""

    def __init__(self, problems: list[tuple[tuple[str, ...], str]]) -> None:
        super().__init__("; ".join(f"{format_key(loc)}: {msg}" for loc, msg in problems))
        self.problems = problems


class SerialConfig(_Model):
    port: str = "/dev/exoskeleton"
    baudrate: int = 1000000
    low_latency: bool = True
    """Ask the USB-serial driver for low-latency mode (FTDI: 16 ms -> ~1 ms timer)."""

    @field_validator("baudrate")
    @classmethod
    def _baud(cls, v: int) -> int:
        if v not in BAUD_RATES:
            raise ValueError(f"must be one of {', '.join(map(str, BAUD_RATES))}")
        return v


class JointConfig(_Model):
    name: JointName
    torque_limit_nm: Annotated[float, Field(gt=0, le=150)]
    rate_limit_nm_per_s: Annotated[float, Field(gt=0, le=5000)] = 400.0
    angle_min_rad: Annotated[float, Field(ge=-3.2, le=3.2)]
    angle_max_rad: Annotated[float, Field(ge=-3.2, le=3.2)]
    velocity_limit_rad_s: Annotated[float, Field(gt=0, le=30)] = 8.0

    @model_validator(mode="after")
    def _range(self) -> JointConfig:
        if self.angle_min_rad >= self.angle_max_rad:
            raise ValueError(
                f"angle_min_rad ({self.angle_min_rad}) must be below angle_max_rad "
                f"({self.angle_max_rad})"
            )
        return self


class DeviceConfig(_Model):
    name: str = "exo"
    serial: SerialConfig = SerialConfig()
    joints: Annotated[list[JointConfig], Field(min_length=1, max_length=4)]
    heartbeat_period_s: Annotated[float, Field(gt=0, le=0.5)] = 0.02
    command_timeout_s: Annotated[float, Field(gt=0, le=1.0)] = 0.1
    """Firmware removes torque by itself when no command/heartbeat arrives for this long."""
    accepted_device_ids: list[str] = ["exofw-1.*", "exoctl-hil-emu"]
    """Device ids (DEVICE_INFO ``device_id``, which carries the firmware version) the host runs
    on: shell-style patterns (``*``, ``?``, ``[...]``, case-sensitive). The handshake refuses
    any other device. Never empty: to accept every device, write ``["*"]`` on purpose."""

    @field_validator("accepted_device_ids")
    @classmethod
    def _accepted_ids(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError(
                'must name at least one device id or pattern (e.g. "exofw-1.*"); an empty '
                'list would refuse every device. To accept any device, write ["*"]'
            )
        for pattern in v:
            if not pattern or not all(0x21 <= ord(c) <= 0x7E for c in pattern):
                raise ValueError(
                    f"{pattern!r} is not a device id pattern: 1 or more visible ASCII "
                    "characters, no spaces (device ids are at most 16 such characters)"
                )
        return v

    @field_validator("joints")
    @classmethod
    def _unique(cls, v: list[JointConfig]) -> list[JointConfig]:
        names = [j.name for j in v]
        if len(set(names)) != len(names):
            raise ValueError(f"joint names must be unique, got {names}")
        return v

    @property
    def joint_names(self) -> tuple[str, ...]:
        return tuple(j.name for j in self.joints)


_HOST_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?")


def _is_host_name(v: str) -> bool:
    """An RFC 1123 host name (labels of letters, digits and inner hyphens, dot-separated)."""
    return 0 < len(v) <= 253 and all(_HOST_LABEL.fullmatch(p) for p in v.split("."))


def _is_ip_address(v: str) -> bool:
    try:
        ipaddress.ip_address(v)
    except ValueError:
        return False
    return True


class LslConfig(_Model):
    name: str = "exoctl-emg"
    type: str = "EMG"
    source_id: str | None = None
    """The amplifier's (or the simulator's) LSL source id: the one stream the inlet binds to."""
    any_source: bool = False
    """Without a source_id, refuse to start unless this is true (then: the first stream with
    this name and type). Every simulator publishes the same name, so such a configuration
    could take another bench's EMG."""
    resolve_timeout_s: Annotated[float, Field(gt=0, le=120)] = 5.0
    host: str | None = None
    """The computer that publishes the EMG stream, by the host name its LSL stream reports;
    null: this machine. The inlet takes a stream only from this host."""
    peers: list[str] = []
    """Where liblsl asks for the stream when ``host`` is another machine (host names or IP
    addresses, liblsl's KnownPeers); empty: ``host`` itself. LSL discovery stays on this
    machine otherwise."""

    @field_validator("name", "type", "source_id")
    @classmethod
    def _quotable(cls, v: str | None) -> str | None:
        # These go into an LSL query (an XPath predicate) between single quotes.
        if v is not None and (not v or "'" in v or not v.isprintable()):
            raise ValueError("must be non-empty printable text without a single quote (')")
        return v

    @field_validator("host")
    @classmethod
    def _host(cls, v: str | None) -> str | None:
        if v is not None and not _is_host_name(v):
            raise ValueError(
                "must be a host name (letters, digits, hyphens, dots) as the amplifier's "
                "computer reports it, or null for this machine"
            )
        return v

    @field_validator("peers")
    @classmethod
    def _peers(cls, v: list[str]) -> list[str]:
        bad = [p for p in v if not (_is_host_name(p) or _is_ip_address(p))]
        if bad:
            raise ValueError(f"each peer must be a host name or an IP address, got {bad}")
        return v

    @model_validator(mode="after")
    def _peers_need_host(self) -> LslConfig:
        if self.peers and self.host is None:
            raise ValueError(
                "emg.lsl.peers is set but emg.lsl.host is not: name the amplifier's host "
                "(peers are only where to ask for a stream on another machine)"
            )
        return self


class ReplayConfig(_Model):
    path: FilePath | None = None
    loop: bool = False


class EmgConfig(_Model):
    source: Literal["lsl", "replay"] = "lsl"
    """The EMG source: one of the names the sources register (``SOURCES`` in
    exoctl.acquisition.sources; kept equal to this list by a test)."""
    lsl: LslConfig = LslConfig()
    replay: ReplayConfig = ReplayConfig()
    sampling_rate_hz: Annotated[float, Field(gt=0, le=10000)] = 2000.0
    """Any rate training takes (100 Hz lab envelopes included): a rate that is not a whole
    multiple of control.rate_hz is carried onto the tick grid (exoctl.signal.tick_grid)."""
    muscles: Annotated[list[str], Field(min_length=1, max_length=64)]
    """Channel-to-muscle map: the muscle recorded on each channel, in channel order."""
    ring_buffer_s: Annotated[float, Field(gt=0, le=60)] = 2.0

    @field_validator("muscles")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        dup = sorted({m for m in v if v.count(m) > 1})
        if dup:
            raise ValueError(f"each muscle may appear once, repeated: {dup}")
        return v


class ActivationConfig(_Model):
    """Lloyd & Besier second-order activation dynamics (CEINMS defaults)."""

    c1: Annotated[float, Field(ge=-0.995, le=-0.005)] = -0.5
    c2: Annotated[float, Field(ge=-0.995, le=-0.005)] = -0.5
    shape_a: Annotated[float, Field(ge=-2.999, le=-0.001)] = -1.0
    delay_s: Annotated[float, Field(ge=0, le=0.2)] = 0.0
    reference_rate_hz: Annotated[float, Field(ge=100, le=10000)] = 1000.0
    """Rate at which c1 and c2 are stated; converted to the estimator's update rate."""


class EstimatorConfig(_Model):
    input: Literal["raw", "enveloped"] = "raw"
    bandpass_hz: Annotated[tuple[float, float], Strict(False)] = (20.0, 450.0)  # YAML: a list
    notch_hz: Literal[50, 60] | None = None
    envelope_hz: Annotated[float, Field(gt=0, le=50)] = 6.0
    activation: ActivationConfig = ActivationConfig()
    calibration: FilePath
    """Calibration file (per-muscle MVC and the synergy matrix W), see exoctl.signal.calibration."""
    process: bool = True
    """Run acquisition, signal chain and model in their own process (exoctl.runtime.
    estimator_process), so the control loop's interpreter runs only the loop; false runs them
    in the loop's thread (deterministic offline use, tests on the in-process FakeLink)."""
    warmup_s: Annotated[float, Field(ge=0, le=10)] = 1.0
    """At a session's start the estimator runs over this much of the newest EMG before its
    first estimate is used (filters, activation dynamics and the model's window settle)."""
    hang_timeout_s: Annotated[float, Field(gt=0, le=10)] = 1.0
    """An estimator process that publishes nothing for this long is killed and restarted."""
    model_every_ticks: Annotated[int, Field(ge=1, le=20)] = 1
    """The torque model runs on every this-many-th control tick (1: every tick; 2 at a 500 Hz
    loop: 250 Hz) and its newest estimate is held in between. The signal chain and the model's
    input still take every tick, so a model's lags keep their meaning: the same model file
    serves every setting. The hold counts in the estimate's age (safety.estimate_timeout_s).
    Measured accuracy and cost per setting: docs/benchmarks.md, "The model's rate"."""

    @field_validator("bandpass_hz")
    @classmethod
    def _band(cls, v: tuple[float, float]) -> tuple[float, float]:
        lo, hi = v
        if not (0 < lo < hi):
            raise ValueError(f"need 0 < low < high, got {list(v)}")
        return v


class ModelConfig(_Model):
    path: FilePath


class ControlConfig(_Model):
    rate_hz: Annotated[float, Field(ge=50, le=1000)] = 500.0
    assist_gain: dict[JointName, Annotated[float, Field(ge=ASSIST_MIN, le=ASSIST_MAX)]]
    """Fraction of the patient's estimated joint torque that the exoskeleton adds."""
    ramp_in_s: Annotated[float, Field(ge=0, le=30)] = 1.0
    ramp_out_s: Annotated[float, Field(ge=0, le=5)] = 0.3
    smoothing_hz: Annotated[float, Field(gt=0, le=200)] | None = None


class SafetyConfig(_Model):
    emg_timeout_s: Annotated[float, Field(gt=0, le=1.0)] = 0.2
    telemetry_timeout_s: Annotated[float, Field(gt=0, le=1.0)] = 0.2
    """Input watchdogs (degraded at half, fault at the value); the margin behind 0.2 s is
    measured in docs/deploy.md ("Watchdog timeouts")."""
    max_overrun_streak: Annotated[int, Field(ge=1, le=1000)] = 20
    rom_fade_rad: Annotated[float, Field(ge=0, le=1.0)] = 0.15
    """Assistance fades linearly to zero over this distance before a range-of-motion end."""
    max_plausible_torque_nm: Annotated[float, Field(gt=0, le=1000)] = 250.0
    safe_stop_s: Annotated[float, Field(gt=0, le=1.0)] = 0.05
    """Time within which torque ramps to zero after a fault is detected."""
    recording_timeout_s: Annotated[float, Field(gt=0, le=60)] = 2.0
    """A session's recording with no clean commit to disk for this long (a full or failing
    disk) removes assistance and latches: no assistance runs unrecorded."""
    estimate_timeout_s: Annotated[float, Field(gt=0, le=1.0)] = 0.2
    """The torque estimate in use older than this is a fault (degraded at half: assistance held
    down). The estimate cannot be fresher than the EMG it is computed from, and an estimation
    stage under load stalls like the EMG input does, so it gets the EMG timeout's margin."""
    max_joint_speed_rad_s: Annotated[float, Field(gt=0, le=32.0)] = 15.0
    """A joint reported faster than this (no person moves a hip or knee at 15 rad/s, 860 deg/s)
    for telemetry_timeout_s is a fault: a faulty joint sensor or a runaway (the wire carries up
    to 32.7 rad/s)."""
    model_fault_s: Annotated[float, Field(ge=0, le=1.0)] = 0.05
    """Model output NaN, infinite or implausible for this long is a fault; shorter is degraded."""
    emg_flat_range: Annotated[float, Field(ge=0)] = 0.5
    """A channel whose peak-to-peak range stays below this (raw EMG units) over a window is
    flat or stuck at the rail (saturated); a live electrode always shows amplifier noise."""
    emg_channel_window_s: Annotated[float, Field(gt=0, le=1.0)] = 0.04


class SimulatorConfig(_Model):
    """The HIL bench's synthetic patient; never read by the controller itself."""

    seed: int = 1
    """The patient: anatomy and EMG gains."""
    session: int = 0
    """The session: noise and stride-to-stride variability."""
    stride_s: Annotated[float, Field(ge=0.6, le=3.0)] = 1.1
    body_mass_kg: Annotated[float, Field(ge=20, le=200)] = 70.0
    emg_noise_uv: Annotated[float, Field(ge=0, le=100)] = 5.0
    emg_chunk_samples: Annotated[int, Field(ge=1, le=200)] = 4
    electromechanical_delay_s: Annotated[float, Field(ge=0, le=0.15)] = 0.05
    realtime_priority: Annotated[int, Field(ge=0, le=99)] = 0
    """SCHED_FIFO priority of the simulator process; set it above the controller's (60 over 50)
    when the controller runs real-time, since the simulator stands for hardware with its own
    processor. 0 (the default) leaves it SCHED_OTHER: asked for only, as two FIFO processes
    starve everything else on a small machine. Refused quietly if not allowed."""


class ServiceConfig(_Model):
    """The daemon: where it records, and who may talk to its control socket."""

    data_dir: FilePath = Path("/var/lib/exoctl")
    socket_path: FilePath = DEFAULT_SOCKET_PATH
    socket_group: str | None = "exoctl"
    allowed_users: list[str] = ["root"]
    allowed_groups: list[str] = ["exoctl"]
    recorder_queue_chunks: Annotated[int, Field(ge=16, le=100000)] = 2048
    flush_interval_s: Annotated[float, Field(gt=0, le=1.0)] = 0.5
    recording_reserve_s: Annotated[float, Field(ge=0, le=86400)] = 3600.0
    """A session starts only when the data directory's disk has room for this many seconds
    of its recording (estimated from the configuration's streams and rates)."""
    publish_lsl: bool = True
    realtime_priority: Annotated[int, Field(ge=0, le=99)] = 0
    """SCHED_FIFO priority for the control-loop thread; 0 leaves it SCHED_OTHER. Needs
    CAP_SYS_NICE and LimitRTPRIO (systemd/exoctl.service grants both)."""
    lock_memory: bool = False
    """mlockall() at start so the loop never waits on a page fault (needs LimitMEMLOCK)."""


class Config(_Model):
    device: DeviceConfig
    emg: EmgConfig
    estimator: EstimatorConfig
    model: ModelConfig
    control: ControlConfig
    safety: SafetyConfig = SafetyConfig()
    simulator: SimulatorConfig = SimulatorConfig()
    service: ServiceConfig = ServiceConfig()
    source: FilePath | None = None
    """The file this configuration was read from (set by the loader)."""

    @model_validator(mode="after")
    def _cross(self) -> Config:
        from exoctl.config.cross_field import cross_field_problems

        problems = cross_field_problems(self)
        if problems:
            raise CrossFieldError(problems)
        return self

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.device.joint_names

    @property
    def tick_rate_hz(self) -> float:
        """The control loop's tick rate (``control.rate_hz``), the one place it is read: the
        loop, the estimator's tick grid, the recorder's and the LSL outlets' stream rates, the
        HIL bench and training all work per tick of it, so they take it from here."""
        return float(self.control.rate_hz)

    def with_overrides(self, **sections: dict[str, Any]) -> Config:
        """A copy with some nested keys replaced, validated again (used by the HIL runner).

        Raises ConfigError naming the overridden key when the result is not a valid
        configuration (a scenario's ``config:`` block, for instance).
        """
        data = deep_merge(self.model_dump(), sections)
        try:
            return Config.model_validate(data)
        except ValidationError as e:
            raise ConfigError(
                format_validation_error(f"{self.source or 'configuration'} (with overrides)", e)
            ) from None


def deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` laid on top, mappings merged key by key; neither is modified.

    The one deep merge of the project (configuration overrides, the HIL runner's per-child
    settings).
    """
    out = dict(base)
    for k, v in over.items():
        old = out.get(k)
        out[k] = deep_merge(old, v) if isinstance(v, dict) and isinstance(old, dict) else v
    return out


# Keys holding file paths: relative values are relative to the file that names them.
PATH_KEYS = (
    ("estimator", "calibration"),
    ("model", "path"),
    ("emg", "replay", "path"),
    ("service", "data_dir"),
    ("service", "socket_path"),
)

# CONFIG_DIR, DEFAULT_CONFIG, PACKAGE_DIR: exoctl.config.paths (import-light for the CLI).
# The shipped models (network, linear baseline, calibration) that default.yaml names.
MODELS_DIR = PACKAGE_DIR / "models"


def load_config(path: str | Path | None = None) -> Config:
    """Read, resolve relative paths and validate a configuration file.

    Raises ConfigError, one line per problem, each with file, line, key, value and what is
    allowed.
    """
    path = Path(path) if path is not None else DEFAULT_CONFIG
    doc = read_yaml_document(path, "configuration", ConfigError, "a mapping of sections")
    raw = doc.data
    resolve_paths(raw, path.resolve().parent)
    raw["source"] = str(path)
    try:
        return Config.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(format_validation_error(path, e, doc)) from None


def resolve_paths(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Make the file paths in a raw configuration mapping absolute, in place.

    A relative path is relative to the file that names it (``base`` is that file's directory),
    never to the working directory: the same file then means the same model wherever the
    command is typed. ``~`` is expanded; absolute paths are kept as written. Returns ``raw``.
    """
    for keys in PATH_KEYS:
        node: Any = raw
        for k in keys[:-1]:
            node = node.get(k) if isinstance(node, dict) else None
        if isinstance(node, dict) and isinstance(node.get(keys[-1]), str):
            node[keys[-1]] = resolve_path(node[keys[-1]], base)
    return raw


_SHOW = reprlib.Repr()
_SHOW.maxstring, _SHOW.maxother, _SHOW.maxlist, _SHOW.maxdict, _SHOW.maxlevel = 60, 60, 6, 4, 2


def format_validation_error(
    path: Path | str, err: ValidationError, doc: YamlDocument | None = None
) -> str:
    """One line per problem: ``file:line: key = value: what is wrong / allowed``.

    Values are shown through a bounded repr: an input can be huge (aliases), and building its
    whole repr only to cut it would take as long as the input is big.
    """
    lines = []
    for item in err.errors():
        cause = (item.get("ctx") or {}).get("error")
        if isinstance(cause, CrossFieldError):
            for cause_loc, msg in cause.problems:
                lines.append(f"{_where(path, doc, cause_loc)}: {format_key(cause_loc)}: {msg}")
            continue
        loc = tuple(item["loc"])
        where = _where(path, doc, loc)
        key = format_key(loc)
        if item["type"] == "extra_forbidden":
            allowed = _allowed_keys(loc[:-1])
            lines.append(f"{where}: {key}: unknown key; allowed keys here: {', '.join(allowed)}")
        elif item["type"] == "missing":
            lines.append(f"{where}: {key}: required key is missing")
        else:
            lines.append(f"{where}: {key} = {_SHOW.repr(item.get('input'))}: {problem_text(item)}")
    return "\n".join(lines) or f"{path}: invalid configuration"


STRICT_HINTS = {
    "float_type": "must be a number, written without quotes (e.g. 40 or 0.5)",
    "int_type": "must be a whole number, written without quotes (e.g. 20)",
    "bool_type": "must be true or false, written without quotes",
}
"""What a strict type refusal says: the form that is allowed (pydantic says "Input should be a
valid number", which does not tell a person that "40" in quotes is text)."""


def problem_text(item: Any) -> str:
    """The message of one pydantic error item, with the allowed form for strict types."""
    return STRICT_HINTS.get(item["type"], item["msg"])


def _where(path: Path | str, doc: YamlDocument | None, loc: tuple[Any, ...]) -> str:
    line = doc.line_of(loc) if doc is not None else None
    return f"{path}:{line}" if line is not None else str(path)


def _allowed_keys(loc: tuple[Any, ...]) -> list[str]:
    model: Any = Config
    for part in loc:
        if isinstance(part, int):
            continue
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return []
        ann = field.annotation
        for cand in (ann, *typing.get_args(ann)):
            if isinstance(cand, type) and issubclass(cand, BaseModel):
                model = cand
                break
    return list(getattr(model, "model_fields", {}))
