"""The hazard log (``docs/hazards.md``) is kept true against the code.

Every control it names exists (imported, then each attribute looked up), every test it names
exists and is collected by pytest, every entry that is not marked pending names at least one
control and one test, defects name hazards that exist, and every fault kind of the code (the
safety layer's, the daemon's recorded ones, the device's fault bits) appears in the log, as
every fault kind the log names appears in the code. A new fault kind without an entry fails
here, and so does a control that was renamed or moved.

The checks are functions from the log's text (and what the code defines) to a list of
problems, so that ``test_the_checks_catch_what_they_are_for`` can show each of them failing
on a log that is wrong.
"""

from __future__ import annotations

import ast
import importlib
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
LOG = ROOT / "docs" / "hazards.md"
PACKAGES = ("exoctl", "firmware_bridge")

ENTRY_HEADING = re.compile(r"^### (?P<id>[HD]\d{2}) (?P<title>\S.*)$")
FIELD_LINE = re.compile(r"^- \*\*(?P<label>[^*]+)\*\*:(?P<value>.*)$")
CODE = re.compile(r"`([^`]+)`")
TEST_ID = re.compile(r"^tests/[\w/]+\.py::\w+(\[[^\]]+\])?$")
CONTROL_NAME = re.compile(r"^(exoctl|firmware_bridge)(\.\w+)+$")

LABELS = {
    "Causes", "Controls", "Tests", "Fault kinds", "Device fault bits", "Residual risk",
    "Clinic", "Hazard", "Defect", "Pending",
}  # fmt: skip
REQUIRED = {
    "H": ("Causes", "Controls", "Tests", "Residual risk", "Clinic"),
    "D": ("Hazard", "Defect"),
}
PENDING = "Pending"
"""The one marker: an entry with this field may lack controls and tests (a known defect whose
fix is to come). Remove the field once the fix and its regression test are named."""


@dataclass
class Entry:
    id: str
    title: str
    line: int
    fields: dict[str, str] = field(default_factory=dict)

    def names(self, label: str) -> list[str]:
        """The backticked names of one field (controls, tests, fault kinds)."""
        return CODE.findall(self.fields.get(label, ""))

    @property
    def pending(self) -> bool:
        return PENDING in self.fields


def parse(text: str) -> tuple[list[Entry], list[str]]:
    """Entries (``### H01 Title`` followed by ``- **Label**: value`` lines, a value going on
    over indented lines) and the problems of form met on the way."""
    entries: list[Entry] = []
    problems: list[str] = []
    current: Entry | None = None
    label: str | None = None
    for n, line in enumerate(text.splitlines(), 1):
        if line.startswith("#"):
            label = None
            m = ENTRY_HEADING.match(line)
            if m:
                current = Entry(m["id"], m["title"], n)
                entries.append(current)
            elif line.startswith("### "):
                problems.append(f"line {n}: a level-3 heading that is not an entry: {line!r}")
                current = None
            else:
                current = None
            continue
        if current is None:
            continue
        f = FIELD_LINE.match(line)
        if f:
            label = f["label"].strip()
            if label not in LABELS:
                problems.append(f"{current.id} line {n}: unknown field {label!r}")
            elif label in current.fields:
                problems.append(f"{current.id} line {n}: field {label!r} given twice")
            current.fields[label] = f["value"].strip()
        elif label is not None and line.startswith("  ") and line.strip():
            current.fields[label] += " " + line.strip()
        else:
            label = None
    seen: set[str] = set()
    for e in entries:
        if e.id in seen:
            problems.append(f"{e.id} (line {e.line}): id used twice")
        seen.add(e.id)
    return entries, problems


