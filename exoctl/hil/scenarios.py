"""Fault scenarios of the HIL bench: ``configs/scenarios/NAME.yaml``, read and checked.

A scenario is a run length, timed injections (on the simulator's side, the controller's, or
the bench's own: CPU starvation, killing the controller), configuration overrides and what
must happen (``expect``, checked by tests/hil/test_scenarios.py). Everything is checked here,
before any process starts: each problem is refused with the file, the line and the key.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from exoctl.config.schema import CONFIG_DIR, ConfigError, resolve_paths
from exoctl.config.yamlfile import YamlDocument, format_key, read_yaml_document
from exoctl.hil import MAX_DURATION_S

SCENARIO_DIR = CONFIG_DIR / "scenarios"
PARENT_KINDS = ("cpu_starvation", "controller_kill")
CONTROLLER_KINDS = ("estop", "clear_fault")
SIMULATOR_KINDS = (  # Simulator.inject: the patient's EMG, then the emulated firmware's faults
    "emg_stop",
    "emg_resume",
    "emg_saturate",
    "emg_flat",
    "emg_nan",
    "pull_cable",
    "replug",
    "reset",
    "set_bit_error_rate",
    "press_estop",  # the device's e-stop input (the button on the exoskeleton)
    "release_estop",
    "set_mute",  # the firmware stops sending (params {mute: true}): telemetry stops
)
INJECTION_KINDS = PARENT_KINDS + CONTROLLER_KINDS + SIMULATOR_KINDS


@dataclass
class Injection:
    """A timed fault. Kinds: see ``Simulator.inject`` and PARENT_KINDS/CONTROLLER_KINDS."""

    at_s: float
    kind: str
    params: dict = field(default_factory=dict)


@dataclass
class Scenario:
    name: str
    description: str
    duration_s: float
    injections: list[Injection]
    config: dict = field(default_factory=dict)
    expect: dict = field(default_factory=dict)


def load_scenario(name_or_path: str) -> Scenario:
    """A scenario by name (``configs/scenarios/NAME.yaml``) or by path.

    Read through the project's YAML reader and checked here, before anything starts: each
    problem is refused with the file, the line and the key. Paths in its ``config:`` overrides
    are relative to the scenario file, as in a configuration.
    """
    path = Path(name_or_path)
    if not path.suffix:
        path = SCENARIO_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in SCENARIO_DIR.glob("*.yaml"))
        raise ConfigError(f"{path}: no such scenario; known scenarios: {', '.join(known) or '-'}")
    doc = read_yaml_document(path, "scenario", ConfigError)
    raw = doc.data
    allowed = ("description", "duration_s", "inject", "config", "expect")
    for key in raw:
        if key not in allowed:
            _refuse(doc, (key,), f"unknown key; allowed keys here: {', '.join(allowed)}")
    duration = _number(doc, ("duration_s",), raw.get("duration_s", 8.0))
    if not 0 < duration <= MAX_DURATION_S:
        _refuse(doc, ("duration_s",), f"{duration:g} s: must be in (0, {MAX_DURATION_S:g}]")
    items = raw.get("inject", [])
    if not isinstance(items, list):
        _refuse(doc, ("inject",), "must be a list of {at_s, kind, ...} entries")
    injections = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            _refuse(doc, ("inject", i), "must be a mapping {at_s, kind, ...}")
        for key in ("at_s", "kind"):
            if key not in item:
                _refuse(doc, ("inject", i, key), "required key is missing")
        at = _number(doc, ("inject", i, "at_s"), item["at_s"])
        if not 0 <= at <= duration:
            _refuse(
                doc, ("inject", i, "at_s"), f"{at:g} s: must be within the run (0..{duration:g})"
            )
        kind = item["kind"]
        if kind not in INJECTION_KINDS:
            _refuse(
                doc, ("inject", i, "kind"), f"{kind!r:.40}: one of {', '.join(INJECTION_KINDS)}"
            )
        params = {k: v for k, v in item.items() if k not in ("at_s", "kind")}
        for k, v in params.items():  # channel, level, seconds, p, processes; mute: true/false
            if not isinstance(v, bool) and not (isinstance(v, int | float) and math.isfinite(v)):
                _refuse(doc, ("inject", i, k), f"{v!r:.40}: must be a finite number, or true/false")
        injections.append(Injection(at, str(kind), params))
    for key in ("config", "expect"):
        if not isinstance(raw.get(key, {}), dict):
            _refuse(doc, (key,), "must be a mapping")
    return Scenario(
        name=path.stem,
        description=str(raw.get("description", "")),
        duration_s=duration,
        injections=injections,
        config=resolve_paths(dict(raw.get("config", {})), path.resolve().parent),
        expect=dict(raw.get("expect", {})),
    )


def _refuse(doc: YamlDocument, loc: tuple, problem: str) -> None:
    raise ConfigError(f"{doc.where(loc)}: {format_key(loc)}: {problem}")


def _number(doc: YamlDocument, loc: tuple, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        _refuse(doc, loc, f"{value!r:.40}: must be a finite number of seconds")
    return float(value)  # type: ignore[arg-type]
