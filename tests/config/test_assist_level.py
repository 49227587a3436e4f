"""One assistance-level range, one check: every place that takes a level agrees with it."""

from __future__ import annotations

import argparse
import math

import pytest

from exoctl.config.assist_level import AssistLevelError, check_level, check_levels
from exoctl.config.schema import ConfigError, load_config
from exoctl.control.assist import AssistLaw
from exoctl.service import rpc
from exoctl.service.commands import parse_assist
from exoctl.service.sessions import check_assist as _check_assist

CFG = load_config()
GOOD = [0.0, 0.3, 1.0]
BAD = [-0.1, 1.5, math.nan, math.inf]


@pytest.mark.parametrize("v", GOOD)
def test_every_entry_point_takes_a_level_in_range(v: float) -> None:
    assert check_level(v) == v
    assert parse_assist([repr(v)]) == v
    assert _check_assist({"hip_l": v}) == {"hip_l": v}
    AssistLaw(CFG.joint_names, CFG.control, CFG.control.rate_hz).set_gain({"hip_l": v}, 0.0)
    CFG.with_overrides(control={"assist_gain": {"hip_l": v}})


@pytest.mark.parametrize("v", BAD)
def test_every_entry_point_refuses_a_level_out_of_range(v: float) -> None:
    with pytest.raises(AssistLevelError, match=r"within \[0, 1\]"):
        check_level(v, "hip_l")
    with pytest.raises(argparse.ArgumentTypeError, match=r"within \[0, 1\]"):
        parse_assist([repr(v)])
    with pytest.raises(rpc.InvalidParams, match=r"within \[0, 1\]"):
        _check_assist({"hip_l": v})
    law = AssistLaw(CFG.joint_names, CFG.control, CFG.control.rate_hz)
    with pytest.raises(ValueError, match=r"within \[0, 1\]"):
        law.set_gain({"hip_l": v}, 0.0)
    if math.isfinite(v):  # YAML has no NaN literal a person would write
        with pytest.raises((ConfigError, ValueError)):
            CFG.with_overrides(control={"assist_gain": {"hip_l": v}})


def test_numbers_only_and_joint_names_when_known() -> None:
    for bad in (True, "0.3", None, [0.3]):
        with pytest.raises(AssistLevelError):
            check_levels(bad)
    with pytest.raises(AssistLevelError, match="unknown joint 'ankle'"):
        check_levels({"ankle": 0.2}, CFG.joint_names)
    assert check_levels({"knee_r": 1}) == {"knee_r": 1.0}
    with pytest.raises(AssistLevelError, match="at least one joint"):
        check_levels({})  # names no joint: never "every joint to its default"
    with pytest.raises(rpc.InvalidParams, match="unknown joint 'ankle'"):
        _check_assist({"ankle": 0.2}, CFG.joint_names)