def form_problems(entries: list[Entry]) -> list[str]:
    """Each entry has its fields; controls and tests unless pending; names well formed."""
    problems = []
    hazards = {e.id for e in entries if e.id.startswith("H")}
    for e in entries:
        for label in REQUIRED[e.id[0]]:
            if not e.fields.get(label):
                problems.append(f"{e.id}: no {label}")
        if e.pending:
            if not e.fields[PENDING]:
                problems.append(f"{e.id}: Pending must say what is to come")
        else:
            if not e.names("Controls"):
                problems.append(f"{e.id}: names no control (and is not marked pending)")
            if not e.names("Tests"):
                problems.append(f"{e.id}: names no test (and is not marked pending)")
        for name in e.names("Controls"):
            if not CONTROL_NAME.match(name):
                problems.append(f"{e.id}: control {name!r} is not a dotted name in {PACKAGES}")
        for name in e.names("Tests"):
            if not TEST_ID.match(name):
                problems.append(f"{e.id}: test {name!r} is not a node id tests/...py::test")
        if e.id.startswith("D"):
            refs = re.findall(r"\bH\d{2}\b", e.fields.get("Hazard", ""))
            if not refs:
                problems.append(f"{e.id}: Hazard names no H entry")
            for ref in refs:
                if ref not in hazards:
                    problems.append(f"{e.id}: hazard {ref} has no entry")
    return problems


# -- controls ----------------------------------------------------------------------------------
def resolve(name: str) -> Any:
    """Import the longest module prefix of ``name``, then look up the rest as attributes (a
    configuration setting ``Class.field`` through the pydantic model's fields)."""
    parts = name.split(".")
    obj: Any = None
    i = len(parts)
    while i > 0:
        module = ".".join(parts[:i])
        try:
            obj = importlib.import_module(module)
            break
        except ModuleNotFoundError as e:
            if e.name is None or not (module == e.name or module.startswith(e.name + ".")):
                raise  # the module exists but one of its own imports is missing
            i -= 1
    if obj is None:
        raise ModuleNotFoundError(name)
    for attr in parts[i:]:
        fields = getattr(obj, "model_fields", None)
        if isinstance(obj, type) and isinstance(fields, dict) and attr in fields:
            obj = fields[attr]
        else:
            obj = getattr(obj, attr)
    return obj


def control_problems(entries: list[Entry], lookup: Callable[[str], Any] = resolve) -> list[str]:
    problems = []
    for e in entries:
        for name in e.names("Controls"):
            try:
                lookup(name)
            except (ImportError, AttributeError) as err:
                problems.append(f"{e.id}: control {name} does not exist ({err})")
    return problems


