"""The real-data protocol's table has a live column for its within rows (the network run by the
controller on the HIL bench, ``exoctl.training.real_protocol``); other rows show "-" there."""

from __future__ import annotations

from exoctl.training.real_protocol import format_table


def _row(name: str, live: bool) -> dict:
    row = {
        "row": name,
        "train": "a",
        "test": "b",
        "scored_ticks": 10,
        "ridge": {"r2_hip": 0.5, "r2_knee": 0.6},
        "kinematics": {"r2_hip": 0.4, "r2_knee": 0.3},
        "network": {
            "seeds": [{"seed": 0, "r2_hip": 0.7, "r2_knee": 0.8}],
            "r2_hip": 0.7,
            "r2_knee": 0.8,
        },
        "ceiling": {"r2_hip": 0.9, "r2_knee": 0.95},
    }
    if live:
        row["live"] = {"network": {"r2_hip": 0.695, "r2_knee": 0.801}}
    return row


def test_within_rows_show_the_live_network_and_other_rows_a_dash():
    table = format_table({"rows": [_row("within walk36", True), _row("walk36 -> run81", False)]})
    head, rule, within, cross = table.splitlines()
    assert "live network (first seed) hip / knee" in head
    assert head.count("|") == rule.count("|") == within.count("|") == cross.count("|")
    assert "| 0.700/0.800 | 0.695 / 0.801 |" in within
    assert "| 0.700/0.800 | - / - |" in cross
