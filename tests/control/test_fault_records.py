"""Every fault kind is one complete record, and everything that names kinds reads the records.

Over every record: it has a title, a cause and a detail in words, a unique event name, and the
configuration keys it names exist in ``SafetyConfig``; the layer's kinds are in bit order; a
healthy tick is OK for every check; the package docstring's watchdog list is the records' rules,
generated, never written out a second time; the plain-words events use the records' words.
"""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest

import exoctl.control.safety as safety_pkg
from exoctl.config.schema import SafetyConfig, load_config
from exoctl.control.safety.faults import (
    BY_EVENT,
    LAYER_FAULTS,
    OK,
    OTHER_FAULTS,
    Fault,
    FaultKind,
    watchdog_rules,
)
from exoctl.control.safety.inputs import SafetyInputs
from exoctl.control.safety.watchdogs import Watchdogs
from exoctl.service.events import describe

CFG = load_config()
NAMES = tuple(j.name for j in CFG.device.joints)
RECORDS = LAYER_FAULTS + OTHER_FAULTS
WATCHDOGS = [f for f in LAYER_FAULTS if f.check is not None]


def _id(f: Fault) -> str:
    return f.event


def test_the_layers_records_are_its_kinds_in_bit_order():
    assert [f.kind for f in LAYER_FAULTS] == list(FaultKind)
    assert len(BY_EVENT) == len(RECORDS)  # event names are unique
    assert all(isinstance(f.kind, str) for f in OTHER_FAULTS)


@pytest.mark.parametrize("fault", RECORDS, ids=_id)
def test_every_record_says_what_it_is_in_words(fault: Fault):
    assert fault.event and fault.event == fault.event.lower() and " " not in fault.event
    assert fault.title and fault.title[0].isupper() and not fault.title.endswith(".")
    assert fault.cause and not fault.cause.endswith(".")  # describe() adds the full stop
    for value in (0.0, 1.0, 0.123):
        text = fault.detail(value, CFG.safety, NAMES)
        assert isinstance(text, str) and text.strip()


@pytest.mark.parametrize("fault", RECORDS, ids=_id)
def test_every_config_key_a_record_names_exists_and_its_rule_names_it(fault: Fault):
    for key in (fault.threshold, fault.persist):
        if key is None:
            continue
        assert key in SafetyConfig.model_fields, f"{fault.event}: no safety.{key}"
        assert key in fault.rule, f"{fault.event}: its rule does not name {key}"
    if fault.check is None:  # not a watchdog: nothing to configure, no rule to state
        assert fault.threshold is None and fault.persist is None and not fault.rule
    else:
        assert fault.rule and not fault.rule.endswith((".", ";"))


@pytest.mark.parametrize("fault", WATCHDOGS, ids=_id)
def test_every_check_passes_a_healthy_tick(fault: Fault):
    wd = Watchdogs(CFG.safety)
    inp = SafetyInputs.healthy(len(NAMES), now=1.0)
    inp.recording_age_s = 0.0
    req = np.full(len(NAMES), 5.0)
    (limit,) = [row[2] for row in wd.table if row[0] == fault.kind]
    assert fault.check is not None
    assert fault.check(wd, req, req.copy(), inp, limit) == OK


def test_the_package_docstring_lists_the_records_rules_generated_from_them():
    doc = safety_pkg.__doc__ or ""
    assert watchdog_rules() in doc
    assert "{watchdog_rules}" not in doc
    listed = [line.split("``")[1] for line in doc.splitlines() if line.startswith("   * ``")]
    assert listed == [f.event for f in WATCHDOGS]
    # Written once: the source holds the placeholder, not a second copy of the rules.
    source = Path(inspect.getfile(safety_pkg)).read_text(encoding="utf-8")
    assert "{watchdog_rules}" in source
    assert not any(f"``{f.event}``:" in source for f in WATCHDOGS)


@pytest.mark.parametrize("fault", RECORDS, ids=_id)
def test_the_plain_words_event_is_the_records(fault: Fault):
    d = describe({"t": 0.0, "kind": "fault", "detail": {"kind": fault.event, "detail": "x"}})
    assert (d.kind, d.title, d.severity, d.technical) == (fault.event, fault.title, "fault", "x")
    if fault.kind is not FaultKind.ESTOP:  # the layer's e-stop reads as the e-stop itself
        assert fault.cause in d.text


def test_a_kind_no_record_names_still_reads():
    d = describe({"t": 0.0, "kind": "fault", "detail": {"kind": "from_the_future"}})
    assert d.title == "From the future" and "see the detail" in d.text