# -- tests -------------------------------------------------------------------------------------
def collect(files: Iterable[str]) -> set[str]:
    """The node ids pytest collects from ``files``, by pytest itself in a child process."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *sorted(files)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, f"collecting the log's tests failed:\n{proc.stdout}{proc.stderr}"
    return {line.strip() for line in proc.stdout.splitlines() if "::" in line}


def node_problems(entries: list[Entry], collected: set[str], root: Path = ROOT) -> list[str]:
    problems = []
    for e in entries:
        for node in e.names("Tests"):
            path = node.split("::")[0]
            if not (root / path).is_file():
                problems.append(f"{e.id}: test file {path} does not exist")
            elif "[" in node:
                if node not in collected:
                    problems.append(f"{e.id}: test {node} is not collected")
            elif not any(c == node or c.startswith(node + "[") for c in collected):
                problems.append(f"{e.id}: test {node} is not collected")
    return problems


# -- fault kinds -------------------------------------------------------------------------------
def recorded_fault_kinds(sources: Iterable[Path]) -> set[str]:
    """Kinds the code records as a fault event itself, outside the safety layer's table:
    every call ``f(..., "fault", {"kind": "<kind>", ...})`` (the daemon's ``_record_event``)."""
    kinds = set()
    for path in sources:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if not isinstance(node, ast.Call):
                continue
            args = node.args
            for a, b in zip(args, args[1:], strict=False):
                if isinstance(a, ast.Constant) and a.value == "fault" and isinstance(b, ast.Dict):
                    for k, v in zip(b.keys, b.values, strict=True):
                        is_kind = isinstance(k, ast.Constant) and k.value == "kind"
                        if is_kind and isinstance(v, ast.Constant) and isinstance(v.value, str):
                            kinds.add(v.value)
    return kinds


def code_fault_kinds() -> set[str]:
    """The safety layer's fault kinds, the daemon's described and recorded ones."""
    from exoctl.control.safety.faults import BY_EVENT

    sources = [p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")]
    return set(BY_EVENT) | recorded_fault_kinds(sources)


def device_fault_bits() -> set[str]:
    """Every device fault bit the protocol defines, by name (device-wide and per joint)."""
    from firmware_bridge import protocol as P

    names = set(P.FAULT_NAMES.values())
    for bit in range(16):
        if P.FAULTS_DEFINED & (1 << bit):
            assert 1 << bit in P.FAULT_NAMES, f"device fault bit 0x{1 << bit:x} has no name"
    names |= {n.removeprefix("JFAULT_").lower() for n in dir(P) if n.startswith("JFAULT_")}
    return names


def fault_problems(entries: list[Entry], kinds: set[str], bits: set[str]) -> list[str]:
    problems = []
    for label, defined in (("Fault kinds", kinds), ("Device fault bits", bits)):
        named = {n for e in entries for n in e.names(label)}
        for k in sorted(defined - named):
            problems.append(f"{label}: {k!r} is defined in the code but no entry names it")
        for k in sorted(named - defined):
            problems.append(f"{label}: {k!r} is named in the log but the code has no such kind")
    return problems


# -- product text ------------------------------------------------------------------------------
PRODUCT_TEXT = (
    (re.compile(r"\bissues?\s*#?\d+|#\d+\b", re.I), "an issue number"),
    (re.compile(r"\b(?=[0-9a-f]*\d)(?=[0-9a-f]*[a-f])[0-9a-f]{7,40}\b"), "a commit hash"),
    (re.compile(r"(?<![\w.])/(work|home|tmp|root)/"), "a build machine's path"),
    (re.compile(r"\bengineers?\b", re.I), "a person's role"),
)


def text_problems(text: str) -> list[str]:
    return [
        f"line {n}: {what}: {m.group(0)!r}"
        for n, line in enumerate(text.splitlines(), 1)
        for pattern, what in PRODUCT_TEXT
        for m in [pattern.search(line)]
        if m
    ]


# -- the tests ---------------------------------------------------------------------------------
def _log() -> tuple[list[Entry], list[str], str]:
    text = LOG.read_text(encoding="utf-8")
    entries, problems = parse(text)
    return entries, problems, text


def test_every_entry_has_its_fields_and_a_control_and_a_test_unless_pending() -> None:
    entries, problems, _ = _log()
    assert any(e.id.startswith("H") for e in entries) and any(e.id.startswith("D") for e in entries)
    problems += form_problems(entries)
    assert not problems, "\n".join(problems)


def test_every_control_named_exists() -> None:
    entries, _, _ = _log()
    problems = control_problems(entries)
    assert not problems, "\n".join(problems)


def test_every_test_named_exists_and_is_collected() -> None:
    entries, _, _ = _log()
    files = {n.split("::")[0] for e in entries for n in e.names("Tests")}
    files = {f for f in files if (ROOT / f).is_file()}  # a missing one is reported below
    problems = node_problems(entries, collect(files))
    assert not problems, "\n".join(problems)


def test_every_fault_kind_and_device_fault_bit_has_an_entry() -> None:
    entries, _, _ = _log()
    kinds, bits = code_fault_kinds(), device_fault_bits()
    assert "control_loop_died" in kinds and "host_timeout" in bits  # the enumeration works
    problems = fault_problems(entries, kinds, bits)
    assert not problems, "\n".join(problems)


def test_the_log_is_product_text() -> None:
    _, _, text = _log()
    problems = text_problems(text)
    assert not problems, "\n".join(problems)


SAMPLE = """\
# Hazard log

### H01 Torque the patient did not ask for

- **Causes**: many.
- **Controls**: `exoctl.control.safety.layer.SafetyLayer.apply`;
  `exoctl.config.schema.JointConfig.torque_limit_nm`
- **Tests**: `tests/control/test_loop.py::test_estop_wins_whatever_else_happens`,
  `tests/hil/test_scenarios.py::test_scenario[estop]`
- **Fault kinds**: `estop`
- **Device fault bits**: `estop`
- **Residual risk**: some.
- **Clinic**: a hardware e-stop.

### D01 A known defect

- **Hazard**: H01
- **Defect**: what it is.
- **Pending**: its fix.
"""


def test_the_checks_catch_what_they_are_for() -> None:
    entries, problems = parse(SAMPLE)
    assert [e.id for e in entries] == ["H01", "D01"] and not problems
    assert not form_problems(entries)
    assert not control_problems(entries)
    collected = {
        "tests/control/test_loop.py::test_estop_wins_whatever_else_happens",
        "tests/hil/test_scenarios.py::test_scenario[estop]",
    }
    assert not node_problems(entries, collected)
    assert not fault_problems(entries, {"estop"}, {"estop"})
    assert not text_problems(SAMPLE)

    # a control that does not exist, in a module that does and in one that does not
    for bad in ("exoctl.control.safety.layer.SafetyLayer.apply_later", "exoctl.nowhere.f"):
        wrong, _ = parse(SAMPLE.replace("exoctl.control.safety.layer.SafetyLayer.apply", bad))
        assert control_problems(wrong) == [
            f"H01: control {bad} does not exist ({p})" for p in _errors(bad)
        ]
    # a test that is not collected, a test file that does not exist
    assert node_problems(entries, collected - {"tests/hil/test_scenarios.py::test_scenario[estop]"})
    gone, _ = parse(SAMPLE.replace("tests/control/test_loop.py", "tests/control/test_gone.py"))
    assert "test file tests/control/test_gone.py does not exist" in "".join(
        node_problems(gone, collected)
    )
    # a new fault kind or device bit in the code, a stale one in the log
    assert fault_problems(entries, {"estop", "recording_failed"}, {"estop"}) == [
        "Fault kinds: 'recording_failed' is defined in the code but no entry names it"
    ]
    assert fault_problems(entries, set(), {"estop"}) == [
        "Fault kinds: 'estop' is named in the log but the code has no such kind"
    ]
    # an entry without a test, not pending; the pending one may lack both
    untested, _ = parse(SAMPLE.replace("- **Tests**:", "- **Clinic notes**:", 1))
    assert form_problems(untested) == [
        "H01: no Tests",
        "H01: names no test (and is not marked pending)",
    ]
    unmarked, _ = parse(SAMPLE.replace("- **Pending**: its fix.\n", ""))
    assert form_problems(unmarked) == [
        "D01: names no control (and is not marked pending)",
        "D01: names no test (and is not marked pending)",
    ]
    orphan, _ = parse(SAMPLE.replace("- **Hazard**: H01", "- **Hazard**: H09"))
    assert form_problems(orphan) == ["D01: hazard H09 has no entry"]
    # an unknown field label, a field given twice
    _, p = parse(SAMPLE.replace("- **Residual risk**: some.", "- **Test**: x\n- **Causes**: y"))
    assert p == ["H01 line 12: unknown field 'Test'", "H01 line 13: field 'Causes' given twice"]
    # a fault recorded by the daemon itself is found in its source
    src = ROOT / "exoctl" / "service" / "daemon.py"
    assert "control_loop_died" in recorded_fault_kinds([src])
    # product text
    assert (
        len(text_problems("as issue 20 says, fixed in abc1234f under /home/build by an engineer"))
        == 4
    )


def _errors(name: str) -> list[str]:
    try:
        resolve(name)
    except (ImportError, AttributeError) as e:
        return [str(e)]
    return []
