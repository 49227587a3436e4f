"""``estimator.model_every_ticks``: a bad value is refused with the file, line, key, the value and
what is allowed, also when it is in range but holds the estimate too long for its watchdog."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from exoctl.config.schema import DEFAULT_CONFIG, ConfigError, load_config


def _write(tmp_path: Path, every, **safety) -> Path:
    raw = yaml.safe_load(DEFAULT_CONFIG.read_text())
    raw["estimator"]["model_every_ticks"] = every
    raw["safety"].update(safety)
    path = tmp_path / "rate.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_the_default_runs_the_model_every_tick() -> None:
    assert load_config().estimator.model_every_ticks == 1


@pytest.mark.parametrize(
    ("value", "allowed"),
    [
        (0, "greater than or equal to 1"),
        (21, "less than or equal to 20"),
        (2.5, "whole number"),
        ("2", "whole number"),
        (True, "whole number"),
    ],
)
def test_a_bad_value_names_file_line_key_value_and_what_is_allowed(
    tmp_path: Path, value, allowed: str
) -> None:
    path = _write(tmp_path, value)
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert re.match(rf"^{re.escape(str(path))}:\d+: estimator\.model_every_ticks = ", msg), msg
    assert repr(value) in msg and allowed in msg and len(msg.splitlines()) == 1


def test_a_hold_too_long_for_the_estimate_watchdog_is_refused(tmp_path: Path) -> None:
    """8 ticks at 500 Hz hold an estimate 16 ms: a quarter of a 50 ms estimate timeout is 12.5 ms,
    so every held estimate would be degraded (at half the timeout) under a little lateness."""
    path = _write(tmp_path, 8, estimate_timeout_s=0.05)
    msg = str(pytest.raises(ConfigError, load_config, path).value)
    assert re.match(rf"^{re.escape(str(path))}:\d+: estimator\.model_every_ticks: ", msg), msg
    assert "safety.estimate_timeout_s" in msg and "allowed here: 1 to 6" in msg
    assert (
        load_config(_write(tmp_path, 6, estimate_timeout_s=0.05)).estimator.model_every_ticks == 6
    )
    assert load_config(_write(tmp_path, 4)).estimator.model_every_ticks == 4
