"""The control loop's rate is read from the configuration in one place: ``Config.tick_rate_hz``.

The loop, the estimator's tick grid, the recorder, the LSL outlets, the HIL bench and training
all work per tick; each reading ``control.rate_hz`` on its own is how one of them ends up at
another rate than the others after a change. The scan below fails on a new direct reader.
"""

from __future__ import annotations

import ast
from pathlib import Path

from exoctl.config.schema import load_config

ROOT = Path(__file__).resolve().parents[2]


def test_tick_rate_is_the_configured_rate() -> None:
    cfg = load_config(None).with_overrides(control={"rate_hz": 250})
    assert cfg.tick_rate_hz == 250.0
    assert isinstance(cfg.tick_rate_hz, float)


def _direct_readers() -> list[str]:
    """``<anything>.control.rate_hz`` loaded outside the configuration package."""
    found = []
    for folder in ("exoctl", "firmware_bridge", "bench"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("exoctl/config/"):
                continue
            for node in ast.walk(ast.parse(path.read_text(), rel)):
                if (
                    isinstance(node, ast.Attribute)
                    and node.attr == "rate_hz"
                    and isinstance(node.ctx, ast.Load)
                    and isinstance(node.value, ast.Attribute)
                    and node.value.attr == "control"
                ):
                    found.append(f"{rel}:{node.lineno}")
    return found


def test_no_other_module_reads_control_rate_hz() -> None:
    assert _direct_readers() == [], "read the rate as cfg.tick_rate_hz"
